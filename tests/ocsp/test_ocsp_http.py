"""The OCSP responder over real HTTP (gunicorn, 2 workers) with the real SoftHSM2 token,
checked with `openssl ocsp`, cryptography's OCSP parser and pkilint's lint_ocsp_response."""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
import time
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from asn1crypto import ocsp as aocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from ocsp_demo import Demo
from ocsp_support import (
    Gunicorn,
    Reply,
    http,
    make_request,
    openssl_ocsp,
    raw_get,
    raw_http,
)

LINT_OCSP = Path(sys.executable).parent / "lint_ocsp_response"
OCSP_REQUEST = {"Content-Type": "application/ocsp-request"}


def post(server: Gunicorn, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return http(server.base_url + "/ocsp", data=body,
                headers=OCSP_REQUEST if headers is None else headers, method="POST")


def status_of(reply: Reply) -> ocsp.OCSPResponseStatus:
    assert reply.status == 200, (reply.status, reply.body[:200])
    return reply.ocsp().response_status


def ask(demo: Demo, server: Gunicorn, *names: str, extra: tuple[str, ...] = ()) -> str:
    args: list[str | Path] = ["-issuer", demo.issuer, "-CAfile", demo.chain,
                              "-url", server.base_url + "/ocsp", *extra]
    for name in names:
        args += ["-cert", demo.certs[name]]
    return openssl_ocsp(*args)


def eventually(check, tries: int = 60):  # type: ignore[no-untyped-def]
    """Poll until `check()` is truthy (status changes reach every worker within ~1 s)."""
    for _ in range(tries):
        value = check()
        if value:
            return value
        time.sleep(0.2)
    return check()


def issuer_hashes(issuer: x509.Certificate, algorithm: hashes.HashAlgorithm) -> (
    tuple[bytes, bytes]
):
    key_bits = issuer.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    name = hashes.Hash(algorithm)
    name.update(issuer.subject.public_bytes())
    key = hashes.Hash(algorithm)
    key.update(key_bits)
    return name.finalize(), key.finalize()


def request_by_serial(demo: Demo, serial: int, nonce: bytes | None = None) -> bytes:
    name_hash, key_hash = issuer_hashes(demo.issuer_cert, hashes.SHA1())
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, serial, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def lint(tmp_path: Path, body: bytes) -> str:
    path = tmp_path / f"resp-{secrets.token_hex(4)}.der"
    path.write_bytes(body)
    proc = subprocess.run([str(LINT_OCSP), "lint", "-s", "ERROR", str(path)],
                          capture_output=True, text=True, timeout=120)
    return proc.stdout + proc.stderr


# -- status, signature, openssl ---------------------------------------------------------

def test_openssl_reports_good_and_verifies_the_signature(demo: Demo, server: Gunicorn) -> None:
    for extra in ((), ("-no_nonce",)):  # live-signed with nonce, then pre-signed
        out = ask(demo, server, "good", extra=extra)
        assert "Response verify OK" in out, out
        assert f"{demo.certs['good']}: good" in out, out
        assert "WARNING: no nonce" not in out or extra, out


def test_revoked_with_reason_after_kyso_cert_revoke(demo: Demo, server: Gunicorn) -> None:
    assert ": good" in ask(demo, server, "revokeme", extra=("-no_nonce",))
    for _ in range(4):  # live-signed too: every worker now holds the status "good"
        assert ": good" in ask(demo, server, "revokeme")
    demo.data.run("cert", "revoke", demo.serial("revokeme"), "--reason", "keyCompromise")
    out = eventually(lambda: (o := ask(demo, server, "revokeme", extra=("-no_nonce",)))
                     and ": revoked" in o and o)
    assert out and "Response verify OK" in out, out
    assert "Reason: keyCompromise" in out, out
    # One worker knew at once; every process reads the change feed within change_poll_ms
    # (1 s): after that every worker says so.
    time.sleep(1.5)
    for _ in range(6):
        out = ask(demo, server, "revokeme", extra=("-no_nonce",))
        assert ": revoked" in out and "Reason: keyCompromise" in out, out
    for _ in range(4):
        out = ask(demo, server, "revokeme")
        assert ": revoked" in out and "Reason: keyCompromise" in out, out


def test_hold_then_release(demo: Demo, server: Gunicorn) -> None:
    demo.data.run("cert", "hold", demo.serial("holdme"))
    out = eventually(lambda: (o := ask(demo, server, "holdme", extra=("-no_nonce",)))
                     and ": revoked" in o and o)
    assert out and "Reason: certificateHold" in out, out
    time.sleep(1.2)  # past change_poll_ms: live-signed answers say so in every worker
    for _ in range(4):
        assert "Reason: certificateHold" in ask(demo, server, "holdme")
    demo.data.run("cert", "release", demo.serial("holdme"))
    out = eventually(lambda: (o := ask(demo, server, "holdme", extra=("-no_nonce",)))
                     and ": good" in o and o)
    assert out, ask(demo, server, "holdme", extra=("-no_nonce",))
    time.sleep(1.2)
    for _ in range(4):
        assert ": good" in ask(demo, server, "holdme")


def test_unknown_for_a_never_issued_serial(demo: Demo, server: Gunicorn) -> None:
    out = openssl_ocsp("-issuer", demo.issuer, "-CAfile", demo.chain, "-url",
                       server.base_url + "/ocsp", "-serial", "0x1234abcd")
    assert "Response verify OK" in out and "0x1234abcd: unknown" in out, out


def test_several_certificates_in_one_request(demo: Demo, server: Gunicorn) -> None:
    for extra in ((), ("-no_nonce",)):
        out = ask(demo, server, "good", "other",
                  extra=("-serial", "0x77777777", *extra))
        assert "Response verify OK" in out, out
        assert f"{demo.certs['good']}: good" in out and f"{demo.certs['other']}: good" in out
        assert "0x77777777: unknown" in out, out


def test_sha1_and_sha256_cert_ids(demo: Demo, server: Gunicorn) -> None:
    for algorithm in (hashes.SHA1(), hashes.SHA256()):
        der = make_request([(demo.cert("good"), demo.issuer_cert)], algorithm)
        for _ in range(2):  # signed, then from memory
            resp = post(server, der).ocsp()
            assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
            assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
            assert isinstance(resp.hash_algorithm, type(algorithm))
            assert resp.serial_number == demo.cert("good").serial_number
    out = ask(demo, server, "good", extra=("-sha256",))
    assert "Response verify OK" in out and ": good" in out, out


def test_requests_about_cas_we_do_not_serve_are_unauthorized(demo: Demo,
                                                            server: Gunicorn) -> None:
    # The offline root has no responder certificate from a ceremony.
    root = x509.load_pem_x509_certificate(demo.root_ca.read_bytes())
    der = make_request([(demo.issuer_cert, root)])
    assert status_of(post(server, der)) == ocsp.OCSPResponseStatus.UNAUTHORIZED
    # A CA that is not ours at all.
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Elsewhere CA")])
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    stranger = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(7).not_valid_before(now)
                .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = make_request([(demo.cert("good"), stranger)])
    assert status_of(post(server, der)) == ocsp.OCSPResponseStatus.UNAUTHORIZED


# -- nonce ------------------------------------------------------------------------------

def test_nonce_is_echoed_and_the_response_is_not_cacheable(demo: Demo, server: Gunicorn) -> None:
    for size in (1, 16, 32):
        nonce = secrets.token_bytes(size)
        reply = post(server, make_request([(demo.cert("good"), demo.issuer_cert)],
                                          nonce=nonce))
        resp = reply.ocsp()
        assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
        echoed = resp.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert echoed == nonce
        assert reply.headers["Cache-Control"] == "no-store"


def test_nonce_outside_1_to_32_octets_is_malformed(demo: Demo, server: Gunicorn) -> None:
    for nonce in (b"", secrets.token_bytes(33), secrets.token_bytes(200)):
        der = make_request([(demo.cert("good"), demo.issuer_cert)], nonce=nonce)
        assert status_of(post(server, der)) == ocsp.OCSPResponseStatus.MALFORMED_REQUEST


# -- HTTP: GET encodings and caching -----------------------------------------------------

def _request_with(demo: Demo, *chars: str) -> tuple[bytes, str]:
    """A no-nonce request (unknown serial) whose base64 contains all of `chars`."""
    for _ in range(200000):
        der = request_by_serial(demo, secrets.randbits(63) | 1)
        text = base64.b64encode(der).decode()
        if all(c in text for c in chars):
            return der, text
    raise AssertionError("no request with those characters")


def _same_answer(reply: Reply, der: bytes) -> None:
    assert reply.status == 200, (reply.status, reply.body[:200])
    resp = ocsp.load_der_ocsp_response(reply.body)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.serial_number == ocsp.load_der_ocsp_request(der).serial_number


def test_get_with_plus_slash_percent_encoding_and_merged_slashes(demo: Demo,
                                                                  server: Gunicorn) -> None:
    der, text = _request_with(demo, "+", "/")
    _same_answer(raw_get(server.port, "/ocsp/" + text), der)
    _same_answer(raw_get(server.port, "/ocsp/" + quote(text, safe="")), der)  # %2B %2F %3D
    _same_answer(raw_get(server.port, "/ocsp/" + text.replace("/", "%2F")), der)
    _same_answer(raw_get(server.port, "/ocsp/" + text.rstrip("=")), der)  # padding dropped
    # A merged "//" can be put back in more than one place with a valid DER result (another
    # serial): the client then gets an answer about a CertID it did not ask for and rejects
    # it. Use a request whose merged form has one reading.
    from ocsp.protocol import parse_request
    from ocsp.wsgi import decode_get_path

    def readings(merged: str) -> int:
        count = 0
        for candidate in decode_get_path(merged):
            try:
                parse_request(candidate, max_certs=16)
                count += 1
            except Exception:  # noqa: BLE001 - not a request: not a reading
                pass
        return count

    for _ in range(50):
        der, text = _request_with(demo, "//")
        if readings(text.replace("//", "/")) == 1:
            break
    _same_answer(raw_get(server.port, "/ocsp/" + text), der)
    _same_answer(raw_get(server.port, "/ocsp/" + text.replace("//", "/")), der)  # merged


def test_get_of_a_good_certificate_matches_post(demo: Demo, server: Gunicorn) -> None:
    der = make_request([(demo.cert("good"), demo.issuer_cert)])
    via_post = post(server, der).ocsp()
    via_get = http(server.base_url + "/ocsp/" + quote(base64.b64encode(der).decode(),
                                                        safe="")).ocsp()
    assert via_get.certificate_status == via_post.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert via_get.this_update_utc == via_post.this_update_utc  # the same pre-signed answer


def test_cache_headers_follow_next_update(demo: Demo, server: Gunicorn) -> None:
    der = make_request([(demo.cert("good"), demo.issuer_cert)])
    reply = http(server.base_url + "/ocsp/" + quote(base64.b64encode(der).decode(), safe=""))
    resp = reply.ocsp()
    h = reply.headers
    next_update, this_update = resp.next_update_utc, resp.this_update_utc
    assert next_update is not None
    assert parsedate_to_datetime(h["Expires"]) == next_update
    assert parsedate_to_datetime(h["Last-Modified"]) == this_update
    control = dict(p.strip().partition("=")[::2] for p in h["Cache-Control"].split(","))
    assert "public" in control and "no-transform" in control
    date = parsedate_to_datetime(h["Date"])
    max_age = int(control["max-age"])
    assert 0 < max_age <= (next_update - date).total_seconds() + 1
    assert h["ETag"].startswith('"') and len(h["ETag"]) > 10
    again = http(server.base_url + "/ocsp/" + quote(base64.b64encode(der).decode(), safe=""),
                 headers={"If-None-Match": h["ETag"]})
    assert again.status == 304


# -- bad requests: never a 500 -----------------------------------------------------------

def test_bad_request_corpus_never_gives_a_500(demo: Demo, server: Gunicorn) -> None:
    good = make_request([(demo.cert("good"), demo.issuer_cert)])
    parsed = aocsp.OCSPRequest.load(good)
    wrong_version = aocsp.OCSPRequest({"tbs_request": aocsp.TBSRequest({
        "version": 3, "request_list": parsed["tbs_request"]["request_list"]})}).dump()
    malformed = ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    cases_post = {
        "truncated": good[:-7],
        "truncated header": good[:3],
        "trailing garbage": good + b"\x00\x01",
        "wrong version": wrong_version,
        "empty": b"",
        "garbage": secrets.token_bytes(300),
        "certificate instead": demo.cert("good").public_bytes(serialization.Encoding.DER),
        "nested junk": b"\x30\x84\xff\xff\xff\xff" + b"\x00" * 10,
    }
    for label, body in cases_post.items():
        assert status_of(post(server, body)) == malformed, label
    for path in ("/ocsp/!!!not-base64$$$", "/ocsp/" + base64.b64encode(b"hello").decode(),
                 "/ocsp/" + base64.b64encode(good[:-4]).decode(), "/ocsp/", "/ocsp",
                 "/ocsp/%ZZ%", "/ocsp/" + "A" * 3000, "/ocsp//", "/ocsp/====",
                 "/ocsp/" + base64.b64encode(wrong_version).decode()):
        reply = raw_get(server.port, path)
        assert status_of(reply) == malformed, path
    assert raw_get(server.port, "/ocsp/" + "A" * 6000).status == 414
    assert post(server, b"\x30" * 20000).status == 413
    assert post(server, good, {"Content-Type": "text/plain"}).status == 415
    assert post(server, good, {"Content-Type": "application/x-www-form-urlencoded"}).status \
        == 415
    assert http(server.base_url + "/ocsp", data=good, method="PUT",
                headers=OCSP_REQUEST).status == 405
    too_many = make_request([(demo.cert("good"), demo.issuer_cert)] * 40)
    assert status_of(post(server, too_many)) == malformed
    assert "Traceback" not in server.log()


# -- pkilint ------------------------------------------------------------------------------

def test_pkilint_finds_no_error_in_our_responses(demo: Demo, server: Gunicorn,
                                                 tmp_path: Path) -> None:
    bodies = {
        "pre-signed good": post(server, make_request([(demo.cert("good"),
                                                       demo.issuer_cert)])).body,
        "sha256": post(server, make_request([(demo.cert("good"), demo.issuer_cert)],
                                            hashes.SHA256())).body,
        "nonce": post(server, make_request([(demo.cert("good"), demo.issuer_cert)],
                                           nonce=secrets.token_bytes(32))).body,
        "unknown": post(server, request_by_serial(demo, 0x5EEDF00D)).body,
        "several": post(server, make_request([(demo.cert("good"), demo.issuer_cert),
                                              (demo.cert("other"), demo.issuer_cert)])).body,
    }
    demo.data.run("cert", "revoke", demo.serial("other"), "--reason", "superseded")
    bodies["revoked"] = eventually(
        lambda: (b := post(server, make_request([(demo.cert("other"), demo.issuer_cert)])
                           ).body) and ocsp.load_der_ocsp_response(b).certificate_status
        == ocsp.OCSPCertStatus.REVOKED and b)
    for label, body in bodies.items():
        assert body, label
        assert lint(tmp_path, body).strip() == "", (label, lint(tmp_path, body))


def test_responder_certificate_profile(demo: Demo, server: Gunicorn) -> None:
    resp = post(server, make_request([(demo.cert("good"), demo.issuer_cert)])).ocsp()
    (responder,) = resp.certificates
    eku = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]
    responder.extensions.get_extension_for_class(x509.OCSPNoCheck)
    assert resp.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(
        responder.public_key()).digest  # type: ignore[arg-type]
    assert responder.issuer == demo.issuer_cert.subject


# -- "unknown" follows an issuance within change_poll_ms -----------------------------------

def _set_cert_der(demo: Demo, serial: str, der: bytes | None) -> bytes | None:
    """Put a certificate back in the state between reservation and signing (no DER: the
    responder says unknown), or out of it. Returns the DER it had."""
    from sqlalchemy import create_engine, text

    url = demo.data.database_url or f"sqlite:///{demo.data.data_dir / 'kyso.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            old = conn.execute(text("SELECT cert_der FROM certificates WHERE serial = :s"),
                               {"s": serial}).scalar_one()
            conn.execute(text("UPDATE certificates SET cert_der = :d WHERE serial = :s"),
                         {"s": serial, "d": der})
        return old  # type: ignore[no-any-return]
    finally:
        engine.dispose()


def test_unknown_becomes_good_promptly_once_issued(demo: Demo, server: Gunicorn) -> None:
    serial = demo.serial("late")
    der = make_request([(demo.cert("late"), demo.issuer_cert)])
    get_url = server.base_url + "/ocsp/" + quote(base64.b64encode(der).decode(), safe="")

    def statuses() -> set[ocsp.OCSPCertStatus]:
        seen = set()
        for _ in range(3):  # reach both workers, and their memory
            nonce = make_request([(demo.cert("late"), demo.issuer_cert)],
                                 nonce=secrets.token_bytes(8))
            for reply in (http(get_url), post(server, der), post(server, nonce)):
                seen.add(reply.ocsp().certificate_status)
        return seen

    cert_der = _set_cert_der(demo, serial, None)
    try:
        assert statuses() == {ocsp.OCSPCertStatus.UNKNOWN}
        reply = http(get_url)
        assert reply.ocsp().certificate_status == ocsp.OCSPCertStatus.UNKNOWN
        control = dict(p.strip().partition("=")[::2] for p in reply.headers["Cache-Control"]
                       .split(","))
        assert int(control["max-age"]) <= 1  # nor held by HTTP caches (nginx) any longer
    finally:
        _set_cert_der(demo, serial, cert_der)
    time.sleep(1.2)  # change_poll_ms (1 s): every process has let go of "unknown"
    assert statuses() == {ocsp.OCSPCertStatus.GOOD}


# -- HTTP details of the worker's fast path (and of gunicorn's own) -------------------------

def test_post_body_in_pieces_expect_continue_and_pipelining(demo: Demo,
                                                             server: Gunicorn) -> None:
    import socket

    der = make_request([(demo.cert("good"), demo.issuer_cert)])
    head = (f"POST /ocsp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/ocsp-request"
            f"\r\nContent-Length: {len(der)}\r\n").encode()

    def exchange(*parts: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
            for part in parts:
                sock.sendall(part)
                time.sleep(0.05)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks)

    def good(answer: bytes) -> None:
        status_line, _, rest = answer.partition(b"\r\n")
        assert status_line.split()[1] == b"200", answer[:300]
        headers, _, body = rest.partition(b"\r\n\r\n")
        length = int([h for h in headers.split(b"\r\n")
                      if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        resp = ocsp.load_der_ocsp_response(body[:length])
        assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD

    good(exchange(head + b"\r\n", der[:10], der[10:]))  # body after the head, in pieces
    answer = exchange(head + b"Expect: 100-continue\r\n\r\n", der)
    good(answer.split(b"\r\n\r\n", 1)[1] if answer.startswith(b"HTTP/1.1 100") else answer)
    good(exchange(head + b"\r\n" + der + head + b"\r\n" + der))  # pipelined: first answered
    reply = raw_http(server.port, b"HEAD /ocsp/" + quote(base64.b64encode(der).decode(),
                                                         safe="").encode()
                     + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.split()[1] in (b"200", b"405"), reply[:200]
    assert "Traceback" not in server.log()


# -- the change feed: ids committed out of order are not missed ------------------------------

def test_change_committed_out_of_id_order_still_reaches_memory(demo: Demo) -> None:
    """On PostgreSQL two revocations can commit out of id order: a responder that has read id
    N+2 must still apply N+1 when it appears (simulated here by inserting the rows so)."""
    from sqlalchemy import text

    from kyso.app import Kyso
    from kyso.settings import load_settings
    from ocsp.refresh import Policy

    environ = {"KYSO_CONFIG": str(demo.data.config), **demo.server_env()}
    kyso = Kyso(load_settings(demo.data.config, environ=environ))
    try:
        from ocsp.responder import Responder

        responder = Responder(kyso.authority, Policy.from_settings(kyso.settings.ocsp))
        serial = demo.serial("good")
        with kyso.authority.engine.connect() as conn:
            ca_id = conn.execute(text("SELECT ca_id FROM certificates WHERE serial = :s"),
                                 {"s": serial}).scalar_one()
        responder.cached(b"first poll")
        # What a live-signed answer reads (no HSM here: one token per test process).
        (status,) = responder._statuses(ca_id, [serial], time.time())
        assert status.kind == "good" and (ca_id, serial) in responder._status  # in memory

        def poll() -> None:
            responder._next_poll = 0
            responder.cached(b"poll")

        poll()
        last = responder._last_change
        assert last is not None
        now = dt_now()
        with kyso.authority.engine.begin() as conn:  # N+2 commits first (another serial)
            conn.execute(text("INSERT INTO ocsp_changes (id, ca_id, serial, at) "
                              "VALUES (:i, :c, :s, :a)"),
                         {"i": last + 2, "c": ca_id, "s": "abc", "a": now})
        poll()
        assert responder._last_change == last + 2 and last + 1 in responder._gaps
        assert (ca_id, serial) in responder._status
        with kyso.authority.engine.begin() as conn:  # then N+1, about our certificate
            conn.execute(text("INSERT INTO ocsp_changes (id, ca_id, serial, at) "
                              "VALUES (:i, :c, :s, :a)"),
                         {"i": last + 1, "c": ca_id, "s": serial, "a": now})
        poll()
        assert (ca_id, serial) not in responder._status and not responder._gaps
        if kyso.authority.engine.dialect.name == "postgresql":  # ids given by hand above
            with kyso.authority.engine.begin() as conn:
                conn.execute(text("SELECT setval(pg_get_serial_sequence('ocsp_changes', 'id'), "
                                  "(SELECT max(id) FROM ocsp_changes))"))
    finally:
        kyso.close()


def dt_now():  # type: ignore[no-untyped-def]
    import datetime as dt

    return dt.datetime.now(dt.UTC)
