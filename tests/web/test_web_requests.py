"""Certificate requests on the web: officials file them in the portal (or through the API),
operators approve or reject them in the console; others' certificates and requests are 404."""

from __future__ import annotations

import re
from typing import Any

import pytest
import schemathesis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from web_support import Account, csrf, login, new_account, new_official
from werkzeug.test import TestResponse

from ca import api_tokens, store
from ca import requests as cert_requests
from ca.models import CertificateRecord, OfficialKeyRecord
from web.security import limiter

PIN_A = "246813579"
PIN_B = "135792468"
_REQUEST_NO = re.compile(r"filed=(\d+)")


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_a(kyso_app: Any) -> int:
    return new_official(kyso_app, "Nguyễn Thị Hồng Nhung", PIN_A)[0]


@pytest.fixture(scope="module")
def official_b(kyso_app: Any) -> int:
    return new_official(kyso_app, "Trần Văn Bình", PIN_B)[0]


def _client(app: Flask, account: Account) -> FlaskClient:
    limiter.reset()
    client = app.test_client()
    login(client, account)
    return client


@pytest.fixture(scope="module")
def portal_a(app: Flask, kyso_app: Any, official_a: int) -> FlaskClient:
    return _client(app, new_account(kyso_app, "official", official=official_a, prefix="req-a"))


@pytest.fixture(scope="module")
def portal_b(app: Flask, kyso_app: Any, official_b: int) -> FlaskClient:
    return _client(app, new_account(kyso_app, "official", official=official_b, prefix="req-b"))


@pytest.fixture(scope="module")
def console(app: Flask, kyso_app: Any) -> FlaskClient:
    return _client(app, new_account(kyso_app, "operator", prefix="req-op"))


@pytest.fixture(scope="module")
def spec(app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


@pytest.fixture(autouse=True)
def _no_request_left_open(kyso_app: Any) -> Any:
    """Every test starts without a pending request (each cancels or decides its own)."""
    yield
    authority = kyso_app.authority
    for r in cert_requests.list_requests(authority, statuses=["pending"]):
        cert_requests.reject(authority, r.id, "dọn dẹp sau kiểm thử", actor="test")


def _serial(kyso_app: Any, official_id: int) -> str:
    """The official's newest valid certificate."""
    with kyso_app.readers() as s:
        valid = [c for c in store.official_certificates(s, official_id) if c.status == "valid"]
    return valid[-1].serial


def _renew(client: FlaskClient, serial: str, **form: str) -> TestResponse:
    data = {"csrf_token": csrf(client, "/account"), "kind": "renewal", "key": "same"}
    data.update(form)
    return client.post(f"/portal/certificates/{serial}/renew", data=data)


def _filed_no(response: TestResponse) -> int:
    assert response.status_code == 303, response.get_data(as_text=True)[:2000]
    match = _REQUEST_NO.search(response.headers["Location"])
    assert match, response.headers["Location"]
    return int(match.group(1))


def _text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


# -- the official's side --------------------------------------------------------------------

def test_official_files_a_renewal_sees_it_and_cancels_it(kyso_app: Any, portal_a: FlaskClient,
                                                        official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    form = portal_a.get(f"/portal/certificates/{serial}/renew")
    assert form.status_code == 200
    page = _text(form)
    assert 'name="csrf_token"' in page and '<input type="password" id="pin" name="pin"' in page
    assert 'value="Nguyễn Thị Hồng Nhung"' in page and 'value="change"' in page
    assert form.headers["Cache-Control"] == "no-store"

    number = _filed_no(_renew(portal_a, serial))
    mine = portal_a.get(f"/portal/requests?filed={number}")
    assert mine.status_code == 200 and serial in _text(mine)
    assert f'/portal/requests/{number}/cancel' in _text(mine)
    again = portal_a.get(f"/portal/certificates/{serial}/renew")
    assert again.status_code == 200 and 'name="kind"' not in _text(again)  # pending notice
    assert _renew(portal_a, serial).status_code == 409  # one pending request per certificate

    cancelled = portal_a.post(f"/portal/requests/{number}/cancel",
                              data={"csrf_token": csrf(portal_a, "/account")})
    assert cancelled.status_code == 303
    assert cert_requests.get(kyso_app.authority, number).status == "cancelled"
    assert portal_a.post(f"/portal/requests/{number}/cancel",
                         data={"csrf_token": csrf(portal_a, "/account")}).status_code == 409


def test_others_certificates_and_requests_are_404(kyso_app: Any, portal_a: FlaskClient,
                                                 portal_b: FlaskClient, official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    assert portal_b.get(f"/portal/certificates/{serial}/renew").status_code == 404
    assert _renew(portal_b, serial).status_code == 404
    assert portal_b.get("/portal/certificates/abcdef123/renew").status_code == 404
    assert portal_b.get("/portal/certificates/not-a-serial/renew").status_code == 404
    number = _filed_no(_renew(portal_a, serial))
    stolen = portal_b.post(f"/portal/requests/{number}/cancel",
                           data={"csrf_token": csrf(portal_b, "/account")})
    assert stolen.status_code == 404
    theirs = _text(portal_b.get("/portal/requests"))
    assert serial not in theirs and f"/portal/requests/{number}/cancel" not in theirs
    assert portal_b.post(f"/portal/requests/{10**12}/cancel",
                         data={"csrf_token": csrf(portal_b, "/account")}).status_code == 404
    assert cert_requests.get(kyso_app.authority, number).status == "pending"


def test_bad_input_gets_the_form_again_with_a_4xx(kyso_app: Any, portal_a: FlaskClient,
                                                 official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    assert _renew(portal_a, serial, key="new").status_code == 400  # no PIN
    assert _renew(portal_a, serial, kind="other").status_code == 400
    assert _renew(portal_a, serial, kind="change", title="x" * 300).status_code == 400
    assert _renew(portal_a, serial, kind="change", name="x" * 80).status_code == 422
    unchanged = _renew(portal_a, serial, kind="change")  # nothing differs from now
    assert unchanged.status_code == 422 and 'name="kind"' in _text(unchanged)
    wrong_pin = _renew(portal_a, serial, key="new", pin="000000000")
    assert wrong_pin.status_code == 403
    no_csrf = portal_a.post(f"/portal/certificates/{serial}/renew", data={"kind": "renewal"})
    assert no_csrf.status_code == 400
    assert cert_requests.list_requests(kyso_app.authority, official_id=official_a,
                                       statuses=["pending"]) == []
    with kyso_app.sessions.begin() as s:  # the wrong PIN counted: start the next test afresh
        store.get_official(s, official_a).failed_pin_attempts = 0


# -- the operator's side --------------------------------------------------------------------

def test_operator_rejects_a_change_with_new_key(kyso_app: Any, portal_a: FlaskClient,
                                               console: FlaskClient, official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    number = _filed_no(_renew(portal_a, serial, kind="change", key="new", pin=PIN_A,
                              name="Nguyễn Thị Hồng Nhung", title="Trưởng phòng Hành chính",
                              organization="Ủy ban nhân dân phường Bến Thành", unit="",
                              locality="", email=_email(kyso_app, serial)))
    page = console.get("/console/requests")
    assert page.status_code == 200
    text = _text(page)
    assert f'id="request-{number}"' in text
    assert "Chánh Văn phòng" in text and "Trưởng phòng Hành chính" in text  # side by side
    token = csrf(console, "/console/requests")
    missing = console.post(f"/console/requests/{number}/reject", data={"csrf_token": token})
    assert missing.status_code == 400 and 'role="alert"' in _text(missing)
    too_long = console.post(f"/console/requests/{number}/reject",
                            data={"csrf_token": token, "reason": "x" * 501})
    assert too_long.status_code == 400
    done = console.post(f"/console/requests/{number}/reject",
                        data={"csrf_token": token, "reason": "Chưa có quyết định bổ nhiệm"})
    assert done.status_code == 303
    info = cert_requests.get(kyso_app.authority, number)
    assert info.status == "rejected"
    with kyso_app.readers() as s:
        key_id = s.scalars(select(OfficialKeyRecord.id).where(
            OfficialKeyRecord.official_id == official_a).order_by(
            OfficialKeyRecord.id.desc())).first()
        assert s.get(OfficialKeyRecord, key_id).status == "retired"
    assert "Chưa có quyết định bổ nhiệm" in _text(portal_a.get("/portal/requests"))
    again = console.post(f"/console/requests/{number}/reject",
                         data={"csrf_token": token, "reason": "lần hai"})
    assert again.status_code == 409


def _email(kyso_app: Any, serial: str) -> str:
    return str(kyso_app.authority.official_content(serial)["email"])


def test_operator_approves_and_sees_the_new_serial(kyso_app: Any, portal_a: FlaskClient,
                                                  console: FlaskClient,
                                                  official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    current = kyso_app.authority.official_content(serial)
    fields = {k: current[k] or "" for k in ("name", "title", "organization", "unit",
                                             "locality", "email")}
    fields["title"] = "Phó Chánh Văn phòng"
    number = _filed_no(_renew(portal_a, serial, kind="change", **fields))
    token = csrf(console, "/console/requests")
    approved = console.post(f"/console/requests/{number}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    shown = console.get(approved.headers["Location"])
    info = cert_requests.get(kyso_app.authority, number)
    assert info.status == "approved" and info.new_serial
    assert f'<code class="new-serial">{info.new_serial}</code>' in _text(shown)
    with kyso_app.readers() as s:
        old = store.get_certificate(s, serial)
        new = store.get_certificate(s, info.new_serial)
    assert old.status == "revoked" and old.revocation_reason == "superseded"
    assert new.status == "valid" and "T=Phó Chánh Văn phòng" in new.subject
    assert console.post(f"/console/requests/{number}/approve",
                        data={"csrf_token": token}).status_code == 409
    assert console.post("/console/requests/999999/approve",
                        data={"csrf_token": token}).status_code == 404
    assert console.post(f"/console/requests/{10**12}/approve",
                        data={"csrf_token": token}).status_code == 404
    assert console.post(f"/console/requests/{number}/approve").status_code == 400  # CSRF
    assert info.new_serial in _text(portal_a.get("/portal/requests"))
    revoked = portal_a.get(f"/portal/certificates/{serial}/renew")  # no form, a clear alert
    assert revoked.status_code == 200 and 'name="kind"' not in _text(revoked)
    assert 'role="alert"' in _text(revoked)
    assert _renew(portal_a, serial).status_code == 409


def test_an_interrupted_approval_is_offered_again_in_the_console(
        kyso_app: Any, portal_b: FlaskClient, console: FlaskClient, official_b: int) -> None:
    from datetime import timedelta

    serial = _serial(kyso_app, official_b)
    number = _filed_no(_renew(portal_b, serial))
    # The approving worker died with the request claimed, before its certificate was made.
    with kyso_app.sessions.begin() as s:
        rec = store.get_official_request(s, number, for_update=True)
        rec.status, rec.decided_by = "issuing", "account:req-op-gone"
        rec.decided_at = kyso_app.authority.clock()
    token = csrf(console, "/console/requests")
    page = _text(console.get("/console/requests"))
    assert f'id="request-{number}"' in page and "account:req-op-gone" not in page
    under_way = console.post(f"/console/requests/{number}/approve", data={"csrf_token": token})
    assert under_way.status_code == 409
    assert "Yêu cầu này đang được phê duyệt" in _text(under_way)
    with kyso_app.sessions.begin() as s:
        rec = store.get_official_request(s, number, for_update=True)
        rec.decided_at -= cert_requests.STALE_CLAIM + timedelta(minutes=1)
    page = _text(console.get("/console/requests"))
    section = page[page.index(f'id="request-{number}"'):]
    assert 'class="notice interrupted"' in section and "account:req-op-gone" in section
    approved = console.post(f"/console/requests/{number}/approve", data={"csrf_token": token})
    assert approved.status_code == 303
    info = cert_requests.get(kyso_app.authority, number)
    assert info.status == "approved" and info.new_serial
    assert info.new_serial in _text(console.get(approved.headers["Location"]))
    with kyso_app.readers() as s:
        assert store.get_certificate(s, serial).status == "revoked"


def test_operator_files_for_an_official(kyso_app: Any, console: FlaskClient,
                                        official_b: int) -> None:
    serial = _serial(kyso_app, official_b)
    assert console.get("/console/requests/new").status_code == 200
    form = console.get(f"/console/requests/new?serial={serial}")
    assert form.status_code == 200 and 'name="pin"' not in _text(form)
    assert console.get("/console/requests/new?serial=abc999").status_code == 404
    token = csrf(console, "/console/requests")
    filed = console.post(f"/console/requests/new?serial={serial}",  # only the field sent
                         data={"csrf_token": token, "kind": "change", "key": "new",
                               "locality": "Thành phố Thủ Đức"})
    number = _filed_no(filed)
    info = cert_requests.get(kyso_app.authority, number)
    assert info.filed_via == "operator" and info.key_choice == "same"  # never a new key here
    assert info.kind == "change" and info.content["locality"] == "Thành phố Thủ Đức"
    assert info.content["name"] == "Trần Văn Bình"  # fields not sent are kept
    assert console.post("/console/requests/new", data={"csrf_token": token}).status_code == 400


def test_roles_are_enforced(app: Flask, kyso_app: Any, portal_a: FlaskClient,
                            console: FlaskClient, official_a: int) -> None:
    serial = _serial(kyso_app, official_a)
    assert portal_a.get("/console/requests").status_code == 403
    assert portal_a.get(f"/console/requests/new?serial={serial}").status_code == 403
    assert console.get("/portal/requests").status_code == 403
    assert console.get(f"/portal/certificates/{serial}/renew").status_code == 403
    anonymous = app.test_client()
    assert anonymous.get("/console/requests").status_code == 302
    assert anonymous.post("/console/requests/1/approve").status_code in (400, 401)


# -- the JSON API ---------------------------------------------------------------------------

def _token(kyso_app: Any, official_id: int, scopes: tuple[str, ...] = ("sign",)) -> str:
    account = new_account(kyso_app, "official", official=official_id, prefix="req-api")
    with kyso_app.sessions.begin() as s:
        return api_tokens.create(s, account.id, name="test", scopes=scopes)[1]


def _post(client: FlaskClient, token: str | None, body: Any, **kw: Any) -> TestResponse:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post("/api/v1/certificate-requests", json=body, headers=headers, **kw)


def _conforms(spec: Any, method: str, path: str, response: TestResponse) -> Any:
    operation = spec[path][method]
    assert str(response.status_code) in operation.definition.raw["responses"], (
        response.status_code, response.data)
    operation.validate_response(response)
    return response.get_json()


def test_api_files_and_follows_a_request(kyso_app: Any, client: FlaskClient, spec: Any,
                                        official_a: int, official_b: int) -> None:
    serial = _serial(kyso_app, official_a)
    token_a, token_b = _token(kyso_app, official_a), _token(kyso_app, official_b)
    post = "/certificate-requests"
    made = _post(client, token_a, {"kind": "change", "serial": serial.upper(),
                                   "changes": {"locality": "Thành phố Thủ Đức"}})
    assert made.status_code == 201, made.data
    body = _conforms(spec, "POST", post, made)
    assert body["status"] == "pending" and body["serial"] == serial
    assert body["filed_via"] == "api" and body["content"]["locality"] == "Thành phố Thủ Đức"
    location = made.headers["Location"]
    assert location.endswith(f"/api/v1/certificate-requests/{body['id']}")
    got = client.get(location, headers={"Authorization": f"Bearer {token_a}"})
    assert _conforms(spec, "GET", "/certificate-requests/{request_no}", got)["id"] == body["id"]

    def error(response: TestResponse, status: int, code: str, path: str = post,
              method: str = "POST") -> None:
        assert response.status_code == status, response.data
        assert _conforms(spec, method, path, response)["error"]["code"] == code

    one = "/certificate-requests/{request_no}"
    error(client.get(location, headers={"Authorization": f"Bearer {token_b}"}), 404,
          "not_found", one, "GET")
    error(client.get(location), 401, "invalid_token", one, "GET")
    error(client.get("/api/v1/certificate-requests/99999999",
                     headers={"Authorization": f"Bearer {token_a}"}), 404, "not_found", one,
          "GET")
    error(_post(client, token_a, {"kind": "renewal", "serial": serial}), 409,
          "request_pending")
    error(_post(client, token_b, {"kind": "renewal", "serial": serial}), 404, "not_found")
    error(_post(client, None, {"kind": "renewal", "serial": serial}), 401, "invalid_token")
    error(_post(client, _token(kyso_app, official_a, ("read",)),
                {"kind": "renewal", "serial": serial}), 403, "token_scope")
    error(_post(client, token_a, {"kind": "renewal", "serial": serial, "key": "new"}), 400,
          "key_not_supported")
    error(_post(client, token_a, {"kind": "rekey", "serial": serial}), 400, "invalid_kind")
    error(_post(client, token_a, {"kind": "renewal", "serial": "xyz"}), 400, "invalid_serial")
    error(_post(client, token_a, {"kind": "renewal", "serial": serial, "pin": "1"}), 400,
          "unknown_field")
    error(_post(client, token_a, {"kind": "change", "serial": serial}), 400, "invalid_changes")
    error(_post(client, token_a, ["renewal"]), 400, "invalid_json")
    error(client.post("/api/v1/certificate-requests", data="kind=renewal",
                      headers={"Authorization": f"Bearer {token_a}"},
                      content_type="application/x-www-form-urlencoded"), 415,
          "unsupported_media_type")

    cert_requests.cancel(kyso_app.authority, body["id"], official_id=official_a, actor="test")
    error(_post(client, token_a, {"kind": "change", "serial": serial,
                                  "changes": {"name": "N" * 70}}), 422, "subject_rejected")
    error(_post(client, token_a, {"kind": "change", "serial": serial,
                                  "changes": {"email": "không phải thư"}}), 422,
          "invalid_request")
    with kyso_app.readers() as s:
        assert s.scalars(select(CertificateRecord).where(
            CertificateRecord.serial == serial)).one().status == "valid"
