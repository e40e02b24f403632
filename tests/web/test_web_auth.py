"""Accounts and login: password + TOTP, replay guard, lock-out, roles, CSRF, logout, the CLI."""

from __future__ import annotations

import re
import secrets
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect, select
from web_support import app_over
from werkzeug.test import TestResponse

from ca import accounts, audit
from ca.models import AccountRecord, OfficialRecord
from kyso.cli_account import add_account, unlock_account
from kyso.settings import Settings, SettingsError, WebSettings
from web.auth import login_required
from web.security import limiter, load_secret_key

PASSWORD = "mật-khẩu-đủ-dài-2026"
GENERIC = "Sai tên đăng nhập, mật khẩu hoặc mã."
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- apps, accounts, clients ----------------------------------------------------------------

def _app(kyso_app: Any, **web: Any) -> Flask:
    """The real app over the session's CA, plus one operator-only test page."""
    app = app_over(kyso_app, **web)

    @login_required("operator")
    def operator_only() -> str:
        return "operator page"

    app.add_url_rule("/test/operator-only", "operator_only", operator_only)
    return app


@pytest.fixture(scope="module")
def app(kyso_app: Any) -> Flask:
    return _app(kyso_app)


def _key(kyso_app: Any) -> bytes:
    settings: Settings = kyso_app.settings
    return accounts.totp_key(load_secret_key(settings.web.secret_key_path(settings.data_dir)))


@pytest.fixture(scope="module")
def official_id(kyso_app: Any) -> int:
    with kyso_app.sessions.begin() as s:
        row = OfficialRecord(name="Nguyễn Văn An", organization="UBND phường Bến Thành",
                             email="an@benthanh.hochiminhcity.gov.vn", failed_pin_attempts=0,
                             locked=False, created_at=datetime.now(UTC))
        s.add(row)
        s.flush()
        return row.id


def _make(kyso_app: Any, *roles: str, official: int | None = None) -> tuple[str, str]:
    """A new account (unique username); its username and TOTP secret."""
    username = f"user-{secrets.token_hex(4)}"
    with kyso_app.sessions.begin() as s:
        _, secret = accounts.create_account(
            s, username=username, password=PASSWORD, roles=roles, key=_key(kyso_app),
            display_name="Trần Thị Bình", official_id=official, actor="test")
    return username, secret


@pytest.fixture
def official(kyso_app: Any, official_id: int) -> tuple[str, str]:
    return _make(kyso_app, "official", official=official_id)


@pytest.fixture
def operator(kyso_app: Any) -> tuple[str, str]:
    return _make(kyso_app, "operator", "auditor")


def _token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    match = _TOKEN.search(page.get_data(as_text=True))
    assert match, "the form carries no CSRF token"
    return match.group(1)


def _password(client: FlaskClient, username: str, password: str = PASSWORD) -> TestResponse:
    return client.post("/login", data={"csrf_token": _token(client), "username": username,
                                       "password": password})


def _code(client: FlaskClient, code: str) -> TestResponse:
    return client.post("/login/totp", data={"csrf_token": _token(client, "/login/totp"),
                                            "code": code})


def _login(client: FlaskClient, username: str, secret: str) -> TestResponse:
    first = _password(client, username)
    assert first.status_code == 302 and first.headers["Location"].endswith("/login/totp")
    return _code(client, pyotp.TOTP(secret).now())


def _wrong_code(secret: str) -> str:
    """A well-formed code that is none of the codes accepted now (one step either side)."""
    totp = pyotp.TOTP(secret)
    now = datetime.now(UTC).timestamp()
    accepted = {totp.at(now + d) for d in (-30, 0, 30)}
    return next(c for c in (f"{n:06d}" for n in range(10)) if c not in accepted)


def _text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def _events(kyso_app: Any, username: str, action: str) -> list[dict[str, Any]]:
    with kyso_app.readers() as s:
        return audit.events(s, action=action, obj=f"account:{username}")


# -- logging in -----------------------------------------------------------------------------

def test_login_with_password_and_totp_shows_the_account(client: FlaskClient,
                                                        official: tuple[str, str],
                                                        kyso_app: Any) -> None:
    username, secret = official
    assert client.get("/account").status_code == 302  # not yet
    done = _login(client, username, secret)
    assert done.status_code == 302 and done.headers["Location"].endswith("/account")
    page = client.get("/account")
    assert page.status_code == 200
    html = _text(page)
    assert username in html and "Trần Thị Bình" in html and "official" in html
    assert "Đăng xuất" in html  # the nav's logout
    assert page.headers["Cache-Control"] == "no-store"
    assert len(_events(kyso_app, username, "account.login")) == 1
    assert _events(kyso_app, username, "account.create")[0]["actor"] == "test"


def test_the_session_is_renewed_at_login(client: FlaskClient,
                                         official: tuple[str, str]) -> None:
    username, secret = official
    _token(client)  # an anonymous session with a CSRF token
    before = client.get_cookie("kyso_session")
    assert before is not None
    _login(client, username, secret)
    after = client.get_cookie("kyso_session")
    assert after is not None and after.value != before.value
    with client.session_transaction() as sess:
        assert "csrf_token" not in sess and sess["login_nonce"]


def test_next_page_after_login_stays_on_this_site(client: FlaskClient,
                                                  operator: tuple[str, str],
                                                  kyso_app: Any) -> None:
    anonymous = client.get("/test/operator-only")
    assert anonymous.status_code == 302
    assert "/login?next=/test/operator-only" in anonymous.headers["Location"]
    client.get("/login?next=/test/operator-only")
    done = _login(client, *operator)
    assert done.headers["Location"].endswith("/test/operator-only")
    client.post("/logout", data={"csrf_token": _token(client)})
    client.get("/login?next=//evil.example/")
    # Another account: the first one's code was just used (a code is accepted once).
    assert _login(client, *_make(kyso_app, "operator")).headers["Location"].endswith(
        "/account")


def test_wrong_password_and_unknown_user_get_the_same_401(client: FlaskClient,
                                                          official: tuple[str, str]) -> None:
    wrong = _password(client, official[0], "not-the-password")
    unknown = _password(client, "nobody-" + secrets.token_hex(4))
    for got in (wrong, unknown):
        assert got.status_code == 401
        assert GENERIC in _text(got) and "Traceback" not in _text(got)
    assert client.get("/account").status_code == 302


def test_wrong_totp_code_is_401(client: FlaskClient, official: tuple[str, str]) -> None:
    username, secret = official
    assert _password(client, username).status_code == 302
    got = _code(client, _wrong_code(secret))
    assert got.status_code == 401 and GENERIC in _text(got)
    assert client.get("/account").status_code == 302


def test_the_code_step_comes_after_the_password(client: FlaskClient,
                                                official: tuple[str, str]) -> None:
    got = client.post("/login/totp", data={"csrf_token": _token(client),
                                           "code": pyotp.TOTP(official[1]).now()})
    assert got.status_code == 401
    assert client.get("/login/totp").status_code == 302


def test_a_totp_code_is_accepted_once(client: FlaskClient, official: tuple[str, str],
                                      kyso_app: Any) -> None:
    username, secret = official
    code = pyotp.TOTP(secret).now()
    assert _password(client, username).status_code == 302
    assert _code(client, code).status_code == 302
    client.post("/logout", data={"csrf_token": _token(client)})
    assert _password(client, username).status_code == 302
    replayed = _code(client, code)
    assert replayed.status_code == 401 and GENERIC in _text(replayed)
    assert client.get("/account").status_code == 302
    failures = _events(kyso_app, username, "account.login")
    assert failures[-1]["outcome"] == "failure"
    assert failures[-1]["details"]["step"] == "totp-replay"


def test_the_totp_secret_is_not_stored_in_clear(kyso_app: Any,
                                                official: tuple[str, str]) -> None:
    username, secret = official
    with kyso_app.readers() as s:
        row = s.scalars(select(AccountRecord).where(AccountRecord.username == username)).one()
        assert row.totp_secret is not None and secret.encode() not in row.totp_secret
        assert row.password_hash.startswith("$argon2id$")
        assert accounts.open_secret(_key(kyso_app), username, row.totp_secret) == secret
        assert accounts.open_secret(_key(kyso_app), "someone-else", row.totp_secret) is None
    uri = accounts.provisioning_uri(secret, username)
    assert uri.startswith("otpauth://totp/kyso:") and f"secret={secret}" in uri


# -- lock-out -------------------------------------------------------------------------------

def test_lock_out_after_repeated_failures_then_unlock(kyso_app: Any,
                                                      official: tuple[str, str]) -> None:
    app = _app(kyso_app, login_max_failures=3)
    limiter.reset()
    client = app.test_client()
    username, secret = official
    assert _password(client, username, "wrong-1").status_code == 401
    assert _password(client, username, "wrong-2").status_code == 401
    locking = _password(client, username, "wrong-3")
    assert locking.status_code == 423
    assert "liên hệ nhân viên vận hành" in _text(locking)
    # Locked: even the right password is refused, with the same clear message.
    assert _password(client, username).status_code == 423
    locks = _events(kyso_app, username, "account.lock")
    assert len(locks) == 1 and locks[0]["details"] == {"failed_logins": 3}
    assert len(_events(kyso_app, username, "account.login")) == 3

    unlock_account(kyso_app, username, actor="cli:operator")
    assert _events(kyso_app, username, "account.unlock")[0]["actor"] == "cli:operator"
    assert _login(client, username, secret).status_code == 302
    assert client.get("/account").status_code == 200


def test_wrong_codes_count_towards_the_lock_out(kyso_app: Any,
                                                official: tuple[str, str]) -> None:
    app = _app(kyso_app, login_max_failures=2)
    limiter.reset()
    client = app.test_client()
    username, _secret = official
    assert _password(client, username).status_code == 302
    assert _code(client, _wrong_code(_secret)).status_code == 401
    assert _password(client, username).status_code == 302
    got = _code(client, "abcdef")
    assert got.status_code == 423
    assert len(_events(kyso_app, username, "account.lock")) == 1


def test_login_posts_are_rate_limited(kyso_app: Any, official: tuple[str, str]) -> None:
    app = _app(kyso_app, login_rate_limit="2/minute")
    limiter.reset()
    client = app.test_client()
    statuses = [_password(client, "nobody", "x").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]


# -- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("form", [
    {},
    {"username": "an"},
    {"password": PASSWORD},
    {"username": "a" * 65, "password": PASSWORD},
    {"username": "an", "password": "p" * 1025},
])
def test_bad_login_input_is_a_400_page(client: FlaskClient, form: dict[str, str]) -> None:
    got = client.post("/login", data={"csrf_token": _token(client), **form})
    assert got.status_code == 400
    assert got.mimetype == "text/html" and "Traceback" not in _text(got)
    assert 'class="alert"' in _text(got)


def test_the_login_form_needs_its_csrf_token(client: FlaskClient,
                                             official: tuple[str, str]) -> None:
    got = client.post("/login", data={"username": official[0], "password": PASSWORD})
    assert got.status_code == 400
    assert "mã bảo mật" in _text(got) or "security token" in _text(got) \
        or "csrf" in _text(got).lower()
    assert _TOKEN.search(_text(got))  # the form again, with a fresh token
    assert client.get("/login/totp").status_code == 302  # no password step was taken


def test_logout_needs_its_csrf_token(client: FlaskClient, official: tuple[str, str]) -> None:
    _login(client, *official)
    assert client.post("/logout").status_code == 400
    assert client.get("/account").status_code == 200


# -- roles ----------------------------------------------------------------------------------

def test_a_missing_role_is_403(client: FlaskClient, official: tuple[str, str]) -> None:
    _login(client, *official)
    got = client.get("/test/operator-only")
    assert got.status_code == 403 and "operator" in _text(got)
    api = client.get("/test/operator-only", headers={"Accept": "application/json"})
    assert api.status_code == 403 and api.get_json()["error"]["code"] == "role_required"


def test_the_role_lets_in(client: FlaskClient, operator: tuple[str, str]) -> None:
    _login(client, *operator)
    got = client.get("/test/operator-only")
    assert got.status_code == 200 and _text(got) == "operator page"


def test_anonymous_gets_a_redirect_or_a_json_401(client: FlaskClient) -> None:
    page = client.get("/test/operator-only")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    api = client.get("/test/operator-only", headers={"Accept": "application/json"})
    assert api.status_code == 401 and api.get_json()["error"]["code"] == "login_required"


def test_logout_clears_access(client: FlaskClient, operator: tuple[str, str]) -> None:
    _login(client, *operator)
    assert client.get("/test/operator-only").status_code == 200
    out = client.post("/logout", data={"csrf_token": _token(client, "/account")})
    assert out.status_code == 302
    assert client.get("/test/operator-only").status_code == 302
    assert client.get("/account").status_code == 302
    assert "Đăng nhập" in _text(client.get("/login"))


def test_a_locked_account_loses_its_session(client: FlaskClient, operator: tuple[str, str],
                                            kyso_app: Any) -> None:
    _login(client, *operator)
    with kyso_app.sessions.begin() as s:
        row = accounts.find(s, operator[0])
        assert row is not None
        row.locked = True
    assert client.get("/account").status_code == 302


# -- accounts, settings, schema -------------------------------------------------------------

def test_account_rules(kyso_app: Any, official_id: int) -> None:
    key = _key(kyso_app)
    cases: list[dict[str, Any]] = [
        {"username": "x y", "roles": ["operator"]},
        {"username": "ok-" + secrets.token_hex(3), "roles": ["root"]},
        {"username": "ok-" + secrets.token_hex(3), "roles": []},
        {"username": "ok-" + secrets.token_hex(3), "roles": ["official"]},  # no official id
        {"username": "ok-" + secrets.token_hex(3), "roles": ["operator"], "password": "short"},
        {"username": "ok-" + secrets.token_hex(3), "roles": ["official"], "official_id": 10**6},
    ]
    for case in cases:
        with kyso_app.sessions.begin() as s, pytest.raises(accounts.AccountError):
            accounts.create_account(s, key=key, password=case.pop("password", PASSWORD),
                                    **case)
    taken, _ = _make(kyso_app, "admin")
    with kyso_app.sessions.begin() as s, pytest.raises(accounts.AccountError, match="taken"):
        accounts.create_account(s, username=taken, password=PASSWORD, roles=["admin"],
                                key=key)


def test_add_account_prints_a_provisioning_uri(kyso_app: Any, official_id: int) -> None:
    username = "cli-" + secrets.token_hex(4)
    uri = add_account(kyso_app, username, PASSWORD, ("official", "operator"),
                      official_id=official_id, display_name="Lê Văn Cường")
    assert uri.startswith("otpauth://totp/kyso:" + username)
    with kyso_app.readers() as s:
        row = accounts.find(s, username)
        assert row is not None and accounts.roles_of(row) == ("official", "operator")


def test_login_settings_are_validated() -> None:
    for bad in ({"login_max_failures": 0}, {"session_hours": 0},
                {"login_rate_limit": "often"}):
        with pytest.raises(SettingsError):
            WebSettings(**bad)
    web = WebSettings()
    assert (web.login_max_failures, web.login_rate_limit, web.session_hours) == (
        5, "10/minute", 8)


def test_the_accounts_table_is_migrated(kyso_app: Any) -> None:
    columns = {c["name"] for c in inspect(kyso_app.engine).get_columns("accounts")}
    assert {"username", "password_hash", "totp_secret", "roles", "official_id",
            "failed_logins", "locked", "last_totp_step", "created_at",
            "password_changed_at"} <= columns


def test_kyso_account_cli(kyso_cli: Callable[..., subprocess.CompletedProcess[str]],
                          tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n", encoding="utf-8")
    username = "op-" + secrets.token_hex(4)
    added = kyso_cli("account", "add", username, "--role", "operator", "--role", "auditor",
                     "--password-file", str(secret_file), "--display-name", "Phạm Thị Dung")
    assert f"otpauth://totp/kyso:{username}" in added.stdout
    assert PASSWORD not in added.stdout
    unlocked = kyso_cli("account", "unlock", username)
    assert f"unlocked account {username}" in unlocked.stdout
