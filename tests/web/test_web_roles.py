"""Every endpoint x every role: who may use it and who is turned away, from the URL map itself.

A new endpoint fails `test_every_endpoint_is_classified` until it is given its audience below,
so no page or API call goes out without its role check being tested."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from web_support import Account, app_over, login, new_account, new_official

PUBLIC = "public"  # anyone, no login
LOGGED_IN = "logged-in"  # any account, whatever its roles
TOKEN = "token"  # the JSON API with a Bearer token: a browser session is not enough
ROLES = ("official", "operator", "auditor", "admin")

ACCESS: dict[str, str | tuple[str, ...]] = {
    # Public repository, verification, revocation data, timestamps, logging in.
    "static": PUBLIC, "repository.index": PUBLIC, "repository.healthz": PUBLIC,
    "repository.ca_pem": PUBLIC, "repository.ca_der": PUBLIC, "repository.ca_chain": PUBLIC,
    "crl.full_crl": PUBLIC, "crl.delta_crl": PUBLIC, "tsa.timestamp": PUBLIC,
    "verify.form": PUBLIC, "verify.verify": PUBLIC,
    "auth.login": PUBLIC, "auth.login_password": PUBLIC, "auth.login_totp_form": PUBLIC,
    "auth.login_totp": PUBLIC, "auth.logout": PUBLIC,
    "api.openapi": PUBLIC, "api.verify": PUBLIC, "api.cas": PUBLIC,
    "api.certificate": PUBLIC, "api.certificate_pem": PUBLIC, "api.certificate_status": PUBLIC,
    # Acting for an official over the API: a token of that official.
    "api.sign": TOKEN, "api.file_certificate_request": TOKEN, "api.certificate_request": TOKEN,
    # One's own account.
    "auth.account": LOGGED_IN,
    "account_security.password_form": LOGGED_IN, "account_security.change_password": LOGGED_IN,
    "account_security.totp_form": LOGGED_IN, "account_security.totp_start": LOGGED_IN,
    "account_security.totp_confirm": LOGGED_IN,
    # Officials.
    **{f"portal.{e}": ("official",) for e in (
        "certificates", "chain_pem", "sign", "upload", "batch", "preview", "sign_batch",
        "results", "signed", "signed_zip", "delete_batch", "complete_rekey")},
    **{f"tokens.{e}": ("official",) for e in ("tokens", "create_token", "revoke_token")},
    **{f"requests.{e}": ("official",) for e in ("renew_form", "renew", "my_requests",
                                                 "cancel")},
    # Operators.
    **{f"console.{e}": ("operator",) for e in (
        "index", "certificates", "certificate", "certificate_pem", "revoke", "hold",
        "release", "officials", "new_official", "create_official", "status")},
    **{f"requests.{e}": ("operator",) for e in ("console", "approve", "reject", "new_form",
                                                 "new")},
    **{f"reorg.{e}": ("operator",) for e in ("index", "dry_run", "apply", "batch", "progress",
                                              "resume", "retry")},
    # Auditors and administrators.
    **{f"audit.{e}": ("auditor",) for e in ("log", "verify", "export_csv")},
    **{f"admin.{e}": ("admin",) for e in (
        "accounts", "create", "edit", "set_roles", "lock", "unlock", "reset_password",
        "reset_totp")},
}

# Values for URL variables: well-formed, naming nothing that exists (the role check comes
# before any lookup, so an allowed role gets 404 or 400 here, a refused one 401/403).
ARGUMENTS = {"serial": "7e57", "name": "issuing", "batch_id": "A" * 24, "n": 1,
             "reorg_batch": 987654,
             "request_no": 987654, "account_id": 987654, "token_id": 987654,
             "filename": "style.css"}
ANONYMOUS = "anonymous"  # a client that never logged in


def _app(kyso_app: Any) -> Flask:
    app = app_over(kyso_app, login_rate_limit="1000/minute", verify_rate_limit="1000/minute",
                   sign_rate_limit="1000/minute")
    # Forms without a CSRF token would be refused before the role check; the check is what
    # this module tests (CSRF has its own tests).
    app.config["WTF_CSRF_ENABLED"] = False
    return app


@pytest.fixture(scope="module")
def role_app(kyso_app: Any) -> Flask:
    return _app(kyso_app)


@pytest.fixture(scope="module")
def people(kyso_app: Any, role_app: Flask) -> dict[str, Account]:
    official_id, _ = new_official(kyso_app, "Lê Thị Vai Trò", "864213579")
    return {role: new_account(kyso_app, role, prefix=f"role-{role}",
                              official=official_id if role == "official" else None)
            for role in ROLES}


@pytest.fixture(scope="module")
def clients(role_app: Flask, people: dict[str, Account]) -> dict[str, FlaskClient]:
    from web.security import limiter

    limiter.reset()
    out = {ANONYMOUS: role_app.test_client()}
    for role, account in people.items():
        out[role] = _logged_in(role_app, account)
    return out


def _logged_in(app: Flask, account: Account) -> FlaskClient:
    client = app.test_client()
    app.config["WTF_CSRF_ENABLED"] = True  # through the real login forms, with their tokens
    try:
        login(client, account)
    finally:
        app.config["WTF_CSRF_ENABLED"] = False
    return client


def _calls(app: Flask) -> list[tuple[str, str, str]]:
    out = []
    for rule in app.url_map.iter_rules():
        url = rule.build({a: ARGUMENTS[a] for a in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, url))
    return sorted(out)


def test_every_endpoint_is_classified(role_app: Flask) -> None:
    endpoints = {rule.endpoint for rule in role_app.url_map.iter_rules()}
    assert endpoints - ACCESS.keys() == set(), "give the new endpoints their audience in ACCESS"
    assert ACCESS.keys() - endpoints == set(), "ACCESS lists endpoints that no longer exist"


@pytest.mark.parametrize("who", [ANONYMOUS, *ROLES])
def test_each_role_gets_exactly_its_endpoints(who: str, role_app: Flask,
                                              clients: dict[str, FlaskClient]) -> None:
    client = clients[who]
    wrong: list[str] = []
    for endpoint, method, url in _calls(role_app):
        if endpoint == "auth.logout":
            continue  # would end this client's session; public by design (tested in auth)
        access = ACCESS[endpoint]
        response = client.open(url, method=method, headers={"Accept": "text/html"})
        status = response.status_code
        where = f"{method} {url} as {who}: {status}"
        if status >= 500:
            wrong.append(f"{where} (server error)")
        elif access == PUBLIC:
            # (The login steps answer 401 to wrong or missing credentials: that is no refusal.)
            if status == 403 or (status == 401 and not endpoint.startswith("auth.login")):
                wrong.append(f"{where} (public endpoint refused)")
        elif access == TOKEN:
            # A session cookie is no API credential: without a Bearer token, 401 for all.
            if status != 401 or response.get_json(silent=True) is None:
                wrong.append(f"{where} (expected a JSON 401 without a token)")
        elif who == ANONYMOUS:
            login_page = status == 302 and "/login" in response.headers.get("Location", "")
            if not (login_page if method == "GET" else status == 401):
                wrong.append(f"{where} (expected the login page / 401)")
        elif access == LOGGED_IN or who in access:
            if status in (401, 403):
                wrong.append(f"{where} (allowed role refused)")
        elif status != 403:
            wrong.append(f"{where} (expected 403 for a role without access)")
    assert wrong == []


def test_a_person_with_several_roles_gets_the_pages_of_each(kyso_app: Any,
                                                            role_app: Flask) -> None:
    client = _logged_in(role_app, new_account(kyso_app, "operator", "auditor",
                                              prefix="role-both"))
    assert client.get("/console/").status_code == 200
    assert client.get("/audit/").status_code == 200
    assert client.get("/admin/accounts").status_code == 403
    assert client.get("/portal/").status_code == 403
