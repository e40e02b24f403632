"""The officials' portal (/portal): their own certificates and chains, uploading PDFs, placing a
visible signature on the preview, signing a batch with one PIN, and downloading the results."""

from __future__ import annotations

import io
import json
import re
import time
import zipfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Flask
from flask.testing import FlaskClient
from pdf_samples import make_pdf
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from pypdf import PdfReader, PdfWriter
from web_support import Account, app_over, csrf, login, new_account, new_official
from werkzeug.test import TestResponse

from ca import audit, store
from ca.models import AccountRecord
from web import portal

PIN_A = "246813579"
PIN_B = "135792468"
PIN_C = "975318642"
PDF = make_pdf(1)
PDF_2 = make_pdf(2)
_BATCH = re.compile(r"/portal/sign/([A-Za-z0-9_-]{24})$")


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def official_a(kyso_app: Any) -> tuple[int, str]:
    return new_official(kyso_app, "Nguyễn Thị Hồng Nhung", PIN_A)


@pytest.fixture(scope="module")
def official_b(kyso_app: Any) -> tuple[int, str]:
    return new_official(kyso_app, "Trần Văn Bình", PIN_B)


@pytest.fixture
def as_a(client: FlaskClient, kyso_app: Any,
         official_a: tuple[int, str]) -> tuple[FlaskClient, Account]:
    """A client logged in as a fresh official account linked to official A."""
    account = new_account(kyso_app, "official", official=official_a[0], prefix="portal")
    login(client, account)
    return client, account


def _work(kyso_app: Any, account: Account) -> Path:
    return Path(kyso_app.settings.data_dir) / "web-work" / str(account.id)


def _upload(client: FlaskClient, *files: tuple[bytes, str], **kw: Any) -> TestResponse:
    token = csrf(client, "/portal/sign")
    return client.post("/portal/sign", data={
        "csrf_token": token, "pdf": [(io.BytesIO(data), name) for data, name in files]},
        content_type="multipart/form-data", **kw)


def _batch(client: FlaskClient, *files: tuple[bytes, str]) -> str:
    got = _upload(client, *files)
    assert got.status_code == 303, got.get_data(as_text=True)[:2000]
    match = _BATCH.search(got.headers["Location"])
    assert match, got.headers["Location"]
    return match.group(1)


def _sign(client: FlaskClient, batch_id: str, pin: str = PIN_A, **fields: str) -> TestResponse:
    form = {"mode": "invisible", "kind": "personal", "level": "B-B", "page": "1",
            "x": "300", "y": "100", "w": "200", "h": "80", "pin": pin}
    form.update(fields)
    form = {k: v for k, v in form.items() if v is not None}
    form["csrf_token"] = csrf(client, f"/portal/sign/{batch_id}")
    headers = {"Accept": "application/json"} if fields.pop("json", None) else {}
    return client.post(f"/portal/sign/{batch_id}", data=form, headers=headers)


def _links(html: str, css_class: str) -> list[str]:
    return re.findall(rf'<a class="{css_class}" href="([^"]+)"', html)


def _root(kyso_app: Any) -> x509.Certificate:
    return kyso_app.authority.chain("issuing")[-1]  # type: ignore[no-any-return]


def _check_signed(pdf: bytes, kyso_app: Any, serial: str) -> Any:
    """The one signature of `pdf`, checked valid and trusted, by `serial`; its field."""
    anchor = asn1_x509.Certificate.load(
        _root(kyso_app).public_bytes(serialization.Encoding.DER))
    reader = PdfFileReader(io.BytesIO(pdf))
    assert len(reader.embedded_signatures) == 1
    sig = reader.embedded_signatures[0]
    status = validate_pdf_signature(sig, ValidationContext(trust_roots=[anchor]))
    assert status.intact and status.valid and status.trusted
    assert format(sig.signer_cert.serial_number, "x") == serial
    return sig.sig_field


def _rect(field: Any) -> list[float]:
    widget = field if "/Rect" in field else field["/Kids"][0].get_object()
    return [float(v) for v in widget["/Rect"]]


def _encrypted(data: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="mat-khau", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- who may enter --------------------------------------------------------------------------

def test_anonymous_is_sent_to_the_login(client: FlaskClient) -> None:
    for path in ("/portal/", "/portal/sign", "/portal/sign/" + "a" * 24,
                 "/portal/certificates/1a/chain.pem"):
        got = client.get(path)
        assert got.status_code == 302 and "/login" in got.headers["Location"], path


def test_other_roles_are_refused(client: FlaskClient, kyso_app: Any) -> None:
    login(client, new_account(kyso_app, "operator", "auditor"))
    for path in ("/portal/", "/portal/sign"):
        assert client.get(path).status_code == 403


def test_an_account_without_official_is_told_so(client: FlaskClient, kyso_app: Any,
                                                official_b: tuple[int, str]) -> None:
    account = new_account(kyso_app, "official", official=official_b[0])
    with kyso_app.sessions.begin() as s:  # unlinked later (accounts demand one at creation)
        s.get(AccountRecord, account.id).official_id = None  # type: ignore[union-attr]
    login(client, account)
    for path in ("/portal/", "/portal/sign"):
        got = client.get(path + "?lang=en")
        assert got.status_code == 403
        assert 'id="not-linked"' in got.get_data(as_text=True)
        assert "not linked to an official" in got.get_data(as_text=True)


# -- my certificates ------------------------------------------------------------------------

def test_my_certificates_shows_only_my_own(as_a: tuple[FlaskClient, Account], app: Flask,
                                           official_a: tuple[int, str],
                                           official_b: tuple[int, str]) -> None:
    client, _ = as_a
    got = client.get("/portal/?lang=en")
    assert got.status_code == 200 and got.headers["Cache-Control"] == "no-store"
    html = got.get_data(as_text=True)
    assert f'data-serial="{official_a[1]}"' in html
    assert official_b[1] not in html
    assert "Nguyễn Thị Hồng Nhung" in html and "Ủy ban nhân dân phường Bến Thành" in html
    assert "Valid" in html and re.search(r"\b\d{2}/\d{2}/\d{4}\b", html)
    assert f"/portal/certificates/{official_a[1]}/chain.pem" in html
    renew = "requests.renew_form" in app.view_functions
    assert ('class="renew"' in html) == renew


def test_status_expiry_warning_and_expired(app: Flask, kyso_app: Any,
                                           official_a: tuple[int, str]) -> None:
    with kyso_app.readers() as s:
        record = store.get_certificate(s, official_a[1])
    with app.test_request_context("/portal/?lang=en"):
        soon_at = record.not_after - timedelta(days=10, hours=1)
        # The banner's rule is ca.lifecycle's (the largest [lifecycle] warn_days, 30 here).
        notices = portal._expiry_notices(official_a[0], soon_at)
        assert [(n.serial, n.days_left) for n in notices] == [(official_a[1], 10)]
        assert notices[0].renew_url == (f"/portal/certificates/{official_a[1]}/renew"
                                        if "requests.renew_form" in app.view_functions
                                        else None)
        assert portal._expiry_notices(official_a[0], record.not_after - timedelta(days=31)) \
            == []
        soon = portal._certificate_view(record, soon_at, {n.serial: n.days_left
                                                          for n in notices})
        assert soon.state == "valid" and soon.expires_in_days == 10
        fresh = portal._certificate_view(record, record.not_before + timedelta(days=1), {})
        assert fresh.expires_in_days is None
        gone = portal._certificate_view(record, record.not_after + timedelta(days=1))
        assert gone.state == "expired" and "Expired on" in gone.state_text


def _expiring_official(kyso_app: Any, days: float) -> tuple[int, str]:
    """A fresh official whose certificate (as the database knows it) ends in `days` days."""
    from datetime import UTC, datetime

    from sqlalchemy import update

    from ca.models import CertificateRecord

    official_id, serial = new_official(kyso_app, "Phan Thị Hết Hạn", PIN_C)
    with kyso_app.sessions.begin() as s:
        s.execute(update(CertificateRecord).where(CertificateRecord.serial == serial)
                  .values(not_after=datetime.now(UTC) + timedelta(days=days)))
    return official_id, serial


BANNER = '<div class="expiry-warning expiry-banner" role="status" id="expiry-banner">'


def test_banner_warns_of_expiry_on_the_portal_pages(client: FlaskClient, kyso_app: Any,
                                                    app: Flask) -> None:
    official_id, serial = _expiring_official(kyso_app, 10.5)
    login(client, new_account(kyso_app, "official", official=official_id, prefix="expiry"))
    renew = "requests.renew_form" in app.view_functions
    for path in ("/portal/?lang=en", "/portal/sign?lang=en"):
        html = client.get(path).get_data(as_text=True)
        assert html.count(BANNER) == 1, path
        banner = html.split(BANNER, 1)[1].split("</div>", 1)[0]
        assert f"Certificate {serial} expires in 10 day(s)" in banner, banner
        assert (f'href="/portal/certificates/{serial}/renew"' in banner) == renew
    html = client.get("/portal/").get_data(as_text=True)  # Vietnamese by default
    assert BANNER in html and serial in html
    if renew:  # once a renewal is asked for, the banner says so instead of offering it
        from ca import requests as cert_requests

        cert_requests.file_renewal(kyso_app.authority, serial, actor="test",
                                   official_id=official_id)
        html = client.get("/portal/?lang=en").get_data(as_text=True)
        banner = html.split(BANNER, 1)[1].split("</div>", 1)[0]
        assert "already waiting" in banner and "/renew" not in banner


def test_no_banner_far_from_expiry_or_beyond_the_largest_threshold(
        as_a: tuple[FlaskClient, Account], kyso_app: Any) -> None:
    from dataclasses import replace

    client, _ = as_a
    for path in ("/portal/", "/portal/sign"):
        assert "expiry-banner" not in client.get(path).get_data(as_text=True)
    # [lifecycle] warn_days = [7, 1]: ten days left is no warning yet.
    official_id, _ = _expiring_official(kyso_app, 10.5)
    settings = kyso_app.settings
    narrow = app_over(kyso_app)
    narrow.config["KYSO_SETTINGS"] = replace(
        settings, lifecycle=replace(settings.lifecycle, warn_days=(7, 1)))
    other = narrow.test_client()
    login(other, new_account(kyso_app, "official", official=official_id, prefix="expiry"))
    assert "expiry-banner" not in other.get("/portal/").get_data(as_text=True)


def test_chain_is_pem_that_chains_to_the_root(as_a: tuple[FlaskClient, Account],
                                              kyso_app: Any,
                                              official_a: tuple[int, str]) -> None:
    client, _ = as_a
    got = client.get(f"/portal/certificates/{official_a[1]}/chain.pem")
    assert got.status_code == 200 and got.mimetype == "application/x-pem-file"
    assert "attachment" in got.headers["Content-Disposition"]
    certs = x509.load_pem_x509_certificates(got.get_data())
    assert len(certs) == 3  # official, issuing CA, root
    assert format(certs[0].serial_number, "x") == official_a[1]
    for child, parent in zip(certs, certs[1:], strict=False):
        child.verify_directly_issued_by(parent)
    certs[-1].verify_directly_issued_by(certs[-1])
    assert certs[-1] == _root(kyso_app)


def test_someone_elses_or_unknown_serial_is_404(as_a: tuple[FlaskClient, Account],
                                                official_b: tuple[int, str]) -> None:
    client, _ = as_a
    for serial in (official_b[1], "1234abcd", "not-hex", "x" * 300):
        got = client.get(f"/portal/certificates/{serial}/chain.pem")
        assert got.status_code == 404, serial
        assert b"BEGIN CERTIFICATE" not in got.get_data()


# -- uploading ------------------------------------------------------------------------------

def test_unusable_uploads_are_refused_one_by_one(as_a: tuple[FlaskClient, Account],
                                                 kyso_app: Any) -> None:
    client, account = as_a
    got = _upload(client, (b"PK\x03\x04 a zip, not a PDF", "letter.docx"),
                  (PDF[:300], "truncated.pdf"), (_encrypted(PDF), "secret.pdf"),
                  (b"", "empty.pdf"))
    assert got.status_code == 400
    html = got.get_data(as_text=True)
    assert html.count('class="file-error"') == 4
    assert 'id="upload-form"' in html and 'class="error" role="alert"' in html
    for name in ("letter.docx", "truncated.pdf", "secret.pdf", "empty.pdf"):
        assert name in html
    assert not _work(kyso_app, account).exists() or not any(_work(kyso_app, account).rglob("*"))
    # Nothing chosen at all.
    empty = client.post("/portal/sign", data={"csrf_token": csrf(client, "/portal/sign")})
    assert empty.status_code == 400


def test_usable_uploads_are_kept_privately_the_rest_listed(
        as_a: tuple[FlaskClient, Account], kyso_app: Any) -> None:
    client, account = as_a
    batch_id = _batch(client, (PDF, "../../etc/Quyết định\u202e.pdf"), (b"junk", "junk.pdf"))
    where = _work(kyso_app, account) / batch_id
    assert sorted(p.name for p in where.iterdir()) == ["0.pdf", "batch.json", "preview.png"]
    assert (where / "0.pdf").read_bytes() == PDF
    for path in where.iterdir():
        assert path.stat().st_mode & 0o777 == 0o600
    assert where.stat().st_mode & 0o777 == 0o700
    page = client.get(f"/portal/sign/{batch_id}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Quyết định.pdf" in html and "etc" not in html.split("Quyết định.pdf")[0][-20:]
    assert 'class="file-error"' in html and "junk.pdf" in html
    for needle in ('id="preview"', 'id="mode-visible"', 'id="mode-invisible"', 'id="page"',
                   'id="x"', 'id="y"', 'id="w"', 'id="h"', 'id="kind-personal"',
                   'id="kind-organization"', 'id="level"', 'id="pin"', 'id="sign-submit"',
                   'autocomplete="off"', 'value="B-LT" selected', 'data-page-width="595',
                   'data-page-height="842', "portal-sign.js"):
        assert needle in html, needle
    assert "<script>" not in html  # the CSP allows only files


def test_preview_is_a_png_of_the_first_page(as_a: tuple[FlaskClient, Account]) -> None:
    client, _ = as_a
    batch_id = _batch(client, (PDF_2, "two-pages.pdf"))
    got = client.get(f"/portal/sign/{batch_id}/preview.png")
    assert got.status_code == 200 and got.mimetype == "image/png"
    image = Image.open(io.BytesIO(got.get_data()))
    assert image.format == "PNG" and 680 <= image.width <= 720
    assert abs(image.height / image.width - 842 / 595) < 0.01
    assert client.get("/portal/sign/" + "b" * 24 + "/preview.png").status_code == 404


def test_too_large_upload_is_a_413_page(kyso_app: Any, official_a: tuple[int, str]) -> None:
    small = app_over(kyso_app, max_upload_mb=1)
    client = small.test_client()
    login(client, new_account(kyso_app, "official", official=official_a[0]))
    got = _upload(client, (b"%PDF-1.7\n" + b"0" * (2 * 2**20) + b"\n%%EOF\n", "big.pdf"))
    assert got.status_code == 413
    assert 'id="upload-form"' in got.get_data(as_text=True)


# -- signing --------------------------------------------------------------------------------

def test_sign_one_document_visibly_where_clicked(as_a: tuple[FlaskClient, Account],
                                                 kyso_app: Any,
                                                 official_a: tuple[int, str]) -> None:
    client, account = as_a
    batch_id = _batch(client, (PDF, "Quyết định số 12.pdf"))
    got = _sign(client, batch_id, mode="visible", page="1", x="300", y="100.5", w="200",
                h="80")
    assert got.status_code == 303, got.get_data(as_text=True)[:3000]
    done = client.get(got.headers["Location"])
    html = done.get_data(as_text=True)
    links = _links(html, "download")
    assert done.status_code == 200 and len(links) == 1 and 'id="download-all"' not in html
    pdf = client.get(links[0])
    assert pdf.status_code == 200 and pdf.mimetype == "application/pdf"
    disposition = pdf.headers["Content-Disposition"]
    assert disposition.startswith("attachment;") and 'filename="Quyet dinh so 12-signed.pdf"' \
        in disposition
    assert unquote(disposition.split("filename*=UTF-8''")[1]) == "Quyết định số 12-signed.pdf"
    data = pdf.get_data()
    assert data[:len(PDF)] == PDF  # an incremental update of the upload
    field = _check_signed(data, kyso_app, official_a[1])
    assert _rect(field) == [300, 100, 500, 180] or _rect(field) == [300, 101, 500, 181]
    with kyso_app.readers() as s:
        signs = audit.events(s, action="document.sign", obj=f"certificate:{official_a[1]}")
    assert signs[-1]["actor"] == f"web:{account.username}" and signs[-1]["outcome"] == "success"
    assert PIN_A not in json.dumps(signs[-1])


def test_sign_two_documents_invisibly_and_download_all(as_a: tuple[FlaskClient, Account],
                                                       kyso_app: Any,
                                                       official_a: tuple[int, str]) -> None:
    client, account = as_a
    batch_id = _batch(client, (PDF, "Công văn.pdf"), (PDF_2, "Công văn.pdf"))
    got = _sign(client, batch_id, mode="invisible", kind="organization")
    assert got.status_code == 303, got.get_data(as_text=True)[:3000]
    html = client.get(got.headers["Location"]).get_data(as_text=True)
    assert len(_links(html, "download")) == 2 and "doc-error" not in html
    zipped = client.get(f"/portal/sign/{batch_id}/signed.zip")
    assert zipped.status_code == 200 and zipped.mimetype == "application/zip"
    assert f'id="download-all" href="/portal/sign/{batch_id}/signed.zip"' in html
    with zipfile.ZipFile(io.BytesIO(zipped.get_data())) as archive:
        names = archive.namelist()
        assert names == ["Công văn-signed.pdf", "Công văn-signed (2).pdf"]
        for name, original in zip(names, (PDF, PDF_2), strict=True):
            data = archive.read(name)
            assert data[:len(original)] == original
            assert _rect(_check_signed(data, kyso_app, official_a[1])) == [0, 0, 0, 0]
    # The signed copies sit in the batch, and go with it.
    where = _work(kyso_app, account) / batch_id
    assert (where / "0-signed.pdf").stat().st_mode & 0o777 == 0o600
    deleted = client.post(f"/portal/sign/{batch_id}/delete",
                          data={"csrf_token": csrf(client, f"/portal/sign/{batch_id}")})
    assert deleted.status_code == 303 and not where.exists()
    assert client.get(f"/portal/sign/{batch_id}/signed/1").status_code == 404


def test_placement_errors_are_per_document(as_a: tuple[FlaskClient, Account]) -> None:
    client, _ = as_a
    batch_id = _batch(client, (PDF_2, "hai-trang.pdf"), (PDF, "mot-trang.pdf"))
    # Page 2 exists only in the first document.
    got = _sign(client, batch_id, mode="visible", page="2", x="50", y="50", w="200", h="80")
    assert got.status_code == 303
    html = client.get(got.headers["Location"] + "?lang=en").get_data(as_text=True)
    assert len(_links(html, "download")) == 1 and html.count('class="doc-error"') == 1
    assert "no page 2" in html
    # Off the page (595 points wide), and too small for its text: each document refused.
    for box in ({"x": "500", "w": "200"}, {"x": "50", "w": "21", "h": "11"}):
        got = _sign(client, batch_id, mode="visible", page="1", y="50",
                    **{"h": "80", **box})
        assert got.status_code == 303, box
        html = client.get(got.headers["Location"]).get_data(as_text=True)
        assert html.count('class="doc-error"') == 2 and not _links(html, "download"), box


def test_wrong_pin_is_403_and_signs_nothing(as_a: tuple[FlaskClient, Account],
                                            kyso_app: Any, app: Flask,
                                            caplog: pytest.LogCaptureFixture) -> None:
    client, account = as_a
    batch_id = _batch(client, (PDF, "a.pdf"))
    caplog.set_level("DEBUG")
    got = _sign(client, batch_id, pin="000000000")
    html = got.get_data(as_text=True)
    assert got.status_code == 403 and '<p class="error" role="alert">' in html
    assert 'id="sign-submit"' in html and "000000000" not in html
    assert not list((_work(kyso_app, account) / batch_id).glob("*-signed.pdf"))
    assert client.get(f"/portal/sign/{batch_id}/done").status_code == 302
    as_json = _sign(client, batch_id, pin="000000000", json="1")
    assert as_json.status_code == 403
    assert as_json.get_json()["error"]["code"] == "pin_incorrect"
    assert _sign(client, batch_id).status_code == 303  # the right PIN resets the count
    # The PIN is in no log line, and not in the session.
    assert "000000000" not in caplog.text and PIN_A not in caplog.text
    cookie = client.get_cookie("kyso_session")
    assert cookie is not None
    session = app.session_interface.get_signing_serializer(app).loads(  # type: ignore[attr-defined]
        cookie.value)
    assert PIN_A not in json.dumps(session) and "000000000" not in json.dumps(session)


def test_unusable_certificate_or_locked_key_refused(client: FlaskClient,
                                                    kyso_app: Any) -> None:
    official_id, serial = new_official(kyso_app, "Lê Văn Cường", PIN_C)
    login(client, new_account(kyso_app, "official", official=official_id))
    batch_id = _batch(client, (PDF, "a.pdf"))
    authority = kyso_app.authority

    def failures() -> int:
        with kyso_app.readers() as s:
            return int(store.get_official(s, official_id).failed_pin_attempts)

    # Locked after wrong PINs: 423, and the right PIN no longer helps.
    statuses = [_sign(client, batch_id, pin="111111111").status_code
                for _ in range(authority.pin_max_attempts)]
    assert statuses[:-1] == [403] * (authority.pin_max_attempts - 1) and statuses[-1] == 423
    assert _sign(client, batch_id, pin=PIN_C).status_code == 423
    authority.unlock_official(official_id)
    # On hold, then revoked: refused before the PIN is tried (no attempt counted).
    authority.hold(serial)
    held = _sign(client, batch_id, pin="111111111")
    assert held.status_code == 409 and "on hold" in held.get_data(as_text=True)
    english = client.post(f"/portal/sign/{batch_id}?lang=en", data={
        "csrf_token": csrf(client, f"/portal/sign/{batch_id}"), "mode": "invisible",
        "kind": "personal", "level": "B-B", "pin": "111111111"})
    assert "cannot be used: On hold (temporarily suspended)." in english.get_data(as_text=True)
    assert failures() == 0
    authority.release(serial)
    authority.revoke(serial, "keyCompromise")
    revoked = _sign(client, batch_id, pin="111111111")
    assert revoked.status_code == 409 and "revoked" in revoked.get_data(as_text=True)
    assert '<p class="error" role="alert">' in revoked.get_data(as_text=True)
    assert failures() == 0
    listing = client.get("/portal/?lang=en").get_data(as_text=True)
    assert "Revoked on" in listing and "key compromise" in listing


BAD_FORMS: list[dict[str, str | None]] = [
    {"mode": None}, {"mode": "sideways"}, {"kind": "stamp"}, {"level": "B-X"},
    {"mode": "visible", "x": "abc"}, {"mode": "visible", "page": "0"},
    {"mode": "visible", "page": "1.5"}, {"mode": "visible", "w": "nan"},
    {"mode": "visible", "y": "-5"}, {"mode": "visible", "w": "5"}, {"pin": ""},
    {"pin": "9" * 300}, {"mode": "visible", "x": "1" * 500}, {"mode": "visible", "h": None},
]


def test_bad_sign_forms_are_400_pages(as_a: tuple[FlaskClient, Account], kyso_app: Any,
                                      official_a: tuple[int, str]) -> None:
    client, _ = as_a
    batch_id = _batch(client, (PDF, "a.pdf"))
    for fields in BAD_FORMS:
        got = _sign(client, batch_id, **fields)  # type: ignore[arg-type]
        assert got.status_code == 400, fields
        assert '<p class="error" role="alert">' in got.get_data(as_text=True), fields
    with kyso_app.readers() as s:  # refused before the PIN: no attempt was counted
        assert store.get_official(s, official_a[0]).failed_pin_attempts == 0


def test_batches_belong_to_their_account(as_a: tuple[FlaskClient, Account], app: Flask,
                                         kyso_app: Any, official_b: tuple[int, str]) -> None:
    client, _ = as_a
    batch_id = _batch(client, (PDF, "a.pdf"))
    assert _sign(client, batch_id).status_code == 303
    other = app.test_client()
    login(other, new_account(kyso_app, "official", official=official_b[0]))
    base = f"/portal/sign/{batch_id}"
    for path in (base, base + "/preview.png", base + "/done", base + "/signed/1",
                 base + "/signed.zip"):
        assert other.get(path).status_code == 404, path
        assert client.get(path).status_code in (200, 302), path
    token = csrf(other, "/portal/sign")
    posted = other.post(base, data={"csrf_token": token, "mode": "invisible", "kind": "personal",
                                    "level": "B-B", "pin": PIN_B})
    assert posted.status_code == 404
    assert other.post(base + "/delete", data={"csrf_token": token}).status_code == 404


def test_unknown_batches_methods_and_indexes(as_a: tuple[FlaskClient, Account]) -> None:
    client, _ = as_a
    for path in ("/portal/sign/" + "c" * 24, "/portal/sign/short", "/portal/sign/../x",
                 "/portal/sign/" + "d" * 24 + "/signed/1"):
        assert client.get(path).status_code == 404, path
    batch_id = _batch(client, (PDF, "a.pdf"))
    assert client.get(f"/portal/sign/{batch_id}/signed/1").status_code == 404  # not signed
    assert client.get(f"/portal/sign/{batch_id}/signed.zip").status_code == 404
    assert client.get(f"/portal/sign/{batch_id}/done").status_code == 302
    assert _sign(client, batch_id).status_code == 303
    for n in (0, 2, 99):
        assert client.get(f"/portal/sign/{batch_id}/signed/{n}").status_code == 404
    token = csrf(client, "/portal/sign")
    for odd in ({"data": {"csrf_token": token, "pdf": "not a file"}},
                {"data": {"csrf_token": token}, "content_type": "multipart/form-data"},
                {"data": b'{"pdf": 1}', "content_type": "application/json",
                 "headers": {"X-CSRFToken": token}}):
        assert client.post("/portal/sign", **odd).status_code == 400, odd  # type: ignore[arg-type]
    assert client.post("/portal/sign", data={"pdf": "x"}).status_code == 400  # no CSRF token
    assert client.put("/portal/sign").status_code == 405
    assert client.delete(f"/portal/sign/{batch_id}").status_code == 405
    assert client.post("/portal/", data={}).status_code in (400, 405)


def test_old_batches_are_deleted(as_a: tuple[FlaskClient, Account], kyso_app: Any) -> None:
    client, account = as_a
    first, second = _batch(client, (PDF, "a.pdf")), _batch(client, (PDF, "b.pdf"))
    root = _work(kyso_app, account)
    for batch_id in (first, second):
        manifest = root / batch_id / "batch.json"
        content = json.loads(manifest.read_text())
        content["created"] = time.time() - 5 * 3600
        manifest.write_text(json.dumps(content))
    assert client.get(f"/portal/sign/{first}").status_code == 404  # expired on sight
    assert not (root / first).exists()
    portal._last_sweep = 0.0  # the sweep runs at most every few minutes
    assert client.get("/portal/sign").status_code == 200
    assert not (root / second).exists()


def test_signing_is_rate_limited(kyso_app: Any, official_a: tuple[int, str]) -> None:
    limited = app_over(kyso_app, sign_rate_limit="2/minute")
    client = limited.test_client()
    from web.security import limiter

    limiter.reset()
    login(client, new_account(kyso_app, "official", official=official_a[0]))
    batch_id = _batch(client, (PDF, "a.pdf"))
    statuses = [_sign(client, batch_id, mode="bad").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]
