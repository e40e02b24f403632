"""Revocation data for the signer and the verifier, answered in-process by our OCSP responder
and CRL store (a RevocationSource, see signer/revocation.py)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from ca import store
from ca.crl import latest


class KysoRevocation:
    """OCSP from the responder of the issuing CA when it has one, else the CA's latest CRL."""

    def __init__(self, kyso: Any) -> None:
        self.kyso = kyso
        self._responder: Any = None
        self._lock = threading.Lock()

    def _get_responder(self) -> Any:
        with self._lock:
            if self._responder is None:
                from ocsp.refresh import Policy
                from ocsp.responder import Responder

                self._responder = Responder(self.kyso.authority,
                                            Policy.from_settings(self.kyso.settings.ocsp))
            return self._responder

    def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None:
        cert = x509.load_der_x509_certificate(cert_der)
        issuer = x509.load_der_x509_certificate(issuer_der)
        request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
        answer = self._get_responder().respond(
            request.public_bytes(serialization.Encoding.DER))
        return answer.body if answer.status == "successful" else None

    def crls(self, cert_der: bytes) -> list[bytes]:
        cert = x509.load_der_x509_certificate(cert_der)
        with self.kyso.readers() as s:
            for ca in store.list_cas(s):
                ca_cert = x509.load_der_x509_certificate(ca.cert_der)
                if ca_cert.subject != cert.issuer:
                    continue
                try:
                    cert.verify_directly_issued_by(ca_cert)
                except (ValueError, TypeError, InvalidSignature):  # not this CA
                    continue
                row = latest(s, ca.id, "full")
                return [bytes(row.der)] if row is not None else []
        return []


def trust_anchors(kyso: Any) -> list[x509.Certificate]:
    """The trust anchors of this installation: its active, self-signed CA certificates
    (what `kyso verify` and the web verification page check signatures against)."""
    with kyso.readers() as s:
        records = [(r.status, bytes(r.cert_der)) for r in store.list_cas(s)]
    anchors = []
    for status, der in records:
        cert = x509.load_der_x509_certificate(der)
        if status == "active" and cert.subject == cert.issuer:
            anchors.append(cert)
    return anchors


_sources: weakref.WeakKeyDictionary[Any, KysoRevocation] = weakref.WeakKeyDictionary()
_sources_lock = threading.Lock()


def revocation_source(kyso: Any) -> KysoRevocation:
    """One revocation source per Kyso, that is per (worker) process: its OCSP responder keeps
    its caches between requests."""
    with _sources_lock:
        source = _sources.get(kyso)
        if source is None:
            source = _sources[kyso] = KysoRevocation(kyso)
        return source
