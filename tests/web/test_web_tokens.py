"""API tokens (/account/tokens) and POST /api/v1/sign: made in the portal, shown once, kept
hashed, revocable, scoped to the account's official; signing still needs the official's PIN."""

from __future__ import annotations

import hashlib
import io
import re
import secrets
from typing import Any

import pyotp
import pytest
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient
from pdf_samples import make_pdf
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select
from web_support import app_over, totp_key
from werkzeug.test import TestResponse

from ca import accounts, api_tokens, audit
from ca.models import ApiTokenRecord, OfficialRecord
from signer.pdfsign import Kind, Level
from web import openapi
from web.security import limiter

PASSWORD = "mật-khẩu-đủ-dài-2026"
PIN_A = "246813579"
PIN_B = "135792468"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_SHOWN = re.compile(r'<code class="token">(kyso_[A-Za-z0-9_-]+)</code>')
PDF = make_pdf(1)


# -- fixtures -------------------------------------------------------------------------------

def _add_official(kyso_app: Any, name: str, pin: str) -> tuple[int, str]:
    new = kyso_app.authority.add_official(
        pin=pin, name=name, organization="Ủy ban nhân dân phường Bến Thành",
        email=f"{secrets.token_hex(3)}@benthanh.hochiminhcity.gov.vn", title="Chánh Văn phòng",
        ca_name="issuing")
    return new.official_id, new.certificate.serial


@pytest.fixture(scope="module")
def official_a(kyso_app: Any) -> tuple[int, str]:
    return _add_official(kyso_app, "Nguyễn Thị Hồng Nhung", PIN_A)


@pytest.fixture(scope="module")
def official_b(kyso_app: Any) -> tuple[int, str]:
    return _add_official(kyso_app, "Trần Văn Bình", PIN_B)


def _account(kyso_app: Any, *roles: str, official: int | None = None) -> tuple[int, str, str]:
    username = f"tok-{secrets.token_hex(4)}"
    with kyso_app.sessions.begin() as s:
        row, secret = accounts.create_account(
            s, username=username, password=PASSWORD, roles=roles, key=totp_key(kyso_app),
            official_id=official, actor="test")
        return row.id, username, secret


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    match = _CSRF.search(page.get_data(as_text=True))
    assert match
    return match.group(1)


def _login(client: FlaskClient, username: str, secret: str) -> None:
    first = client.post("/login", data={"csrf_token": _csrf(client, "/login"),
                                        "username": username, "password": PASSWORD})
    assert first.status_code == 302
    done = client.post("/login/totp", data={"csrf_token": _csrf(client, "/login/totp"),
                                            "code": pyotp.TOTP(secret).now()})
    assert done.status_code == 302, done.get_data(as_text=True)


@pytest.fixture
def portal(client: FlaskClient, kyso_app: Any,
           official_a: tuple[int, str]) -> tuple[FlaskClient, int]:
    """A client logged in as a fresh account with the official role, linked to official A."""
    account_id, username, secret = _account(kyso_app, "official", official=official_a[0])
    _login(client, username, secret)
    return client, account_id


def _create(client: FlaskClient, name: str = "Hệ thống quản lý văn bản",
            scopes: tuple[str, ...] = ("sign",), expires: str = "") -> TestResponse:
    return client.post("/account/tokens", data={
        "csrf_token": _csrf(client, "/account/tokens"), "name": name, "scope": list(scopes),
        "expires_days": expires})


def _token(kyso_app: Any, official: int, scopes: tuple[str, ...] = ("sign",)) -> str:
    account_id, _, _ = _account(kyso_app, "official", official=official)
    with kyso_app.sessions.begin() as s:
        return api_tokens.create(s, account_id, name="test", scopes=scopes)[1]


def _sign(client: FlaskClient, token: str | None, pin: str | None = PIN_A,
          data: bytes = PDF, query: str = "?level=B-B", **kw: Any) -> TestResponse:
    headers = {}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if pin is not None:
        headers["X-Signing-PIN"] = pin
    kw.setdefault("content_type", "application/pdf")
    return client.post("/api/v1/sign" + query, data=data, headers=headers, **kw)


def _error(response: TestResponse) -> dict[str, Any]:
    body = response.get_json()
    assert body is not None, response.get_data(as_text=True)[:500]
    return body["error"]  # type: ignore[no-any-return]


def _signer_serial(pdf: bytes, kyso_app: Any) -> str:
    """The serial of the one signature of `pdf`, after checking it against our root CA."""
    root = kyso_app.authority.chain("issuing")[-1]
    anchor = asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER))
    reader = PdfFileReader(io.BytesIO(pdf))
    assert len(reader.embedded_signatures) == 1
    sig = reader.embedded_signatures[0]
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=[anchor]))
    assert status.intact and status.valid and status.trusted
    return format(sig.signer_cert.serial_number, "x")


# -- the portal -----------------------------------------------------------------------------

def test_token_made_in_the_portal_signs_for_its_official(
        portal: tuple[FlaskClient, int], kyso_app: Any, official_a: tuple[int, str],
        official_b: tuple[int, str]) -> None:
    client, account_id = portal
    made = _create(client)
    assert made.status_code == 201
    html = made.get_data(as_text=True)
    match = _SHOWN.search(html)
    assert match, "the new token is shown once"
    token = match.group(1)
    assert len(token) == len("kyso_") + 43
    # The list shows the prefix, never the secret again.
    listing = client.get("/account/tokens").get_data(as_text=True)
    assert f"kyso_{token[5:13]}…" in listing and token not in listing
    assert "Hệ thống quản lý văn bản" in listing
    # The database keeps only the SHA-256.
    with kyso_app.readers() as s:
        row = s.scalars(select(ApiTokenRecord).where(ApiTokenRecord.account_id == account_id)
                        ).one()
        assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
        assert row.prefix == token[5:13] and row.official_id == official_a[0]
        assert row.scope == "sign" and row.last_used_at is None
        for value in (row.name, row.prefix, row.token_hash, row.scope):
            assert token[5:] not in value
    api = client.application.test_client()  # no cookies: the token alone
    signed = _sign(api, token)
    assert signed.status_code == 200, signed.get_data(as_text=True)
    assert signed.mimetype == "application/pdf"
    assert signed.headers["X-Signature-Level"] == "B-B"
    assert signed.headers["X-Certificate-Serial"] == official_a[1]
    assert signed.headers["Cache-Control"] == "no-store"
    signed_pdf = signed.get_data()
    assert signed_pdf.startswith(PDF[:8]) and signed_pdf[:len(PDF)] == PDF
    # The signer is official A, the token's: there is no way to name official B.
    serial = _signer_serial(signed_pdf, kyso_app)
    assert serial == official_a[1] and serial != official_b[1]
    with kyso_app.readers() as s:
        assert s.get(ApiTokenRecord, row.id).last_used_at is not None  # type: ignore[union-attr]
        assert audit.events(s, action="api_token.create", obj=f"api_token:{row.id}:{row.prefix}")
        signs = audit.events(s, action="document.sign", obj=f"certificate:{official_a[1]}")
    assert signs and signs[-1]["outcome"] == "success"


def test_revoked_token_is_refused(portal: tuple[FlaskClient, int], kyso_app: Any) -> None:
    client, account_id = portal
    token = _SHOWN.search(_create(client).get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    with kyso_app.readers() as s:
        token_id = api_tokens.list_for(s, account_id)[0].id
    revoked = client.post(f"/account/tokens/{token_id}/revoke",
                          data={"csrf_token": _csrf(client, "/account/tokens")})
    assert revoked.status_code == 302
    assert "revoked" in client.get("/account/tokens?lang=en").get_data(as_text=True) \
        or "thu hồi" in client.get("/account/tokens").get_data(as_text=True)
    got = _sign(client.application.test_client(), token)
    assert got.status_code == 401 and _error(got)["code"] == "invalid_token"
    assert got.headers["WWW-Authenticate"].startswith("Bearer")
    with kyso_app.readers() as s:
        rejected = audit.events(s, action="api_token.reject")
    assert rejected and rejected[-1]["details"]["reason"] == "revoked"


def test_a_token_is_revoked_only_by_its_account(portal: tuple[FlaskClient, int],
                                                kyso_app: Any,
                                                official_b: tuple[int, str]) -> None:
    client, _ = portal
    other_id, _, _ = _account(kyso_app, "official", official=official_b[0])
    with kyso_app.sessions.begin() as s:
        info, token = api_tokens.create(s, other_id, name="B", scopes=["sign"])
    got = client.post(f"/account/tokens/{info.id}/revoke",
                      data={"csrf_token": _csrf(client, "/account/tokens")})
    assert got.status_code == 404
    with kyso_app.readers() as s:
        assert s.get(ApiTokenRecord, info.id).revoked_at is None  # type: ignore[union-attr]


def test_forms_need_their_csrf_token(portal: tuple[FlaskClient, int]) -> None:
    client, _ = portal
    got = client.post("/account/tokens", data={"name": "x", "scope": "sign"})
    assert got.status_code == 400


def test_only_officials_have_token_pages(client: FlaskClient, kyso_app: Any) -> None:
    assert client.get("/account/tokens").status_code == 302  # anonymous: to the login
    _, username, secret = _account(kyso_app, "operator", "admin")
    _login(client, username, secret)
    assert client.get("/account/tokens").status_code == 403
    # An operator or admin cannot make a token (to sign as anyone).
    with kyso_app.sessions.begin() as s:
        operator = accounts.find(s, username)
        assert operator is not None
        with pytest.raises(api_tokens.TokenError):
            api_tokens.create(s, operator.id, name="x", scopes=["sign"])


# -- POST /api/v1/sign ----------------------------------------------------------------------

def test_multipart_upload_with_form_parameters(client: FlaskClient, kyso_app: Any,
                                               official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0])
    got = _sign(client, token, query="", content_type="multipart/form-data",
                data={"file": (io.BytesIO(PDF), "a.pdf", "application/pdf"), "level": "B-B",
                      "visible": "1,350,50,200,80"})
    assert got.status_code == 200, got.get_data(as_text=True)
    assert _signer_serial(got.get_data(), kyso_app) == official_a[1]


def test_wrong_pin_says_how_many_attempts_are_left(client: FlaskClient, kyso_app: Any,
                                                   official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0])
    got = _sign(client, token, pin="000000000")
    assert got.status_code == 403
    error = _error(got)
    assert error["code"] == "pin_incorrect" and "attempt(s) left" in error["message"]
    assert _sign(client, token).status_code == 200  # the right PIN still works


def test_missing_pin_bad_body_and_parameters(client: FlaskClient, kyso_app: Any,
                                             official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0])
    cases = [
        (_sign(client, token, pin=None), 400, "missing_pin"),
        (_sign(client, token, data=b"not a pdf at all"), 415, "not_a_pdf"),
        (_sign(client, token, content_type="text/plain"), 415, "unsupported_media_type"),
        (_sign(client, token, data=b""), 400, "missing_body"),
        (_sign(client, token, query="?level=B-X"), 400, "invalid_level"),
        (_sign(client, token, query="?level=B-B&kind=king"), 400, "invalid_kind"),
        (_sign(client, token, query="?level=B-B&visible=1,2"), 422, "signing_refused"),
    ]
    for got, status, code in cases:
        assert got.status_code == status, (code, got.get_data(as_text=True))
        assert _error(got)["code"] == code


def test_timestamped_levels_without_a_tsa_are_a_clear_error(
        client: FlaskClient, kyso_app: Any, official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0])
    for level in ("B-T", "B-LT"):
        got = _sign(client, token, query=f"?level={level}")
        assert got.status_code in (422, 503), got.get_data(as_text=True)
        assert _error(got)["code"] in ("tsa_unavailable", "tsa_rejected")


def test_missing_unknown_and_malformed_tokens_are_401(client: FlaskClient,
                                                      kyso_app: Any) -> None:
    for token in (None, "", "kyso_" + secrets.token_urlsafe(32), "nonsense", "x" * 5000):
        got = _sign(client, token)
        assert got.status_code == 401, token
        assert _error(got)["code"] == "invalid_token"
    basic = client.post("/api/v1/sign", data=PDF, content_type="application/pdf",
                        headers={"Authorization": "Basic dXNlcjpwYXNz", "X-Signing-PIN": "1"})
    assert basic.status_code == 401


def test_token_without_sign_scope_is_403(client: FlaskClient, kyso_app: Any,
                                         official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0], scopes=("read",))
    got = _sign(client, token)
    assert got.status_code == 403 and _error(got)["code"] == "token_scope"


def test_expired_token_is_401(client: FlaskClient, kyso_app: Any,
                              official_a: tuple[int, str]) -> None:
    token = _token(kyso_app, official_a[0])
    with kyso_app.sessions.begin() as s:
        row = s.scalars(select(ApiTokenRecord).where(
            ApiTokenRecord.token_hash == api_tokens.hash_token(token))).one()
        row.expires_at = row.created_at
    assert _sign(client, token).status_code == 401


def test_revoked_certificate_is_refused_before_the_pin(client: FlaskClient,
                                                       kyso_app: Any) -> None:
    official_id, serial = _add_official(kyso_app, "Lê Văn Cường", PIN_A)
    token = _token(kyso_app, official_id)
    kyso_app.authority.revoke(serial, "keyCompromise", actor="test")
    got = _sign(client, token, pin="000000000")  # a wrong PIN: never tried
    assert got.status_code == 422 and _error(got)["code"] == "signing_refused"
    with kyso_app.readers() as s:
        assert s.get(OfficialRecord, official_id).failed_pin_attempts == 0  # type: ignore[union-attr]


def test_sign_is_rate_limited(kyso_app: Any) -> None:
    limited = app_over(kyso_app, sign_rate_limit="2/minute")
    limiter.reset()
    client = limited.test_client()
    statuses = [_sign(client, None).status_code for _ in range(3)]
    assert statuses == [401, 401, 429]
    limiter.reset()


def test_openapi_vocabularies_of_sign_match_the_signer() -> None:
    assert openapi.PADES_LEVELS == [level.value for level in Level]
    assert openapi.SIGN_KINDS == [kind.value for kind in Kind]
    operation = openapi.document()["paths"]["/sign"]["post"]
    assert operation["security"] == [{"apiToken": []}]
    assert {"401", "403", "423", "429"} <= set(operation["responses"])
