"""Support for the OCSP tests: a demo data directory, gunicorn serving it, HTTP and openssl."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from served import Gunicorn, free_port  # noqa: F401 - the OCSP tests import them from here

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def ocsp(self) -> ocsp.OCSPResponse:
        assert self.headers.get("Content-Type") == "application/ocsp-response", self.headers
        return ocsp.load_der_ocsp_response(self.body)


def http(url: str, data: bytes | None = None, headers: dict[str, str] | None = None,
         method: str | None = None) -> Reply:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return Reply(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        return Reply(err.code, dict(err.headers.items()), err.read())


def raw_http(port: int, request: bytes) -> bytes:
    """Send bytes as they are (urllib would normalise the path), return the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def raw_get(port: int, path: str) -> Reply:
    answer = raw_http(port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            "Connection: close\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return Reply(status, headers, body)


def join_requests(builders: list[ocsp.OCSPRequestBuilder], nonce: bytes | None = None) -> bytes:
    """One DER OCSPRequest from builders that each hold one certificate (cryptography's builder
    takes one): joined with asn1crypto, the nonce (optional) once for the whole request."""
    singles = []
    for builder in builders:
        if nonce is not None:
            builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
        singles.append(builder.build().public_bytes(serialization.Encoding.DER))
    if len(singles) == 1:
        return singles[0]
    from asn1crypto import ocsp as aocsp

    first = aocsp.OCSPRequest.load(singles[0])
    tbs = {"request_list": [aocsp.OCSPRequest.load(d)["tbs_request"]["request_list"][0]
                            for d in singles]}
    if nonce is not None:
        tbs["request_extensions"] = first["tbs_request"]["request_extensions"]
    return aocsp.OCSPRequest({"tbs_request": aocsp.TBSRequest(tbs)}).dump()


def make_request(certs: list[tuple[x509.Certificate, x509.Certificate]],
                 algorithm: hashes.HashAlgorithm | None = None,
                 nonce: bytes | None = None) -> bytes:
    """A DER OCSPRequest made by cryptography for (certificate, issuer) pairs."""
    return join_requests([ocsp.OCSPRequestBuilder().add_certificate(
        cert, issuer, algorithm or hashes.SHA1()) for cert, issuer in certs], nonce)


def openssl_ocsp(*args: str | Path) -> str:
    proc = subprocess.run(["openssl", "ocsp", *map(str, args)], capture_output=True,
                          text=True, timeout=60)
    return proc.stdout + proc.stderr
