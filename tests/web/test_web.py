"""The web app served by gunicorn over real HTTP, plus its error handling in process."""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from flask import Flask
from web_support import Server, fetch

from kyso.app import Kyso
from kyso.settings import Settings
from web import create_app

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "",
}


def _fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _assert_security_headers(headers: dict[str, str]) -> None:
    for name, expected in SECURITY_HEADERS.items():
        assert name in headers, f"missing {name}"
        assert expected in headers[name]


def _assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text
    assert 'File "' not in text


# -- over HTTP, against the real data directory -------------------------------------------

def test_index_lists_the_demo_cas_in_vietnamese(server: Server, kyso_cli) -> None:
    page = fetch(server.base_url + "/")
    assert page.status == 200
    assert page.headers["Content-Type"].startswith("text/html")
    _assert_security_headers(page.headers)
    html = page.text
    assert '<html lang="vi">' in html
    assert "<title>kyso — Kho chứng thư số</title>" in html
    assert "sắp có" not in html and "/tsa</code>" in html  # the TSA is served
    assert "/crl/root.crl" in html and "/crl/issuing.crl" in html
    for name in ("root", "issuing"):
        info = json.loads(kyso_cli("ca", "show", name, "--json").stdout)
        assert info["sha256_fingerprint"] in html
        assert f'href="/ca/{name}.crt"' in html
        assert f'href="/ca/{name}.pem"' in html
        assert f'href="/ca/{name}/chain.pem"' in html
    # Validity in Vietnam time, dd/mm/yyyy.
    assert re.search(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}", html)


def test_root_certificate_download_is_the_ca_the_cli_shows(server: Server, kyso_cli) -> None:
    info = json.loads(kyso_cli("ca", "show", "root", "--json").stdout)
    der = fetch(server.base_url + "/ca/root.crt")
    assert der.status == 200
    assert der.headers["Content-Type"] == "application/pkix-cert"
    _assert_security_headers(der.headers)
    cert = x509.load_der_x509_certificate(der.body)
    assert cert.serial_number == int(info["serial"], 16)
    assert _fingerprint(cert) == info["sha256_fingerprint"]
    assert cert.subject == cert.issuer  # self-signed root

    pem = fetch(server.base_url + "/ca/root.pem")
    assert pem.status == 200
    assert pem.headers["Content-Type"] == "application/x-pem-file"
    assert x509.load_pem_x509_certificate(pem.body) == cert


def test_chain_is_leaf_most_first_up_to_the_root(server: Server, kyso_cli,
                                                 tmp_path: Path) -> None:
    got = fetch(server.base_url + "/ca/issuing/chain.pem")
    assert got.status == 200
    assert got.headers["Content-Type"] == "application/x-pem-file"
    chain = x509.load_pem_x509_certificates(got.body)
    assert len(chain) == 2
    assert chain[0].issuer == chain[1].subject
    out = tmp_path / "chain.pem"
    kyso_cli("ca", "chain", "issuing", "--out", str(out))
    assert x509.load_pem_x509_certificates(out.read_bytes()) == chain


@pytest.mark.parametrize("path", ["/ca/nope.crt", "/ca/nope.pem", "/ca/nope/chain.pem"])
def test_unknown_ca_is_404_without_traceback(server: Server, path: str) -> None:
    page = fetch(server.base_url + path)
    assert page.status == 404
    assert page.headers["Content-Type"].startswith("text/html")
    _assert_security_headers(page.headers)
    _assert_no_traceback(page.text)

    api = fetch(server.base_url + path, {"Accept": "application/json"})
    assert api.status == 404
    error = api.json()["error"]
    assert error["code"] == "not_found"
    assert "nope" in error["message"]
    assert error["request_id"] == api.headers["X-Request-ID"]
    # Not found is an expected answer, not a server error: nothing in the server log either.
    _assert_no_traceback(server.log())


def test_healthz(server: Server) -> None:
    got = fetch(server.base_url + "/healthz")
    assert got.status == 200
    assert got.headers["Content-Type"].startswith("application/json")
    assert got.json() == {"status": "ok"}


def test_static_stylesheet_is_served(server: Server) -> None:
    got = fetch(server.base_url + "/static/style.css")
    assert got.status == 200
    assert got.headers["Content-Type"].startswith("text/css")


# -- in process: the error helper and the health check's failure path ---------------------

@pytest.fixture
def empty_app(tmp_path: Path) -> Flask:
    """The app over a fresh, migrated SQLite database with no CA (no HSM needed)."""
    settings = Settings(data_dir=tmp_path)
    kyso = Kyso(settings)
    kyso.migrate()
    kyso.close()
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret internal detail")

    return app


def test_index_without_any_ca(empty_app: Flask) -> None:
    got = empty_app.test_client().get("/")
    assert got.status_code == 200
    assert "Chưa có CA nào" in got.get_data(as_text=True)


def test_unexpected_error_is_an_opaque_500_with_request_id(
    empty_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = empty_app.test_client()
    with caplog.at_level(logging.ERROR, logger="kyso.web"):
        api = client.get("/boom", headers={"Accept": "application/json"})
    assert api.status_code == 500
    error = api.get_json()["error"]
    assert error["code"] == "internal_error"
    rid = error["request_id"]
    assert rid and api.headers["X-Request-ID"] == rid
    assert "secret internal detail" not in api.get_data(as_text=True)
    # The server log has the traceback under the same request id.
    logged = [r for r in caplog.records if rid in r.getMessage()]
    assert logged and logged[0].exc_info is not None

    page = client.get("/boom")
    assert page.status_code == 500
    text = page.get_data(as_text=True)
    assert "secret internal detail" not in text
    _assert_no_traceback(text)
    assert page.headers["X-Request-ID"] in text
    _assert_security_headers(dict(page.headers))


def test_unknown_route_and_wrong_method(empty_app: Flask) -> None:
    client = empty_app.test_client()
    missing = client.get("/api/nothing-here")  # /api paths answer JSON whatever Accept says
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "not_found"

    wrong = client.post("/healthz", headers={"Accept": "application/json"})
    assert wrong.status_code == 405
    assert wrong.get_json()["error"]["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


def test_request_id_from_the_caller_is_kept_only_when_sane(empty_app: Flask) -> None:
    client = empty_app.test_client()
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers[
        "X-Request-ID"] == "abc-123"
    odd = client.get("/healthz", headers={"X-Request-ID": "<script>"}).headers["X-Request-ID"]
    assert odd != "<script>" and re.fullmatch(r"[0-9a-f]{16}", odd)


def test_healthz_checks_the_configured_database() -> None:
    # KYSO_TEST_DATABASE_URL (PostgreSQL under CI) when set, else an in-memory SQLite.
    url = os.environ.get("KYSO_TEST_DATABASE_URL") or "sqlite://"
    app = create_app(Settings(database_url=url))
    got = app.test_client().get("/healthz")
    assert got.status_code == 200
    assert got.get_json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    unreachable = f"sqlite:///{tmp_path / 'no-such-dir' / 'kyso.db'}"
    app = create_app(Settings(database_url=unreachable))
    got = app.test_client().get("/healthz")
    assert got.status_code == 503
    assert got.get_json()["status"] == "unavailable"
    _assert_no_traceback(got.get_data(as_text=True))
