"""The operators' console (/console): search, certificate detail, revoke / hold / release,
registering an official (their own PIN, a one-time password and TOTP enrolment), CRL and OCSP
status, and who may use it."""

from __future__ import annotations

import html
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pyotp
import pytest
from cryptography import x509
from flask.testing import FlaskClient
from sqlalchemy import select, update
from web_support import Account, csrf, login, new_account, new_official

from ca import store
from ca.models import AccountRecord, AuditEventRecord, CertificateRecord, OfficialRecord

TAG = secrets.token_hex(3)
PIN = "hoa-sen-2468"
NEW_PIN = "sông-Hồng-97531"
_STATUS = re.compile(r'id="cert-status"[^>]*data-status="([a-z]+)"')
_SERIALS = re.compile(r'<tr data-serial="([0-9a-f]+)"')


@dataclass(frozen=True)
class Data:
    revoke_serial: str  # valid; revoked by test_revoke
    hold_serial: str  # valid; held and released by test_hold_and_release
    soon_serial: str  # valid for 10 days
    expired_serial: str  # notAfter moved into the past
    soon_official: int
    org: str


@pytest.fixture(scope="module")
def data(kyso_app: Any) -> Data:
    org = f"Ủy ban nhân dân phường Thử Nghiệm {TAG}"
    _, revoke_serial = new_official(kyso_app, f"Nguyễn Văn Kiểm {TAG}", PIN, organization=org)
    _, hold_serial = new_official(kyso_app, f"Trần Thị Tạm {TAG}", PIN, organization=org)
    soon = kyso_app.authority.add_official(
        pin=PIN, name=f"Lê Văn Sớm {TAG}", organization=f"Sở Tư pháp {TAG}",
        email=f"som-{TAG}@tuphap.hochiminhcity.gov.vn", ca_name="issuing", validity_days=10)
    _, expired_serial = new_official(kyso_app, f"Phạm Hết Hạn {TAG}", PIN,
                                     organization=f"Sở Tư pháp {TAG}")
    now = datetime.now(UTC)
    with kyso_app.sessions.begin() as s:
        s.execute(update(CertificateRecord).where(CertificateRecord.serial == expired_serial)
                  .values(not_before=now - timedelta(days=40), not_after=now - timedelta(days=1)))
    return Data(revoke_serial, hold_serial, soon.certificate.serial, expired_serial,
                soon.official_id, org)


def _english(client: FlaskClient) -> FlaskClient:
    client.set_cookie("lang", "en")
    return client


@pytest.fixture(scope="module")
def operator(kyso_app: Any, app: Any) -> tuple[FlaskClient, Account]:
    """One operator logged in for the module (a TOTP code is accepted only once, and each
    login costs an argon2 hash: the module logs in as few times as it can)."""
    from web.security import limiter

    limiter.reset()
    client = app.test_client()
    account = new_account(kyso_app, "operator", prefix="opr")
    login(client, account)
    return _english(client), account


def _page(client: FlaskClient, path: str, status: int = 200) -> str:
    got = client.get(path)
    assert got.status_code == status, (path, got.status_code, got.get_data(as_text=True)[:800])
    return got.get_data(as_text=True)


def _serials(page: str) -> list[str]:
    return _SERIALS.findall(page)


def _status(page: str) -> str:
    match = _STATUS.search(page)
    assert match, page[:800]
    return match.group(1)


def _post(client: FlaskClient, serial: str, action: str, **form: str) -> Any:
    token = csrf(client, f"/console/certificates/{serial}")
    return client.post(f"/console/certificates/{serial}/{action}",
                       data={"csrf_token": token, **form})


def _audit(kyso_app: Any, action: str, obj: str) -> list[AuditEventRecord]:
    with kyso_app.readers() as s:
        rows = s.scalars(select(AuditEventRecord).where(AuditEventRecord.action == action,
                                                        AuditEventRecord.object == obj)).all()
        s.expunge_all()
        return list(rows)


# -- who may use it -----------------------------------------------------------------------------

def test_anonymous_official_and_auditor_are_refused(kyso_app: Any, app: Any, data: Data) -> None:
    anonymous = app.test_client()
    got = anonymous.get("/console/certificates")
    assert got.status_code == 302 and "/login" in got.headers["Location"]
    assert anonymous.post(f"/console/certificates/{data.hold_serial}/hold").status_code in (
        400, 401)  # no CSRF token / no login: refused either way
    for role in ("official", "auditor"):
        official_id = data.soon_official if role == "official" else None
        client = app.test_client()
        login(client, new_account(kyso_app, role, official=official_id))
        for path in ("/console/", "/console/certificates", "/console/officials",
                     "/console/officials/new", "/console/status",
                     f"/console/certificates/{data.hold_serial}"):
            assert client.get(path).status_code == 403, (role, path)
        token = csrf(client, "/account")
        got = client.post(f"/console/certificates/{data.hold_serial}/revoke",
                          data={"csrf_token": token, "reason": "keyCompromise",
                                "confirm": "yes"})
        assert got.status_code == 403
    assert kyso_app.authority.certificate(data.hold_serial).status == "valid"


# -- dashboard and search -----------------------------------------------------------------------

def test_index_counts_and_links(kyso_app: Any, operator: tuple[FlaskClient, Account],
                                data: Data) -> None:
    client, _ = operator
    page = _page(client, "/console/")
    now = datetime.now(UTC)
    with kyso_app.readers() as s:
        counts = store.certificate_counts(s, now=now, soon=now + timedelta(days=30))
    for name in ("valid", "hold", "revoked", "expiring", "expired"):
        shown = re.search(rf'id="count-{name}">(\d+)<', page)
        assert shown, name
        assert int(shown.group(1)) == getattr(counts, name), name
    assert int(re.search(r'id="count-expiring">(\d+)<', page).group(1)) >= 1  # type: ignore[union-attr]
    for target in ("/console/certificates", "/console/officials", "/console/officials/new",
                   "/console/status", "expiring_days=30"):
        assert target in page
    # The requests page is linked only once the requests blueprint has a console view.
    has_requests = any(e.startswith("requests.console") for e in client.application.view_functions)
    assert ('id="requests-link"' in page) == has_requests


def test_search_by_serial_prefix_name_organization(operator: tuple[FlaskClient, Account],
                                                    data: Data) -> None:
    client, _ = operator
    prefix = data.revoke_serial[:10]
    assert data.revoke_serial in _serials(_page(client, f"/console/certificates?q={prefix}"))
    upper = ":".join(re.findall("..", data.revoke_serial[:10].upper()))
    assert data.revoke_serial in _serials(_page(client, f"/console/certificates?q={upper}"))
    # Names and organizations in another case, Vietnamese letters included.
    by_name = _serials(_page(client, f"/console/certificates?q=nguyễn văn kiểm {TAG}"))
    assert by_name == [data.revoke_serial]
    by_upper = _serials(_page(client, f"/console/certificates?q=NGUYỄN VĂN KIỂM {TAG.upper()}"))
    assert by_upper == [data.revoke_serial]
    by_org = _serials(_page(client, f"/console/certificates?organization=ủy ban nhân dân "
                                    f"phường thử nghiệm {TAG}"))
    assert sorted(by_org) == sorted([data.revoke_serial, data.hold_serial])
    # Typed without tones (a keyboard without Telex, a name read over the phone), mixed case.
    assert _serials(_page(client, f"/console/certificates?q=nguyen VAN kiem {TAG}")) == [
        data.revoke_serial]
    assert sorted(_serials(_page(client, "/console/certificates?organization=UY BAN nhan dan "
                                         f"phuong thu nghiem {TAG}"))) == sorted(
        [data.revoke_serial, data.hold_serial])
    assert _serials(_page(client, f"/console/certificates?q=nguyen van kiem_ {TAG}")) == []
    page = _page(client, f"/console/certificates?q={data.hold_serial}")
    assert f'<a class="cert-link" href="/console/certificates/{data.hold_serial}">' in page
    assert _serials(_page(client, f"/console/certificates?q=zzz-{TAG}-none")) == []


def test_search_by_status_and_expiry_sorted(operator: tuple[FlaskClient, Account],
                                            data: Data) -> None:
    client, _ = operator
    org = f"Sở Tư pháp {TAG}"
    assert _serials(_page(client, f"/console/certificates?organization={org}")) == [
        data.expired_serial, data.soon_serial]  # soonest expiry first
    assert _serials(_page(client, f"/console/certificates?organization={org}&status=expired")
                    ) == [data.expired_serial]
    assert _serials(_page(client, f"/console/certificates?organization={org}&status=valid")
                    ) == [data.soon_serial]
    soon = _serials(_page(client, "/console/certificates?expiring_days=30&status=valid"))
    assert data.soon_serial in soon and data.revoke_serial not in soon
    assert data.expired_serial not in soon
    # An official's certificates (the link from the officials list).
    page = _page(client, f"/console/certificates?official={data.soon_official}")
    assert _serials(page) == [data.soon_serial]


def test_pagination_keeps_the_filters(operator: tuple[FlaskClient, Account], data: Data,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from web import console

    client, _ = operator
    monkeypatch.setattr(console, "PAGE_SIZE", 1)
    first = _page(client, f"/console/certificates?organization=Sở Tư pháp {TAG}")
    assert _serials(first) == [data.expired_serial] and "Page 1 of 2" in first
    link = re.search(r'rel="next" href="([^"]+)"', first)
    assert link and "organization=" in link.group(1)
    second = _page(client, html.unescape(link.group(1)))
    assert _serials(second) == [data.soon_serial] and 'rel="prev"' in second


@pytest.mark.parametrize("query", [
    "status=bogus", "expiring_days=abc", "expiring_days=0", "expiring_days=99999",
    "page=0", "page=-1", "page=²", "page=" + "9" * 5000, "official=x", "official=999999999",
    "q=" + "a" * 300, "organization=" + "b" * 300, "q=a%00b", "organization=%01",
])
def test_bad_filters_are_400_with_a_message(operator: tuple[FlaskClient, Account],
                                            query: str) -> None:
    client, _ = operator
    page = _page(client, f"/console/certificates?{query}", 400)
    assert 'class="error"' in page and "<tr data-serial" not in page


def test_page_beyond_the_end_is_empty_not_an_error(operator: tuple[FlaskClient, Account],
                                                   data: Data) -> None:
    client, _ = operator
    page = _page(client, f"/console/certificates?q={data.hold_serial}&page=5")
    assert _serials(page) == []


# -- the certificate page -----------------------------------------------------------------------

def test_detail_page_pem_and_unknown_serials(operator: tuple[FlaskClient, Account],
                                             data: Data) -> None:
    client, _ = operator
    page = _page(client, f"/console/certificates/{data.soon_serial}")
    assert _status(page) == "valid"
    assert f"Lê Văn Sớm {TAG}" in page and "Sở Tư pháp" in page
    assert re.search(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2}", page)  # Vietnam time, seconds
    for form in ('id="revoke-form"', 'id="hold-form"', 'id="reason" name="reason"',
                 'id="revoke-confirm" name="confirm"', 'id="revoke-submit"', 'id="hold-submit"',
                 'name="csrf_token"'):
        assert form in page
    assert 'id="release-form"' not in page
    for reason in ("keyCompromise", "affiliationChanged", "superseded", "cessationOfOperation",
                   "privilegeWithdrawn", "unspecified"):
        assert f'value="{reason}"' in page
    assert 'value="certificateHold"' not in page
    pem = client.get(f"/console/certificates/{data.soon_serial}/pem")
    assert pem.status_code == 200
    cert = x509.load_pem_x509_certificate(pem.data)
    assert format(cert.serial_number, "x") == data.soon_serial
    assert _status(_page(client, f"/console/certificates/{data.expired_serial}")) == "expired"
    # Upper case and colons reach the same certificate.
    assert _status(_page(client, f"/console/certificates/{data.soon_serial.upper()}")) == "valid"
    _page(client, "/console/certificates/abcdef0123456789abcdef", 404)
    _page(client, "/console/certificates/not-a-serial", 404)
    _page(client, "/console/certificates/" + "a" * 500, 404)
    _page(client, "/console/certificates/abcdef0123456789abcdef/pem", 404)
    assert client.get(f"/console/certificates/{data.soon_serial}/revoke").status_code == 405
    assert client.delete(f"/console/certificates/{data.soon_serial}").status_code == 405


def test_revoke_needs_reason_confirmation_and_sane_date(operator: tuple[FlaskClient, Account],
                                                        kyso_app: Any, data: Data) -> None:
    client, _ = operator
    serial = data.soon_serial
    cases = [({"reason": "keyCompromise"}, "confirm"),
             ({"reason": "certificateHold", "confirm": "yes"}, "reason"),
             ({"reason": "bogus", "confirm": "yes"}, "reason"),
             ({"reason": "superseded", "confirm": "yes", "invalidity_date": "31/12/2025"},
              "date"),
             ({"reason": "superseded", "confirm": "yes",
               "invalidity_date": (datetime.now(UTC) + timedelta(days=2)).strftime(
                   "%Y-%m-%dT%H:%M")}, "future")]
    for form, _why in cases:
        got = _post(client, serial, "revoke", **form)
        page = got.get_data(as_text=True)
        assert got.status_code == 400, (form, got.status_code)
        assert '<p class="error" role="alert">' in page and _status(page) == "valid"
    assert kyso_app.authority.certificate(serial).status == "valid"
    # No CSRF token: refused too.
    got = client.post(f"/console/certificates/{serial}/revoke",
                      data={"reason": "keyCompromise", "confirm": "yes"})
    assert got.status_code == 400
    assert kyso_app.authority.certificate(serial).status == "valid"


def test_revoke_shows_revoked_and_reaches_crl_ocsp_and_audit(
        operator: tuple[FlaskClient, Account], kyso_app: Any, data: Data) -> None:
    client, account = operator
    serial = data.revoke_serial
    when = (datetime.now(UTC) - timedelta(days=1)).astimezone(
        ZoneInfo("Asia/Ho_Chi_Minh")).strftime("%Y-%m-%dT%H:%M")
    got = _post(client, serial, "revoke", reason="keyCompromise", confirm="on",
                invalidity_date=when)
    assert got.status_code == 303
    assert got.headers["Location"].startswith(f"/console/certificates/{serial}?done=revoked")
    page = _page(client, got.headers["Location"])
    assert _status(page) == "revoked"
    assert 'id="done"' in page and 'data-reason="keyCompromise"' in page
    assert 'id="revoke-form"' not in page and 'id="hold-form"' not in page
    record = kyso_app.authority.certificate(serial)
    assert record.status == "revoked" and record.revocation_reason == "keyCompromise"
    assert record.invalidity_date is not None
    assert abs(record.invalidity_date - (datetime.now(UTC) - timedelta(days=1))) < timedelta(
        minutes=2)  # typed in Vietnam time, stored in UTC
    entries = _audit(kyso_app, "certificate.revoke", f"cert:{serial}")
    assert [e.actor for e in entries] == [f"web:{account.username}"]
    # OCSP: the status change is in the responders' feed; the status read is revoked.
    ca_id = record.ca_id
    with kyso_app.engine.connect() as conn:
        assert [c for c in store.ocsp_changes_since(conn, 0, 100000) if c[2] == serial]
        statuses = store.ocsp_statuses(conn, ca_id, [serial])
    assert statuses[0][1] == "revoked" and statuses[0][3] == "keyCompromise"
    # CRL: the next one lists it with its reason; the status page shows that CRL's number.
    full = next(c for c in kyso_app.crls.generate("issuing", actor="test") if c.kind == "full")
    crl = x509.load_der_x509_crl(full.der)
    entry = crl.get_revoked_certificate_by_serial_number(int(serial, 16))
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == (
        x509.ReasonFlags.key_compromise)
    status = _page(client, "/console/status")
    section = status.split('data-ca="issuing"', 1)[1].split("</section>", 1)[0]
    assert f'<span class="crl-number">{full.number}</span>' in section
    # Listed as revoked.
    assert serial in _serials(_page(client, f"/console/certificates?q={serial}&status=revoked"))
    # A second revocation: 409 with a message, the page still says revoked.
    again = _post(client, serial, "revoke", reason="superseded", confirm="on")
    page = again.get_data(as_text=True)
    assert again.status_code == 409
    assert '<p class="error" role="alert">' in page and "already revoked" in page
    assert _status(page) == "revoked"
    assert kyso_app.authority.certificate(serial).revocation_reason == "keyCompromise"
    # Hold and release of a revoked certificate: 409 too.
    assert _post(client, serial, "hold").status_code == 409
    assert _post(client, serial, "release").status_code == 409


def test_hold_and_release(operator: tuple[FlaskClient, Account], kyso_app: Any,
                          data: Data) -> None:
    client, account = operator
    serial = data.hold_serial
    got = _post(client, serial, "hold")
    assert got.status_code == 303
    page = _page(client, got.headers["Location"])
    assert _status(page) == "hold" and 'id="release-form"' in page and 'id="hold-form"' not in page
    assert 'data-reason="certificateHold"' in page
    assert kyso_app.authority.certificate(serial).status == "hold"
    again = _post(client, serial, "hold")
    assert again.status_code == 409 and '<p class="error" role="alert">' in again.get_data(
        as_text=True)
    assert serial in _serials(_page(client, f"/console/certificates?q={serial}&status=hold"))
    got = _post(client, serial, "release")
    assert got.status_code == 303
    assert _status(_page(client, got.headers["Location"])) == "valid"
    assert kyso_app.authority.certificate(serial).status == "valid"
    again = _post(client, serial, "release")
    assert again.status_code == 409 and _status(again.get_data(as_text=True)) == "valid"
    actor = f"web:{account.username}"
    assert [e.actor for e in _audit(kyso_app, "certificate.hold", f"cert:{serial}")] == [actor]
    assert [e.actor for e in _audit(kyso_app, "certificate.release", f"cert:{serial}")] == [
        actor]


# -- officials ----------------------------------------------------------------------------------

def test_officials_list_and_search(operator: tuple[FlaskClient, Account], data: Data) -> None:
    client, _ = operator
    page = _page(client, f"/console/officials?q=lê văn sớm {TAG}")
    assert f'data-official="{data.soon_official}"' in page
    assert f"/console/certificates?official={data.soon_official}" in page
    page = _page(client, f"/console/officials?organization={data.org.lower()}")
    assert page.count("data-official=") == 2
    page = _page(client, f"/console/officials?q=LE VAN SOM {TAG}")
    assert f'data-official="{data.soon_official}"' in page
    page = _page(client, f"/console/officials?organization=so tu phap {TAG}")
    assert page.count("data-official=") == 2  # Lê Văn Sớm and Phạm Hết Hạn
    _page(client, "/console/officials?q=" + "x" * 300, 400)
    _page(client, "/console/officials?page=abc", 400)
    _page(client, "/console/officials?q=%00", 400)


def _new_official_form(username: str, change: dict[str, str] | None = None) -> (
    dict[str, str]
):
    return {"name": f"Võ Thị Mới {TAG}", "title": "Phó Chủ tịch",
            "organization": f"Ủy ban nhân dân phường Mới {TAG}", "unit": "Văn phòng",
            "locality": "Quận 1", "email": f"moi-{TAG}@q1.hochiminhcity.gov.vn",
            "username": username, "ca": "issuing", "pin": NEW_PIN, "pin_confirm": NEW_PIN,
            **(change or {})}


def _count_officials(kyso_app: Any) -> int:
    with kyso_app.readers() as s:
        return len(s.scalars(select(OfficialRecord.id)).all())


def test_new_official_form_refusals_create_nothing(operator: tuple[FlaskClient, Account],
                                                   kyso_app: Any) -> None:
    client, account = operator
    page = _page(client, "/console/officials/new")
    assert "the official types their own PIN" in page
    assert 'name="pin"' in page and 'name="pin_confirm"' in page and 'name="csrf_token"' in page
    before = _count_officials(kyso_app)
    username = f"moi-{TAG}-x"
    refusals = [
        {"pin_confirm": NEW_PIN + "x"},  # PINs differ
        {"pin": "12345", "pin_confirm": "12345"},  # too short
        {"pin": "aaaaaaaa", "pin_confirm": "aaaaaaaa"},  # one character
        {"username": account.username},  # taken
        {"username": "two words"},
        {"name": ""},
        {"email": "not-an-address"},
        {"ca": "root"},
        {"name": "N" * 300},
        {"unit": "Văn\x00phòng"},
    ]
    for change in refusals:
        token = csrf(client, "/console/officials/new")
        got = client.post("/console/officials/new",
                          data={"csrf_token": token, **_new_official_form(username, change)})
        text = got.get_data(as_text=True)
        assert got.status_code == 400, (change, got.status_code, text[:500])
        assert '<p class="error" role="alert">' in text
        # The PIN is never sent back: its fields come back empty.
        assert NEW_PIN not in text and re.search(r'name="pin(_confirm)?"[^>]*value=', text) is None
    assert _count_officials(kyso_app) == before
    with kyso_app.readers() as s:
        assert s.scalars(select(AccountRecord).where(AccountRecord.username == username)
                         ).first() is None


def test_new_official_gets_account_once_and_pin_stays_secret(
        operator: tuple[FlaskClient, Account], kyso_app: Any, app: Any) -> None:
    client, account = operator
    username = f"moi-{TAG}"
    token = csrf(client, "/console/officials/new")
    got = client.post("/console/officials/new",
                      data={"csrf_token": token, **_new_official_form(username)})
    page = got.get_data(as_text=True)
    assert got.status_code == 201, page[:1500]
    assert "no-store" in got.headers["Cache-Control"]
    assert NEW_PIN not in page
    password = html.unescape(re.search(r'id="initial-password">([^<]+)<', page).group(1))  # type: ignore[union-attr]
    uri = html.unescape(re.search(r'id="totp-uri">([^<]+)<', page).group(1))  # type: ignore[union-attr]
    official_id = int(re.search(r'data-official="(\d+)"', page).group(1))  # type: ignore[union-attr]
    serial = re.search(r'class="cert-link" href="/console/certificates/([0-9a-f]+)"',
                       page).group(1)  # type: ignore[union-attr]
    assert len(password) >= 12 and uri.startswith("otpauth://totp/")
    # The account: role official, linked to the new official; the certificate is theirs.
    with kyso_app.readers() as s:
        row = s.scalars(select(AccountRecord).where(AccountRecord.username == username)).one()
        assert row.roles == "official" and row.official_id == official_id
        official = store.get_official(s, official_id)
        assert official.name == f"Võ Thị Mới {TAG}" and official.title == "Phó Chủ tịch"
        cert = store.get_certificate(s, serial)
        assert cert.official_id == official_id and cert.status == "valid"
    # Created by the operator, as the audit log says; the PIN appears nowhere in it.
    actor = f"web:{account.username}"
    assert [e.actor for e in _audit(kyso_app, "official.create", f"official:{official_id}")
            ] == [actor]
    assert [e.actor for e in _audit(kyso_app, "account.create", f"account:{username}")
            ] == [actor]
    with kyso_app.readers() as s:
        for entry in s.scalars(select(AuditEventRecord)).all():
            assert NEW_PIN not in (entry.details or "") and NEW_PIN not in entry.object
            assert password not in (entry.details or "")
    # The official logs in with the password shown and a code from the enrolled secret.
    official_client = app.test_client()
    first = official_client.post("/login", data={
        "csrf_token": csrf(official_client, "/login"), "username": username,
        "password": password})
    assert first.status_code == 302
    done = official_client.post("/login/totp", data={
        "csrf_token": csrf(official_client, "/login/totp"),
        "code": pyotp.parse_uri(uri).now()})  # type: ignore[union-attr]
    assert done.status_code == 302
    assert official_client.get("/account").status_code == 200
    assert official_client.get("/console/").status_code == 403
    # The operator cannot sign as them: the key opens only with the official's PIN.
    with kyso_app.authority.official_signing_key(official_id, NEW_PIN, actor="test") as key:
        assert key is not None
    # The same username again: refused before anything is made.
    before = _count_officials(kyso_app)
    token = csrf(client, "/console/officials/new")
    again = client.post("/console/officials/new",
                        data={"csrf_token": token, **_new_official_form(username)})
    assert again.status_code == 400 and _count_officials(kyso_app) == before


# -- CRL and OCSP status ------------------------------------------------------------------------

def test_status_page_per_ca(operator: tuple[FlaskClient, Account], kyso_app: Any) -> None:
    from ocsp.refresh import Policy, refresh_all

    client, _ = operator
    refresh_all(kyso_app.authority, Policy.from_settings(kyso_app.settings.ocsp), datetime.now(UTC),
                actor="test")
    kyso_app.crls.generate("issuing", actor="test")
    page = _page(client, "/console/status")
    for name in ("root", "issuing", "issuing-rsa"):
        assert f'data-ca="{name}"' in page
    section = page.split('data-ca="issuing"', 1)[1].split("</section>", 1)[0]
    full = kyso_app.crls.current("issuing", "full")
    assert f'<span class="crl-number">{full.number}</span>' in section
    assert 'class="responder-serial"' in section
    count = int(re.search(r'class="ocsp-count">(\d+)<', section).group(1))  # type: ignore[union-attr]
    with kyso_app.readers() as s:
        ca_id = store.get_ca(s, "issuing").id
        assert count == store.ocsp_response_stats(s, ca_id, datetime.now(UTC)).count > 0

