"""The public verification page and the web security basics (CSRF, cookies, limits) in process."""

from __future__ import annotations

import io
import re
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask.testing import FlaskClient
from pdf_samples import make_pdf
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from pypdf import PdfReader, PdfWriter
from web_support import app_over
from werkzeug.test import TestResponse

from kyso.bootstrap import SETTINGS_TEMPLATE, WEB_DEMO_SECTION, _add_web_section
from kyso.settings import Settings, SettingsError, load_settings
from web import create_app
from web.security import limiter, load_secret_key

SUBJECT = ("CN=Lê Thị Thu Hà,T=Phó Trưởng phòng,O=Ủy ban nhân dân phường Tân Định,"
           "OU=Văn phòng,L=Thành phố Hồ Chí Minh,C=VN")
PAGE_TEXT = b"UY BAN NHAN DAN"
VIETNAM_TIME = re.compile(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2} \+07:00")
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


# -- documents ------------------------------------------------------------------------------

def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def _sign(data: bytes, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey,
          chain: list[x509.Certificate]) -> bytes:
    """A PAdES B-B signature by pyHanko's SimpleSigner with a software key."""
    simple = signers.SimpleSigner(
        signing_cert=_asn1(cert),
        signing_key=asn1_keys.PrivateKeyInfo.load(key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([_asn1(c) for c in chain]),
    )
    meta = signers.PdfSignatureMetadata(field_name="Sig1", subfilter=SigSeedSubFilter.PADES,
                                        md_algorithm="sha256")
    return signers.sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)), meta,
                            signer=simple).getvalue()


@pytest.fixture(scope="module")
def signed(kyso_app: Any) -> dict[str, Any]:
    """A PDF signed with an official-signing certificate of the session's issuing CA."""
    # The issuing CA's own status comes from the root's CRL: publish one.
    kyso_app.crls.generate("root")
    authority = kyso_app.authority
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    request = authority.request_from_csr("official-signing", csr, SUBJECT,
                                         emails=("ha@tandinh.hochiminhcity.gov.vn",))
    issued = authority.issue("issuing", request)
    pdf = _sign(make_pdf(), issued.certificate, key, authority.chain("issuing"))
    return {"pdf": pdf, "serial": issued.serial}


def _untrusted_signed() -> bytes:
    """Signed by a self-made certificate no trust anchor knows: INDETERMINATE."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Người lạ"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Không rõ")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return _sign(make_pdf(), cert, key, [])


def _tampered(data: bytes) -> bytes:
    out = bytearray(data)
    out[out.index(PAGE_TEXT)] ^= 0x20  # 'U' -> 'u', inside the signed byte range
    return bytes(out)


def _encrypted(data: bytes) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password="mat-khau", owner_password="owner", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- apps and clients -----------------------------------------------------------------------

def _token(client: FlaskClient, path: str = "/verify") -> str:
    page = client.get(path)
    assert page.status_code == 200
    match = _TOKEN.search(page.get_data(as_text=True))
    assert match, "the form carries no CSRF token"
    return match.group(1)


def _post(client: FlaskClient, data: bytes | None, *, filename: str = "quyet-dinh.pdf",
          token: str | None = None, path: str = "/verify", **kwargs: Any) -> TestResponse:
    form: dict[str, Any] = {"csrf_token": token if token is not None else _token(client)}
    if data is not None:
        form["file"] = (io.BytesIO(data), filename)
    return client.post(path, data=form, content_type="multipart/form-data", **kwargs)


def _text(response: TestResponse) -> str:
    return response.get_data(as_text=True)


def _assert_clean_page(response: TestResponse) -> str:
    """A page people read: HTML, strict CSP, no script or inline style, no traceback."""
    assert response.mimetype == "text/html"
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    html = _text(response)
    assert "<script" not in html and "style=" not in html
    assert "Traceback" not in html
    return html


# -- the form -------------------------------------------------------------------------------

def test_form_is_vietnamese_with_a_csrf_token(client: FlaskClient) -> None:
    page = client.get("/verify")
    assert page.status_code == 200
    html = _assert_clean_page(page)
    assert '<html lang="vi">' in html
    assert "Kiểm tra chữ ký số trên tệp PDF" in html and "Tối đa 50 MB" in html
    assert 'enctype="multipart/form-data"' in html and 'name="file"' in html
    assert _TOKEN.search(html)


def test_verify_page_is_linked_from_the_repository_and_the_nav(client: FlaskClient) -> None:
    html = _text(client.get("/"))
    assert html.count('href="/verify"') >= 2  # the nav and the page itself


# -- reports: one verdict per signature, in words and colour --------------------------------

def test_valid_signature_is_green_total_passed(client: FlaskClient,
                                               signed: dict[str, Any]) -> None:
    got = _post(client, signed["pdf"])
    assert got.status_code == 200
    assert got.headers["Cache-Control"] == "no-store"
    html = _assert_clean_page(got)
    assert "verdict-passed" in html and "verdict-failed" not in html
    assert "TOTAL-PASSED" in html and "Chữ ký hợp lệ" in html  # words, not colour only
    for shown in ("Lê Thị Thu Hà", "Ủy ban nhân dân phường Tân Định", signed["serial"],
                  "Test Issuing CA", "B-B", "quyet-dinh.pdf", "Nguyên vẹn", "Còn hiệu lực"):
        assert shown in html, shown
    assert "Test Root CA" in html  # the path up to the trust anchor
    assert VIETNAM_TIME.search(html)  # claimed signing time, dd/mm/yyyy hh:mm:ss +07:00


def test_tampered_copy_is_red_total_failed(client: FlaskClient,
                                           signed: dict[str, Any]) -> None:
    got = _post(client, _tampered(signed["pdf"]))
    assert got.status_code == 200  # the document was verified: the verdict is on the page
    html = _assert_clean_page(got)
    assert "verdict-failed" in html and "verdict-passed" not in html
    assert "TOTAL-FAILED" in html and "HASH_FAILURE" in html
    assert "Chữ ký không hợp lệ" in html and "nội dung được ký đã bị thay đổi" in html


def test_unknown_signer_is_amber_indeterminate(client: FlaskClient) -> None:
    got = _post(client, _untrusted_signed())
    assert got.status_code == 200
    html = _assert_clean_page(got)
    assert "verdict-indeterminate" in html and "INDETERMINATE" in html
    assert "Không xác định được tính hợp lệ của chữ ký" in html
    assert "Người lạ" in html


def test_report_in_english_when_chosen(client: FlaskClient, signed: dict[str, Any]) -> None:
    client.get("/verify?lang=en")  # remembered in the lang cookie
    html = _text(_post(client, signed["pdf"]))
    assert '<html lang="en">' in html
    assert "Verification report" in html and "Valid signature" in html
    assert "Signer" in html and "Chữ ký hợp lệ" not in html


# -- uploads the page refuses: the form again, a clear message, the right status -------------

@pytest.mark.parametrize("case, status, code, words", [
    ("not_a_pdf", 415, "not_a_pdf", "không phải là tài liệu PDF"),
    ("truncated", 422, "pdf_damaged", "tệp bị hỏng"),
    ("unsigned", 422, "no_signatures", "không có chữ ký số"),
    ("encrypted", 422, "pdf_encrypted", "mật khẩu"),
    ("empty", 400, "empty_file", "Tệp rỗng"),
    ("no_file", 400, "missing_file", "Hãy chọn một tệp PDF"),
])
def test_bad_uploads_show_the_form_with_a_message(client: FlaskClient, signed: dict[str, Any],
                                                  case: str, status: int, code: str,
                                                  words: str) -> None:
    data = {
        "not_a_pdf": b"GIF89a\x01\x00\x01\x00 not a pdf",
        "truncated": signed["pdf"][: len(signed["pdf"]) // 2],
        "unsigned": make_pdf(),
        "encrypted": _encrypted(make_pdf()),
        "empty": b"",
        "no_file": None,
    }[case]
    got = _post(client, data, filename="tai-lieu.gif" if case == "not_a_pdf" else "a.pdf")
    assert got.status_code == status, _text(got)
    html = _assert_clean_page(got)
    assert words in html and f"<code>{code}</code>" in html
    assert 'role="alert"' in html and _TOKEN.search(html)  # the form, ready to send again


def test_refusals_are_json_for_json_clients(client: FlaskClient) -> None:
    got = _post(client, b"hello", headers={"Accept": "application/json"})
    assert got.status_code == 415
    error = got.get_json()["error"]
    assert error["code"] == "not_a_pdf" and "PDF" in error["message"]
    assert error["request_id"] == got.headers["X-Request-ID"]


def test_upload_over_the_limit_is_413(kyso_app: Any) -> None:
    small = app_over(kyso_app, max_upload_mb=1)
    client = small.test_client()
    token = _token(client)
    big = b"%PDF-1.7\n" + b"0" * (3 * 2**20 // 2)
    page = _post(client, big, token=token)
    assert page.status_code == 413
    html = _assert_clean_page(page)
    assert "Tệp lớn hơn 1 MB" in html and _TOKEN.search(html)

    api = _post(client, big, token=token, headers={"Accept": "application/json"})
    assert api.status_code == 413
    assert "1 MB" in api.get_json()["error"]["message"]

    # Just over the limit but inside the request allowance: refused by the page itself.
    nearly = b"%PDF-1.7\n" + b"0" * 2**20
    got = _post(client, nearly, token=token)
    assert got.status_code == 413 and "Tệp lớn hơn 1 MB" in _text(got)


def test_other_methods_are_405(client: FlaskClient) -> None:
    got = client.put("/verify")
    assert got.status_code == 405
    assert "POST" in got.headers["Allow"]
    _assert_clean_page(got)


# -- CSRF -----------------------------------------------------------------------------------

def test_post_without_or_with_a_forged_token_is_400(client: FlaskClient,
                                                    signed: dict[str, Any]) -> None:
    client.get("/verify")  # a session exists: only the token is missing
    for token in ("", "forged-token"):
        got = _post(client, signed["pdf"], token=token)
        assert got.status_code == 400
        html = _assert_clean_page(got)
        assert "mã bảo vệ của biểu mẫu" in html and "<code>csrf_failed</code>" in html
        assert "TOTAL-PASSED" not in html

    api = _post(client, signed["pdf"], token="", headers={"Accept": "application/json"})
    assert api.status_code == 400 and api.get_json()["error"]["code"] == "csrf_failed"


def test_machine_endpoints_need_no_csrf_token(client: FlaskClient,
                                              signed: dict[str, Any]) -> None:
    got = client.post("/api/v1/verify", data=signed["pdf"], content_type="application/pdf")
    assert got.status_code == 200 and got.get_json()["indication"] == "TOTAL-PASSED"
    tsa = client.post("/tsa", data=b"x", content_type="text/plain")
    assert tsa.status_code == 415  # the TSA's own answer, not a CSRF refusal


# -- rate limit -----------------------------------------------------------------------------

def test_rate_limit_gives_a_clear_429(kyso_app: Any) -> None:
    limited = app_over(kyso_app, verify_rate_limit="3/minute")
    limiter.reset()
    client = limited.test_client()
    token = _token(client)
    for _ in range(3):
        assert _post(client, None, token=token).status_code == 400  # counted all the same
    page = _post(client, None, token=token)
    assert page.status_code == 429
    html = _assert_clean_page(page)
    assert "Quá nhiều yêu cầu" in html and "tối đa 3 yêu cầu trong 60 giây" in html
    assert int(page.headers["Retry-After"]) > 0
    api = _post(client, None, token=token, headers={"Accept": "application/json"})
    assert api.status_code == 429
    assert api.get_json()["error"]["code"] == "too_many_requests"
    assert client.get("/verify").status_code == 200  # only POST is limited


# -- session cookie, secret key, settings ---------------------------------------------------

def _session_cookie(response: TestResponse) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie")
               if c.startswith("kyso_session=")]
    assert cookies, response.headers
    return cookies[0]


def test_session_cookie_is_httponly_lax_and_secure(client: FlaskClient,
                                                   kyso_app: Any) -> None:
    cookie = _session_cookie(client.get("/verify"))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" in cookie
    demo = app_over(kyso_app, session_cookie_secure=False).test_client()
    cookie = _session_cookie(demo.get("/verify"))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie


def test_secret_key_is_made_once_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "web-secret.key"
    key = load_secret_key(path)
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_secret_key(path) == key  # read back, never replaced
    path.write_bytes(b"short")
    with pytest.raises(SettingsError, match="shorter than 32"):
        load_secret_key(path)


def test_the_app_uses_the_configured_secret_key_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url="sqlite://")
    app = create_app(settings)
    assert not (tmp_path / "secrets").exists()  # building the app reads no secret
    app.test_client().get("/healthz")
    assert not (tmp_path / "secrets").exists()  # nor does a health check
    app.test_client().get("/verify")
    assert app.config["SECRET_KEY"] == (tmp_path / "secrets" / "web-secret.key").read_bytes()


def test_web_settings_from_file_and_environment(tmp_path: Path) -> None:
    config = tmp_path / "kyso.toml"
    config.write_text('[web]\nmax_upload_mb = 5\nsecret_key_file = "keys/web.key"\n'
                      'ratelimit_storage = "redis://127.0.0.1:6379/0"\n', encoding="utf-8")
    settings = load_settings(config, environ={"KYSO_WEB_VERIFY_RATE_LIMIT": "10/minute",
                                              "KYSO_WEB_SESSION_COOKIE_SECURE": "false"})
    web = settings.web
    assert (web.max_upload_mb, web.verify_rate_limit) == (5, "10/minute")
    assert web.session_cookie_secure is False
    assert web.ratelimit_storage == "redis://127.0.0.1:6379/0"
    assert web.secret_key_path(settings.data_dir) == tmp_path / "keys" / "web.key"
    defaults = Settings().web
    assert (defaults.max_upload_mb, defaults.session_cookie_secure,
            defaults.ratelimit_storage, defaults.verify_rate_limit) == (
        50, True, "memory://", "30/minute")
    for key, value in (("MAX_UPLOAD_MB", "0"), ("VERIFY_RATE_LIMIT", "often"),
                       ("RATELIMIT_STORAGE", "redis"), ("SESSION_COOKIE_SECURE", "maybe")):
        with pytest.raises(SettingsError, match="web."):
            load_settings(environ={f"KYSO_WEB_{key}": value})


def test_the_demo_settings_turn_secure_cookies_off(tmp_path: Path) -> None:
    config = tmp_path / "kyso.toml"
    config.write_text(SETTINGS_TEMPLATE.format(module="/x.so", web=WEB_DEMO_SECTION),
                      encoding="utf-8")
    assert load_settings(config, environ={}).web.session_cookie_secure is False
    # A demo file from before [web] existed gets the section added, once.
    config.write_text(SETTINGS_TEMPLATE.format(module="/x.so", web=""), encoding="utf-8")
    assert load_settings(config, environ={}).web.session_cookie_secure is True
    _add_web_section(config)
    _add_web_section(config)
    assert config.read_text(encoding="utf-8").count("[web]") == 1
    assert load_settings(config, environ={}).web.session_cookie_secure is False
    # A file the operator wrote is never touched.
    own = tmp_path / "own.toml"
    own.write_text('base_url = "https://pki.example"\n', encoding="utf-8")
    _add_web_section(own)
    assert "[web]" not in own.read_text(encoding="utf-8")


# -- over HTTP: the demo made by `kyso init` serves plain http, and its forms still work -----

def _multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = "kyso-test-boundary"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
             .encode() for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                 f'filename="{filename}"\r\nContent-Type: application/pdf\r\n\r\n'.encode()
                 + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def test_demo_form_round_trip_over_plain_http(server: Any) -> None:
    import http.cookiejar
    import urllib.error
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def post(token: str) -> tuple[int, str]:
        body, content_type = _multipart({"csrf_token": token}, "a.gif", b"GIF89a not a pdf")
        req = urllib.request.Request(server.base_url + "/verify", data=body,
                                     headers={"Content-Type": content_type})
        try:
            with opener.open(req, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    with opener.open(server.base_url + "/verify", timeout=10) as response:
        form = response.read().decode()
    assert [c.secure for c in jar if c.name == "kyso_session"] == [False]  # demo: http
    token = _TOKEN.search(form)
    assert token
    status, html = post(token.group(1))
    assert status == 415 and "không phải là tài liệu PDF" in html  # past the CSRF check
    jar.clear()
    status, html = post(token.group(1))  # the token without its session
    assert status == 400 and "csrf_failed" in html
