"""An account's own credentials: /account/password (the other sessions end, this one stays) and
/account/totp (the new secret replaces the old only once a code from it is entered; until then
it waits sealed in the session)."""

from __future__ import annotations

import re
import time
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from web_support import PASSWORD, Account, account_row, csrf, new_account, totp_key

from ca import accounts
from ca.models import AuditEventRecord

NEW_PASSWORD = "mật-khẩu-mới-rất-dài-2027"
_URI = re.compile(r'<code id="totp-uri"[^>]*>([^<]+)</code>')
_SECRET = re.compile(r'<code id="totp-secret"[^>]*>([A-Z2-7]+)</code>')


def _login(client: FlaskClient, account: Account, *, password: str = PASSWORD,
           secret: str | None = None, ahead: int = 0) -> None:
    """Log in; `ahead` time steps later (a code logs in once, so a second session of the same
    account within 30 s uses the next step's code, which the server still accepts)."""
    first = client.post("/login", data={"csrf_token": csrf(client, "/login"),
                                        "username": account.username, "password": password})
    assert first.status_code == 302, first.get_data(as_text=True)[:300]
    code = pyotp.TOTP(secret or account.totp_secret).at(time.time() + 30 * ahead)
    done = client.post("/login/totp", data={"csrf_token": csrf(client, "/login/totp"),
                                            "code": code})
    assert done.status_code == 302, done.get_data(as_text=True)[:300]


def _logged_in(client: FlaskClient) -> bool:
    page = client.get("/account")
    assert page.status_code in (200, 302)
    return page.status_code == 200


def _audited(kyso_app: Any, action: str, username: str) -> list[str]:
    with kyso_app.readers() as s:
        return list(s.scalars(select(AuditEventRecord.outcome).where(
            AuditEventRecord.action == action,
            AuditEventRecord.object == f"account:{username}")))


@pytest.fixture
def person(kyso_app: Any) -> Account:
    return new_account(kyso_app, "operator", prefix="self")


def test_anonymous_is_sent_to_login(client: FlaskClient) -> None:
    for path in ("/account/password", "/account/totp"):
        page = client.get(path)
        assert page.status_code == 302 and "/login" in page.headers["Location"]


def test_account_page_links_to_both(client: FlaskClient, person: Account) -> None:
    _login(client, person)
    html = client.get("/account").get_data(as_text=True)
    assert 'href="/account/password"' in html and 'href="/account/totp"' in html
    assert "Đổi mật khẩu" in html or "Change password" in html


# -- password ------------------------------------------------------------------------------------

def _change(client: FlaskClient, current: str, new: str, confirm: str | None = None) -> Any:
    return client.post("/account/password", data={
        "csrf_token": csrf(client, "/account/password"), "current_password": current,
        "new_password": new, "confirm_password": new if confirm is None else confirm})


def test_password_change_logs_out_the_other_sessions(app: Flask, kyso_app: Any,
                                                     person: Account) -> None:
    here, elsewhere = app.test_client(), app.test_client()
    _login(here, person)
    _login(elsewhere, person, ahead=1)
    assert _logged_in(here) and _logged_in(elsewhere)
    done = _change(here, PASSWORD, NEW_PASSWORD)
    assert done.status_code == 200, done.get_data(as_text=True)[:2000]
    assert 'id="password-changed"' in done.get_data(as_text=True)
    assert done.headers["Cache-Control"] == "no-store"
    assert _logged_in(here)  # the session that changed it stays
    assert not _logged_in(elsewhere)  # the other one is gone
    with kyso_app.sessions.begin() as s:
        assert accounts.check_password(s, person.username, NEW_PASSWORD,
                                       max_failures=5).outcome is accounts.Outcome.OK
    assert _audited(kyso_app, "account.password.change", person.username) == ["success"]
    fresh = app.test_client()
    first = fresh.post("/login", data={"csrf_token": csrf(fresh, "/login"),
                                       "username": person.username, "password": PASSWORD})
    assert first.status_code == 401  # the old password no longer works


@pytest.mark.parametrize(("current", "new", "confirm", "status"), [
    ("wrong password, long enough", NEW_PASSWORD, None, 400),
    (PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", 400),
    (PASSWORD, "short", None, 400),
    (PASSWORD, PASSWORD, None, 400),
    ("", NEW_PASSWORD, None, 400),
])
def test_password_change_refusals(client: FlaskClient, kyso_app: Any, person: Account,
                                  current: str, new: str, confirm: str | None,
                                  status: int) -> None:
    _login(client, person)
    page = _change(client, current, new, confirm)
    assert page.status_code == status
    assert 'class="alert"' in page.get_data(as_text=True)
    assert _logged_in(client)
    with kyso_app.sessions.begin() as s:  # the password is unchanged
        assert accounts.check_password(s, person.username, PASSWORD,
                                       max_failures=5).outcome is accounts.Outcome.OK
    if current.startswith("wrong"):
        assert _audited(kyso_app, "account.password.change", person.username) == ["failure"]


def test_wrong_current_passwords_lock_the_account(app: Flask, kyso_app: Any,
                                                  person: Account) -> None:
    client = app.test_client()
    _login(client, person)
    limit = kyso_app.settings.web.login_max_failures
    for _ in range(limit - 1):
        assert _change(client, "not my password at all", NEW_PASSWORD).status_code == 400
    last = _change(client, "not my password at all", NEW_PASSWORD)
    assert last.status_code == 423
    assert account_row(kyso_app, person.id).locked
    assert not _logged_in(client)


# -- second factor -------------------------------------------------------------------------------

def _start(client: FlaskClient, password: str = PASSWORD) -> Any:
    return client.post("/account/totp", data={"csrf_token": csrf(client, "/account/totp"),
                                              "current_password": password})


def _confirm(client: FlaskClient, code: str) -> Any:
    return client.post("/account/totp/confirm",
                       data={"csrf_token": csrf(client, "/account/totp"), "code": code})


def test_totp_change_needs_a_code_from_the_new_secret(app: Flask, kyso_app: Any,
                                                      client: FlaskClient,
                                                      person: Account) -> None:
    _login(client, person)
    assert _start(client, "not my password at all").status_code == 400
    started = _start(client)
    assert started.status_code == 200
    assert started.headers["Cache-Control"] == "no-store"
    html = started.get_data(as_text=True)
    uri, secret = _URI.search(html), _SECRET.search(html)
    assert uri and secret
    new_secret = secret.group(1)
    assert uri.group(1).startswith("otpauth://totp/") and new_secret in uri.group(1)
    assert new_secret != person.totp_secret

    # Only sealed in the cookie (Flask's session is signed, not encrypted).
    cookie = client.get_cookie(app.config.get("SESSION_COOKIE_NAME", "session"))
    assert cookie is not None
    data = app.session_interface.get_signing_serializer(app).loads(cookie.value)  # type: ignore[attr-defined]
    assert new_secret not in str(data)

    # Until confirmed, the old secret is in force.
    key = totp_key(kyso_app)

    def stored() -> str | None:
        sealed = account_row(kyso_app, person.id).totp_secret
        return accounts.open_secret(key, person.username, sealed)

    assert stored() == person.totp_secret
    assert _confirm(client, pyotp.TOTP(person.totp_secret).now()).status_code == 400
    assert _confirm(client, "12").status_code == 400
    assert stored() == person.totp_secret
    assert client.get("/account/totp").get_data(as_text=True).count(new_secret) >= 1

    done = _confirm(client, pyotp.TOTP(new_secret).now())
    assert done.status_code == 200 and 'id="totp-changed"' in done.get_data(as_text=True)
    assert stored() == new_secret
    assert _audited(kyso_app, "account.totp.change", person.username) == ["failure",
                                                                          "success"]
    # The new secret logs in (next step: the confirming code was used).
    other = app.test_client()
    _login(other, person, secret=new_secret, ahead=1)
    assert _logged_in(other)
    # Nothing pending any more.
    assert 'id="totp-uri"' not in client.get("/account/totp").get_data(as_text=True)


def test_confirm_without_a_pending_secret_is_refused(client: FlaskClient,
                                                     person: Account) -> None:
    _login(client, person)
    page = _confirm(client, "123456")
    assert page.status_code == 400 and 'class="alert"' in page.get_data(as_text=True)
