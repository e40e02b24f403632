"""The administrators' pages (/admin/accounts): list, create (credentials shown once, not
cached), edit roles, lock, unlock, reset password and TOTP; all audited as web:<admin>; an
admin cannot demote or lock themselves; other roles get 403, anonymous people /login."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Any

import pyotp
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from web_support import Account, account_row, csrf, login, new_account

from ca import accounts
from ca.models import AuditEventRecord, OfficialRecord

_PASSWORD = re.compile(r'<code id="new-password"[^>]*>([^<]+)</code>')
_SECRET = re.compile(r'<code id="new-totp-secret"[^>]*>([A-Z2-7]+)</code>')
_URI = re.compile(r'<code id="new-totp-uri"[^>]*>(otpauth://[^<]+)</code>')


@pytest.fixture
def admin(kyso_app: Any) -> Account:
    return new_account(kyso_app, "admin", prefix="adm")


@pytest.fixture
def as_admin(client: FlaskClient, admin: Account) -> FlaskClient:
    login(client, admin)
    return client


@pytest.fixture(scope="module")
def official_id(kyso_app: Any) -> int:
    with kyso_app.sessions.begin() as s:
        row = OfficialRecord(name="Lê Thị Thu Hà", organization="UBND phường Bến Thành",
                             email="ha@benthanh.hochiminhcity.gov.vn", failed_pin_attempts=0,
                             locked=False, created_at=datetime.now(UTC))
        s.add(row)
        s.flush()
        return row.id


def _actors(kyso_app: Any, action: str, username: str) -> list[str]:
    with kyso_app.readers() as s:
        return list(s.scalars(select(AuditEventRecord.actor).where(
            AuditEventRecord.action == action,
            AuditEventRecord.object == f"account:{username}")))


def _post(client: FlaskClient, path: str, **form: Any) -> Any:
    return client.post(path, data={"csrf_token": csrf(client, "/account"), **form})


# -- who may see it ------------------------------------------------------------------------------

def test_anonymous_is_sent_to_login(client: FlaskClient) -> None:
    page = client.get("/admin/accounts")
    assert page.status_code == 302 and "/login" in page.headers["Location"]


@pytest.mark.parametrize("roles", [("operator",), ("auditor",)])
def test_other_roles_get_403(client: FlaskClient, kyso_app: Any, roles: tuple[str, ...]) -> None:
    login(client, new_account(kyso_app, *roles, prefix="noadm"))
    assert client.get("/admin/accounts").status_code == 403
    assert _post(client, "/admin/accounts", username="sneaky", role="admin").status_code == 403
    with kyso_app.readers() as s:
        assert accounts.find(s, "sneaky") is None


# -- list and create -----------------------------------------------------------------------------

def test_list_shows_accounts(as_admin: FlaskClient, kyso_app: Any, admin: Account) -> None:
    other = new_account(kyso_app, "auditor", prefix="listed")
    page = as_admin.get("/admin/accounts")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'data-username="{other.username}"' in html
    assert f'data-username="{admin.username}"' in html
    row = html.split(f'data-username="{admin.username}"')[1].split("</tr>")[0]
    assert datetime.now(UTC).strftime("%Y") in row  # last login recorded: just now


def test_create_shows_credentials_once(as_admin: FlaskClient, kyso_app: Any, admin: Account,
                                       official_id: int, app: Flask) -> None:
    username = f"new-{secrets.token_hex(3)}"
    page = _post(as_admin, "/admin/accounts", username=username, display_name="Lê Thị Thu Hà",
                 role=["official", "auditor"], official_id=str(official_id))
    assert page.status_code == 200, page.get_data(as_text=True)[:2000]
    assert page.headers["Cache-Control"] == "no-store"
    html = page.get_data(as_text=True)
    password, secret, uri = _PASSWORD.search(html), _SECRET.search(html), _URI.search(html)
    assert password and secret and uri and secret.group(1) in uri.group(1)
    with kyso_app.readers() as s:
        row = accounts.find(s, username)
        assert row is not None
        assert accounts.roles_of(row) == ("official", "auditor")
        assert row.official_id == official_id
    assert _actors(kyso_app, "account.create", username) == [f"web:{admin.username}"]
    # The person logs in with what was shown.
    fresh = app.test_client()
    first = fresh.post("/login", data={"csrf_token": csrf(fresh, "/login"),
                                       "username": username, "password": password.group(1)})
    assert first.status_code == 302
    done = fresh.post("/login/totp", data={"csrf_token": csrf(fresh, "/login/totp"),
                                           "code": pyotp.TOTP(secret.group(1)).now()})
    assert done.status_code == 302
    # Listed afterwards, without any credential.
    listing = as_admin.get("/admin/accounts").get_data(as_text=True)
    assert username in listing and password.group(1) not in listing


@pytest.mark.parametrize(("form", "fragment"), [
    ({"role": "official"}, "official"),
    ({"role": "operator", "official_id": "999999999"}, "999999999"),
    ({"role": "operator", "official_id": "abc"}, ""),
    ({}, ""),
    ({"role": "superuser"}, ""),
])
def test_create_refusals(as_admin: FlaskClient, kyso_app: Any, form: dict[str, str],
                         fragment: str) -> None:
    username = f"bad-{secrets.token_hex(3)}"
    page = _post(as_admin, "/admin/accounts", username=username, **form)
    assert page.status_code == 400
    assert 'class="alert"' in page.get_data(as_text=True)
    with kyso_app.readers() as s:
        assert accounts.find(s, username) is None


def test_create_refuses_a_taken_username(as_admin: FlaskClient, admin: Account) -> None:
    page = _post(as_admin, "/admin/accounts", username=admin.username, role="operator")
    assert page.status_code == 400


# -- edit ----------------------------------------------------------------------------------------

def test_edit_roles(as_admin: FlaskClient, kyso_app: Any, admin: Account,
                    official_id: int) -> None:
    target = new_account(kyso_app, "operator", prefix="edit")
    page = as_admin.get(f"/admin/accounts/{target.id}")
    assert page.status_code == 200 and target.username in page.get_data(as_text=True)
    done = _post(as_admin, f"/admin/accounts/{target.id}/roles", role=["auditor", "official"],
                 official_id=str(official_id))
    assert done.status_code == 302
    row = account_row(kyso_app, target.id)
    assert accounts.roles_of(row) == ("auditor", "official") and row.official_id == official_id
    assert _actors(kyso_app, "account.roles.change", target.username) == [
        f"web:{admin.username}"]
    refused = _post(as_admin, f"/admin/accounts/{target.id}/roles", role="official")
    assert refused.status_code == 400  # an official needs an official id: keep it
    refused = _post(as_admin, f"/admin/accounts/{target.id}/roles", role="auditor",
                    official_id="999999999")
    assert refused.status_code == 400
    assert accounts.roles_of(account_row(kyso_app, target.id)) == ("auditor", "official")
    assert as_admin.get("/admin/accounts/999999999").status_code == 404


def test_admin_cannot_demote_or_lock_themselves(as_admin: FlaskClient, kyso_app: Any,
                                                admin: Account) -> None:
    demote = _post(as_admin, f"/admin/accounts/{admin.id}/roles", role="operator")
    assert demote.status_code == 400 and 'class="alert"' in demote.get_data(as_text=True)
    assert accounts.roles_of(account_row(kyso_app, admin.id)) == ("admin",)
    assert _post(as_admin, f"/admin/accounts/{admin.id}/lock").status_code == 400
    assert not account_row(kyso_app, admin.id).locked
    assert _post(as_admin, f"/admin/accounts/{admin.id}/reset-password").status_code == 400
    # Adding a role to oneself is fine, as long as admin stays.
    ok = _post(as_admin, f"/admin/accounts/{admin.id}/roles", role=["admin", "auditor"])
    assert ok.status_code == 302
    assert as_admin.get("/admin/accounts").status_code == 200


def test_lock_ends_sessions_and_unlock(as_admin: FlaskClient, kyso_app: Any, app: Flask,
                                       admin: Account) -> None:
    target = new_account(kyso_app, "operator", prefix="lock")
    theirs = app.test_client()
    login(theirs, target)
    assert theirs.get("/account").status_code == 200
    assert _post(as_admin, f"/admin/accounts/{target.id}/lock").status_code == 302
    assert account_row(kyso_app, target.id).locked
    assert theirs.get("/account").status_code == 302  # logged out at once
    assert _post(as_admin, f"/admin/accounts/{target.id}/unlock").status_code == 302
    assert not account_row(kyso_app, target.id).locked
    actor = f"web:{admin.username}"
    assert _actors(kyso_app, "account.lock", target.username) == [actor]
    assert _actors(kyso_app, "account.unlock", target.username) == [actor]


def test_reset_password_and_totp(as_admin: FlaskClient, kyso_app: Any, admin: Account) -> None:
    target = new_account(kyso_app, "auditor", prefix="reset")
    page = _post(as_admin, f"/admin/accounts/{target.id}/reset-password")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    password = _PASSWORD.search(page.get_data(as_text=True))
    assert password
    with kyso_app.sessions.begin() as s:
        assert accounts.check_password(s, target.username, password.group(1),
                                       max_failures=5).outcome is accounts.Outcome.OK
    page = _post(as_admin, f"/admin/accounts/{target.id}/reset-totp")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    secret = _SECRET.search(page.get_data(as_text=True))
    assert secret and secret.group(1) != target.totp_secret
    actor = f"web:{admin.username}"
    assert _actors(kyso_app, "account.password.reset", target.username) == [actor]
    assert _actors(kyso_app, "account.totp.enrol", target.username) == [actor]


def test_no_signing_here(as_admin: FlaskClient) -> None:
    html = as_admin.get("/admin/accounts").get_data(as_text=True)
    assert "pin" not in html.lower().replace("pinned", "")
