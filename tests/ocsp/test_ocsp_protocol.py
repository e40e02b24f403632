"""The hand-written fast paths of the responder agree with asn1crypto byte for byte: the request
reader (never accepts what the full parser refuses, reads the same), the DER of SingleResponse
and ResponseData, and the worker's HTTP head reader. No server, no HSM."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asn1crypto import core
from asn1crypto import ocsp as aocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from ocsp_support import join_requests

from ocsp.errors import MalformedRequest
from ocsp.protocol import (
    CertRequest,
    ParsedRequest,
    Signer,
    Status,
    _parse_asn1crypto,
    _parse_plain,
    parse_request,
    response_data,
    sign_response,
    single_response,
)
from ocsp.worker import parse_head

NOW = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def _request(serials: list[int], algorithm: hashes.HashAlgorithm,
             nonce: bytes | None = None) -> bytes:
    name_hash, key_hash = b"\x11" * algorithm.digest_size, b"\x22" * algorithm.digest_size
    return join_requests([ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash, key_hash, serial, algorithm) for serial in serials], nonce)


def _corpus() -> list[bytes]:
    out = []
    for algorithm in (hashes.SHA1(), hashes.SHA256(), hashes.SHA384(), hashes.SHA512()):
        out.append(_request([0x1234], algorithm))
        out.append(_request([(1 << 126) + 77], algorithm, nonce=secrets.token_bytes(16)))
    out.append(_request([1, 2, 0x80, 0xFF00], hashes.SHA1(), nonce=b"\x01"))
    out.append(_request([5], hashes.SHA1(), nonce=secrets.token_bytes(32)))
    out.append(_request([5], hashes.SHA1(), nonce=secrets.token_bytes(33)))  # refused
    out.append(_request([5], hashes.SHA1(), nonce=b""))  # refused
    out.append(_request([5] * 20, hashes.SHA1()))  # too many
    # A CertID without NULL hash parameters, a version, a critical extension.
    req = aocsp.OCSPRequest.load(_request([9], hashes.SHA1()))
    cert_id = req["tbs_request"]["request_list"][0]["req_cert"]
    bare = aocsp.CertId({"hash_algorithm": {"algorithm": "sha1"},
                         "issuer_name_hash": cert_id["issuer_name_hash"].native,
                         "issuer_key_hash": cert_id["issuer_key_hash"].native,
                         "serial_number": 9})
    out.append(aocsp.OCSPRequest({"tbs_request": {"request_list": [
        {"req_cert": bare}]}}).dump())
    out.append(aocsp.OCSPRequest({"tbs_request": {"version": "v1", "request_list": [
        {"req_cert": cert_id}]}}).dump())
    out.append(aocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": cert_id}],
                                                  "request_extensions": [{
                                                      "extn_id": "nonce", "critical": True,
                                                      "extn_value": b"\x04\x02ab"}]}}).dump())
    return out


def _outcome(parse: Any, der: bytes) -> Any:
    try:
        parsed = parse(der)
    except MalformedRequest:
        return "malformed"
    return ([(c.hash_algorithm, c.issuer_name_hash, c.issuer_key_hash, c.serial,
              c.cert_id_der) for c in parsed.certs], parsed.nonce_extn_value)


def test_the_hand_reader_agrees_with_asn1crypto_also_on_mutations() -> None:
    rng = random.Random(4)
    full = lambda d: _parse_asn1crypto(d, max_certs=16)  # noqa: E731
    fast = lambda d: parse_request(d, max_certs=16)  # noqa: E731
    handled = 0
    for der in _corpus():
        assert _outcome(fast, der) == _outcome(full, der), der.hex()
        handled += _parse_plain(der) is not None
        cases = [der[:i] for i in range(len(der))] + [der + b"\x00"]
        for i in range(len(der)):
            for value in {der[i] ^ 0x01, der[i] ^ 0x80, 0x00, 0xFF, rng.randrange(256)}:
                cases.append(der[:i] + bytes((value,)) + der[i + 1:])
        for case in cases:
            assert _outcome(fast, case) == _outcome(full, case), case.hex()
    assert handled >= 12  # the usual requests do take the hand path


def _asn1crypto_single(cert_id_der: bytes, status: Status, this: datetime,
                       until: datetime) -> bytes:
    """The reference: what the responder built with asn1crypto before."""
    def t(m: datetime) -> datetime:
        return m.replace(microsecond=0)

    if status.kind == "good":
        cs = aocsp.CertStatus(name="good", value=None)
    elif status.kind == "revoked":
        assert status.revoked_at is not None
        info: dict[str, Any] = {"revocation_time": t(status.revoked_at)}
        if status.reason and status.reason != "unspecified":
            info["revocation_reason"] = x509.ReasonFlags(status.reason).name
        cs = aocsp.CertStatus(name="revoked", value=aocsp.RevokedInfo(info))
    else:
        cs = aocsp.CertStatus(name="unknown", value=None)
    return aocsp.SingleResponse({"cert_id": aocsp.CertId.load(cert_id_der), "cert_status": cs,
                                 "this_update": t(this), "next_update": t(until)}).dump()


@pytest.fixture(scope="module")
def signer() -> Signer:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "responder")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(3).not_valid_before(NOW)
            .not_valid_after(NOW + timedelta(days=1)).sign(key, hashes.SHA256()))
    return Signer(1, key, cert.public_bytes(serialization.Encoding.DER), "03",
                  NOW + timedelta(days=1))


def test_hand_encoded_responses_equal_asn1crypto(signer: Signer) -> None:
    statuses = [Status("good"), Status("unknown"), Status("revoked", NOW, None),
                Status("revoked", NOW - timedelta(days=3, microseconds=5), "unspecified")]
    statuses += [Status("revoked", NOW, flag.value) for flag in x509.ReasonFlags
                 if flag not in (x509.ReasonFlags.unspecified,)]
    for der in _corpus()[:9]:
        request = _parse_asn1crypto(der, max_certs=16)
        singles, reference = [], []
        for cert, status in zip(request.certs, statuses, strict=False):
            until = NOW + timedelta(hours=5, seconds=1)
            singles.append(single_response(cert.cert_id_der, status, NOW, until))
            reference.append(_asn1crypto_single(cert.cert_id_der, status, NOW, until))
            assert singles[-1] == reference[-1], status
        for nonce in (None, request.nonce_extn_value, b"\x04\x01\x07"):
            data: dict[str, Any] = {
                "responder_id": signer.responder_id, "produced_at": NOW.replace(microsecond=0),
                "responses": [aocsp.SingleResponse.load(s) for s in reference]}
            if nonce is not None:
                ext = aocsp.ResponseDataExtension({"extn_id": "nonce", "critical": False})
                ext["extn_value"] = core.ParsableOctetString(nonce)
                data["response_extensions"] = [ext]
            assert response_data(signer, singles, NOW, nonce) == aocsp.ResponseData(data).dump()
    for status in statuses:
        cert_id = _parse_asn1crypto(_corpus()[0], max_certs=1).certs[0].cert_id_der
        body = sign_response(signer, [single_response(cert_id, status, NOW, NOW)], NOW,
                             b"\x04\x02ab")
        parsed = ocsp.load_der_ocsp_response(body)  # cryptography reads it, signature checks
        signer.certificate  # noqa: B018
        public = x509.load_der_x509_certificate(signer.cert_der).public_key()
        public.verify(parsed.signature, parsed.tbs_response_bytes,  # type: ignore[union-attr]
                      ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg]


def test_parsed_request_types() -> None:
    parsed = parse_request(_request([77], hashes.SHA256(), nonce=b"n" * 8), max_certs=4)
    assert isinstance(parsed, ParsedRequest)
    (cert,) = parsed.certs
    assert isinstance(cert, CertRequest) and cert.serial == 77 and cert.serial_hex == "4d"
    assert cert.cert_id.dump() == cert.cert_id_der


def test_http_head_reader() -> None:
    head = (b"POST /ocsp HTTP/1.0\r\nContent-length: 95\r\nContent-Type: "
            b"application/ocsp-request\r\nHost: x\r\n\r\nBODY")
    method, target, version, headers, end = parse_head(head)  # type: ignore[misc]
    assert (method, target, version) == (b"POST", b"/ocsp", b"HTTP/1.0")
    assert headers[b"content-length"] == b"95" and head[end:] == b"BODY"
    for bad in (b"GET /ocsp HTTP/1.1\r\nHost: x\r\n",  # incomplete
                b"GET /ocsp HTTP/2\r\n\r\n", b"GET  /ocsp HTTP/1.1\r\n\r\n",
                b"GET ocsp HTTP/1.1\r\n\r\n", b"GET /oc\x01sp HTTP/1.1\r\n\r\n",
                b"GET /ocsp HTTP/1.1\r\nHost : x\r\n\r\n",
                b"GET /ocsp HTTP/1.1\r\nNoColon\r\n\r\n",
                b"GET /ocsp HTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n",
                b"POST /ocsp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"POST /ocsp HTTP/1.1\r\nExpect: 100-continue\r\n\r\n"):
        assert parse_head(bad) is None, bad
