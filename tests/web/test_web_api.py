"""The JSON API (/api/v1) in process: verification, certificate lookup, CAs and its errors;
every answer checked against the OpenAPI document the app serves."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from flask import Flask
from flask.testing import FlaskClient
from pdf_samples import make_pdf
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore
from werkzeug.test import TestResponse

from kyso.app import Kyso
from kyso.settings import Settings
from signer.pdfinput import DEFAULT_MAX_BYTES
from web import api, create_app

SUBJECT = ("CN=Trần Văn Bình,T=Phó Chánh Văn phòng,O=Ủy ban nhân dân phường Sài Gòn,"
           "OU=Văn phòng,L=Thành phố Hồ Chí Minh,C=VN")
EMAIL = "binh@saigon.hochiminhcity.gov.vn"
PAGE_TEXT = b"UY BAN NHAN DAN"


@pytest.fixture(scope="module")
def spec(app: Flask) -> Any:
    """The document as the app serves it, loaded by schemathesis."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def conforms(spec: Any, method: str, path: str, response: TestResponse) -> Any:
    """The response's status is documented for the operation and its body matches."""
    operation = spec[path][method]
    documented = operation.definition.raw["responses"]
    assert str(response.status_code) in documented, (response.status_code, response.data)
    operation.validate_response(response)
    return response.get_json() if response.is_json else response.data


def assert_error(response: TestResponse, status: int, code: str) -> dict[str, str]:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == code, error
    assert error["message"] and error["request_id"] == response.headers["X-Request-ID"]
    assert set(error) == {"code", "message", "request_id"}
    return error


@dataclass
class Signer:
    serial: str
    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def issue_signer(authority: Any) -> Signer:
    """An official-signing certificate of the issuing CA for a software key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored")]))
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    request = authority.request_from_csr("official-signing", csr, SUBJECT, emails=(EMAIL,))
    issued = authority.issue("issuing", request)
    return Signer(issued.serial, issued.certificate, key)


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def sign_pdf(authority: Any, signer: Signer, data: bytes) -> bytes:
    """A PAdES B-B signature by pyHanko's SimpleSigner (software key), chain included."""
    simple = signers.SimpleSigner(
        signing_cert=_asn1(signer.certificate),
        signing_key=asn1_keys.PrivateKeyInfo.load(signer.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs(
            [_asn1(c) for c in authority.chain("issuing")]),
    )
    meta = signers.PdfSignatureMetadata(field_name="Sig1", subfilter=SigSeedSubFilter.PADES,
                                        md_algorithm="sha256")
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    return signers.sign_pdf(writer, meta, signer=simple).getvalue()


@pytest.fixture(scope="module")
def signed_pdf(kyso_app: Any) -> bytes:
    # The issuing CA's certificate names no OCSP responder: its status comes from the root's
    # CRL, which the session's hierarchy has not published yet.
    kyso_app.crls.generate("root")
    authority = kyso_app.authority
    return sign_pdf(authority, issue_signer(authority), make_pdf())


def tampered(data: bytes) -> bytes:
    out = bytearray(data)
    out[out.index(PAGE_TEXT)] ^= 0x20  # 'U' -> 'u', inside the signed byte range
    return bytes(out)


# -- POST /verify ---------------------------------------------------------------------------

def test_valid_pdf_is_total_passed(client: FlaskClient, spec: Any, signed_pdf: bytes) -> None:
    got = client.post("/api/v1/verify", data=signed_pdf, content_type="application/pdf")
    report = conforms(spec, "POST", "/verify", got)
    assert got.status_code == 200
    assert got.headers["Cache-Control"] == "no-store"
    assert report["indication"] == "TOTAL-PASSED" and report["passed"] is True
    assert report["signature_count"] == 1 and report["file_size"] == len(signed_pdf)
    [sig] = report["signatures"]
    assert sig["kind"] == "signature" and sig["field_name"] == "Sig1"
    assert sig["signer"]["common_name"] == "Trần Văn Bình"
    assert sig["path_trusted"] is True and sig["pades_level"] == "B-B"
    assert sig["revocation"]["status"] == "good" and "fetched" in sig["revocation"]["sources"]
    assert sig["certificate_path"][-1] == "Test Root CA"


def test_multipart_upload_gives_the_same_report(client: FlaskClient, spec: Any,
                                                signed_pdf: bytes) -> None:
    got = client.post("/api/v1/verify", content_type="multipart/form-data",
                      data={"file": (io.BytesIO(signed_pdf), "quyet-dinh.pdf")})
    report = conforms(spec, "POST", "/verify", got)
    assert report["indication"] == "TOTAL-PASSED"
    assert report["signatures"][0]["signer"]["serial"]


def test_tampered_pdf_is_total_failed(client: FlaskClient, spec: Any,
                                      signed_pdf: bytes) -> None:
    got = client.post("/api/v1/verify", data=tampered(signed_pdf),
                      content_type="application/pdf")
    report = conforms(spec, "POST", "/verify", got)
    assert got.status_code == 200  # the document was verified: the verdict is in the body
    assert report["indication"] == "TOTAL-FAILED" and report["passed"] is False
    [sig] = report["signatures"]
    assert sig["sub_indication"] == "HASH_FAILURE"
    assert sig["integrity"]["digest_ok"] is False
    assert "hash_mismatch" in {r["code"] for r in sig["reasons"]}


def test_not_a_pdf_is_415(client: FlaskClient, spec: Any) -> None:
    got = client.post("/api/v1/verify", data=b"GIF89a not a pdf at all",
                      content_type="application/pdf")
    conforms(spec, "POST", "/verify", got)
    assert "PDF" in assert_error(got, 415, "not_a_pdf")["message"]


def test_pdf_without_signatures_is_422(client: FlaskClient, spec: Any) -> None:
    got = client.post("/api/v1/verify", data=make_pdf(), content_type="application/pdf")
    conforms(spec, "POST", "/verify", got)
    assert_error(got, 422, "no_signatures")


def test_truncated_pdf_is_422(client: FlaskClient, spec: Any, signed_pdf: bytes) -> None:
    got = client.post("/api/v1/verify", data=signed_pdf[: len(signed_pdf) // 2],
                      content_type="application/pdf")
    conforms(spec, "POST", "/verify", got)
    assert_error(got, 422, "pdf_damaged")


def test_missing_body_or_field_is_400(client: FlaskClient, spec: Any,
                                      signed_pdf: bytes) -> None:
    empty = client.post("/api/v1/verify", data=b"", content_type="application/pdf")
    conforms(spec, "POST", "/verify", empty)
    assert_error(empty, 400, "missing_body")
    wrong_field = client.post("/api/v1/verify", content_type="multipart/form-data",
                              data={"document": (io.BytesIO(signed_pdf), "a.pdf")})
    conforms(spec, "POST", "/verify", wrong_field)
    assert_error(wrong_field, 400, "missing_file")
    text_field = client.post("/api/v1/verify", content_type="multipart/form-data",
                             data={"file": "not a file"})
    assert_error(text_field, 400, "missing_file")


def test_wrong_content_type_is_415(client: FlaskClient, spec: Any, signed_pdf: bytes) -> None:
    for content_type in ("text/plain", "application/json", "application/x-www-form-urlencoded"):
        got = client.post("/api/v1/verify", data=signed_pdf, content_type=content_type)
        conforms(spec, "POST", "/verify", got)
        assert_error(got, 415, "unsupported_media_type")
    assert_error(client.post("/api/v1/verify", data=signed_pdf), 415, "unsupported_media_type")


def test_too_large_is_413_before_reading(app: Flask, spec: Any, signed_pdf: bytes) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    try:
        client = app.test_client()
        raw = client.post("/api/v1/verify", data=signed_pdf, content_type="application/pdf")
        conforms(spec, "POST", "/verify", raw)
        assert "1000" in assert_error(raw, 413, "request_too_large")["message"]
        form = client.post("/api/v1/verify", content_type="multipart/form-data",
                           data={"file": (io.BytesIO(signed_pdf), "a.pdf")})
        assert_error(form, 413, "request_too_large")
    finally:
        app.config["MAX_CONTENT_LENGTH"] = None


def test_no_root_ca_is_503_after_the_input_checks(tmp_path: Path, signed_pdf: bytes) -> None:
    settings = Settings(data_dir=tmp_path)  # a migrated, empty database: no CA at all
    kyso = Kyso(settings)
    kyso.migrate()
    kyso.close()
    app = create_app(settings)
    client = app.test_client()
    spec = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    assert_error(client.post("/api/v1/verify", data=b"%PNG", content_type="application/pdf"),
                 415, "not_a_pdf")
    got = client.post("/api/v1/verify", data=signed_pdf, content_type="application/pdf")
    conforms(spec, "POST", "/verify", got)
    assert_error(got, 503, "no_trust_anchors")
    assert conforms(spec, "GET", "/cas", client.get("/api/v1/cas")) == []


def test_the_api_limit_is_the_verifiers() -> None:
    assert api.MAX_PDF_BYTES == DEFAULT_MAX_BYTES


def test_other_methods_are_405_json(client: FlaskClient) -> None:
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        got = client.open("/api/v1/verify", method=method)
        assert_error(got, 405, "method_not_allowed")
        assert "POST" in got.headers["Allow"]
    got = client.post("/api/v1/cas")
    assert_error(got, 405, "method_not_allowed")
    assert "GET" in got.headers["Allow"]


# -- certificates ---------------------------------------------------------------------------

@pytest.fixture
def fresh(kyso_app: Any) -> Signer:
    return issue_signer(kyso_app.authority)


def test_certificate_lookup_mirrors_cert_show(client: FlaskClient, spec: Any,
                                              fresh: Signer) -> None:
    got = client.get(f"/api/v1/certificates/{fresh.serial}")
    info = conforms(spec, "GET", "/certificates/{serial}", got)
    assert got.status_code == 200
    assert info["serial"] == fresh.serial and info["status"] == "valid"
    assert info["expired"] is False
    assert info["ca"] == "issuing" and info["issuer"].startswith("CN=Test Issuing CA")
    assert info["profile"] == "official-signing"
    assert "Trần Văn Bình" in info["subject"]
    assert info["revoked_at"] is None and info["revocation_reason"] is None
    assert x509.load_pem_x509_certificate(info["pem"].encode()) == fresh.certificate
    assert info["sha256_fingerprint"] == fresh.certificate.fingerprint(
        hashes.SHA256()).hex(":").upper()
    assert info["not_after"].endswith("+00:00")
    assert info["not_after"].startswith(
        fresh.certificate.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%S"))

    status = client.get(f"/api/v1/certificates/{fresh.serial}/status")
    assert conforms(spec, "GET", "/certificates/{serial}/status", status) == {
        "serial": fresh.serial, "status": "valid", "expired": False,
        "not_after": info["not_after"], "revoked_at": None, "revocation_reason": None,
        "invalidity_date": None}

    pem = client.get(f"/api/v1/certificates/{fresh.serial}.pem")
    conforms(spec, "GET", "/certificates/{serial}.pem", pem)
    assert pem.mimetype == "application/x-pem-file"
    assert x509.load_pem_x509_certificate(pem.data) == fresh.certificate


def test_serial_is_normalised(client: FlaskClient, fresh: Signer) -> None:
    upper = fresh.serial.upper()
    padded = "00" + fresh.serial if len(fresh.serial) % 2 == 0 else "0" + fresh.serial
    colons = ":".join(padded[i:i + 2] for i in range(0, len(padded), 2)).upper()
    for given in (upper, padded, colons):
        got = client.get(f"/api/v1/certificates/{given}/status")
        assert got.status_code == 200, (given, got.data)
        assert got.get_json()["serial"] == fresh.serial


def test_revoked_and_held_certificates(client: FlaskClient, spec: Any, kyso_app: Any) -> None:
    authority = kyso_app.authority
    revoked, held = issue_signer(authority), issue_signer(authority)
    authority.revoke(revoked.serial, "keyCompromise")
    authority.hold(held.serial)

    got = client.get(f"/api/v1/certificates/{revoked.serial}")
    info = conforms(spec, "GET", "/certificates/{serial}", got)
    assert info["status"] == "revoked" and info["revocation_reason"] == "keyCompromise"
    assert info["revoked_at"] and info["revoked_at"].endswith("+00:00")
    status = client.get(f"/api/v1/certificates/{revoked.serial}/status")
    brief = conforms(spec, "GET", "/certificates/{serial}/status", status)
    assert (brief["status"], brief["revoked_at"], brief["revocation_reason"]) == (
        "revoked", info["revoked_at"], "keyCompromise")

    status = client.get(f"/api/v1/certificates/{held.serial}/status")
    brief = conforms(spec, "GET", "/certificates/{serial}/status", status)
    assert brief["status"] == "hold" and brief["revocation_reason"] == "certificateHold"
    authority.release(held.serial)
    again = client.get(f"/api/v1/certificates/{held.serial}/status").get_json()
    assert again["status"] == "valid" and again["revoked_at"] is None


@pytest.mark.parametrize("suffix", ["", "/status", ".pem"])
def test_unknown_serial_is_404(client: FlaskClient, spec: Any, suffix: str) -> None:
    got = client.get(f"/api/v1/certificates/7fffffffffffffffffffffffffffffffffffffff{suffix}")
    conforms(spec, "GET", "/certificates/{serial}" + suffix, got)
    assert_error(got, 404, "not_found")


@pytest.mark.parametrize("serial", [
    "xyz", "12-34", "0", "00:00", ":ab", "ab:", "1" * 41, "a" * 10_000, "%E1%BA%A1", "ab%00",
])
def test_bad_serial_is_400(client: FlaskClient, spec: Any, serial: str) -> None:
    for suffix in ("", "/status", ".pem"):
        got = client.get(f"/api/v1/certificates/{serial}{suffix}")
        conforms(spec, "GET", "/certificates/{serial}" + suffix, got)
        assert_error(got, 400, "invalid_serial")


def test_paths_outside_the_api_are_json_404(client: FlaskClient) -> None:
    for path in ("/api/v1/certificates/ab/cd", "/api/v1/certificates/", "/api/v1/nothing",
                 "/api/v1/" + "x" * 10_000):
        assert_error(client.get(path), 404, "not_found")


# -- CAs and the document -------------------------------------------------------------------

def test_cas_lists_every_ca_with_its_urls(client: FlaskClient, spec: Any,
                                          kyso_app: Any) -> None:
    got = client.get("/api/v1/cas")
    cas = conforms(spec, "GET", "/cas", got)
    by_name = {ca["name"]: ca for ca in cas}
    assert {"root", "issuing", "issuing-rsa"} <= set(by_name)
    root, issuing = by_name["root"], by_name["issuing"]
    assert root["kind"] == "root" and root["parent"] is None
    assert issuing["kind"] == "issuing" and issuing["parent"] == "root"
    base = kyso_app.settings.base_url.rstrip("/")
    assert issuing["certificate_url"] == f"{base}/ca/issuing.crt"
    assert issuing["certificate_pem_url"] == f"{base}/ca/issuing.pem"
    assert issuing["chain_url"] == f"{base}/ca/issuing/chain.pem"
    assert issuing["crl_url"] == f"{base}/crl/issuing.crl"
    assert issuing["ocsp_url"] == f"{base}/ocsp"
    cert = kyso_app.authority.chain("issuing")[0]
    assert issuing["serial"] == format(cert.serial_number, "x")
    assert issuing["sha256_fingerprint"] == cert.fingerprint(hashes.SHA256()).hex(":").upper()
    # The same certificate the repository serves at certificate_url.
    der = client.get("/ca/issuing.crt")
    assert x509.load_der_x509_certificate(der.data) == cert


def test_openapi_document_is_served(client: FlaskClient) -> None:
    got = client.get("/api/v1/openapi.json")
    assert got.status_code == 200 and got.mimetype == "application/json"
    doc = got.get_json()
    assert doc["openapi"].startswith("3.1") and doc["servers"] == [{"url": "/api/v1"}]


def test_error_messages_are_in_vietnamese_unless_english_is_asked(client: FlaskClient) -> None:
    # Vietnamese first: ?lang=en is remembered in a cookie.
    vi = assert_error(client.get("/api/v1/certificates/not-hex"), 400, "invalid_serial")
    assert "không phải số hiệu chứng thư" in vi["message"]
    no_token = assert_error(client.post("/api/v1/sign", data=b"%PDF-1.7",
                                        content_type="application/pdf"), 401, "invalid_token")
    assert no_token["message"].startswith("Mã truy cập API (token) thiếu")
    en = assert_error(client.get("/api/v1/certificates/not-hex?lang=en"), 400,
                      "invalid_serial")
    assert "is not a hexadecimal certificate serial" in en["message"]
    no_token = assert_error(client.post("/api/v1/sign", data=b"%PDF-1.7",
                                        content_type="application/pdf"), 401, "invalid_token")
    assert no_token["message"].startswith("The API token is missing, wrong, revoked or expired.")
