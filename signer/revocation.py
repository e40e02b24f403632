"""Revocation data (OCSP responses, CRLs) from an in-process source, as pyHanko fetchers.

The signer and the verifier never reach the network themselves: whoever wires them (kyso/)
hands in a RevocationSource that answers from our own OCSP responder and CRL store. pyHanko's
validation context pulls through these fetchers exactly what the path it builds needs, and
B-LT signing embeds what was pulled in the document's DSS.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from datetime import timedelta
from typing import Any, Protocol

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.api import (
    CertificateFetcher,
    CRLFetcher,
    FetcherBackend,
    Fetchers,
    OCSPFetcher,
)

# pyHanko fixes the validation time before it fetches, and our responder signs a response on a
# miss with thisUpdate = now: later than the validation time by however long the work between
# took. pyHanko's default tolerance (1 s) turned such a fresh response into "not yet valid" on
# a loaded machine. One minute covers that and ordinary clock skew between hosts.
CLOCK_TOLERANCE = timedelta(minutes=1)


class RevocationSource(Protocol):
    """Answers for certificates of our own PKI. Both return DER; None / [] when the source has
    nothing for that certificate (it is not ours, or its CA publishes nothing)."""

    def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None: ...

    def crls(self, cert_der: bytes) -> list[bytes]: ...


class _Ocsp(OCSPFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self.source = source
        self._by_cert: dict[bytes, list[asn1_ocsp.OCSPResponse]] = {}

    async def fetch(self, cert: Any, authority: Any) -> asn1_ocsp.OCSPResponse:
        issuer = getattr(authority, "certificate", None)
        if not isinstance(cert, asn1_x509.Certificate) or issuer is None:
            raise OCSPFetchError("no OCSP source for this certificate")
        der = self.source.ocsp(cert.dump(), issuer.dump())
        if der is None:
            raise OCSPFetchError(f"no OCSP answer for {cert.subject.human_friendly}")
        response = asn1_ocsp.OCSPResponse.load(der)
        self._by_cert.setdefault(cert.issuer_serial, []).append(response)
        return response

    def fetched_responses(self) -> Iterable[asn1_ocsp.OCSPResponse]:
        return [r for rs in self._by_cert.values() for r in rs]

    def fetched_responses_for_cert(self, cert: Any) -> Iterable[asn1_ocsp.OCSPResponse]:
        return self._by_cert.get(cert.issuer_serial, [])


class _Crl(CRLFetcher):
    def __init__(self, source: RevocationSource) -> None:
        self.source = source
        self._by_cert: dict[bytes, list[asn1_crl.CertificateList]] = {}

    async def fetch(self, cert: Any, *, use_deltas: Any = None) -> Iterable[
        asn1_crl.CertificateList
    ]:
        if not isinstance(cert, asn1_x509.Certificate):
            raise CRLFetchError("no CRL source for this certificate")
        key = cert.issuer_serial
        if key not in self._by_cert:
            ders = self.source.crls(cert.dump())
            if not ders:
                raise CRLFetchError(f"no CRL for {cert.subject.human_friendly}")
            self._by_cert[key] = [asn1_crl.CertificateList.load(d) for d in ders]
        return self._by_cert[key]

    def fetched_crls(self) -> Iterable[asn1_crl.CertificateList]:
        seen: dict[bytes, asn1_crl.CertificateList] = {}
        for crls in self._by_cert.values():
            for c in crls:
                seen.setdefault(c.dump(), c)
        return list(seen.values())

    def fetched_crls_for_cert(self, cert: Any) -> Iterable[asn1_crl.CertificateList]:
        return self._by_cert[cert.issuer_serial]


class _NoCerts(CertificateFetcher):
    """Issuer certificates come with the signature or the trust anchors, never from AIA."""

    async def fetch_cert_issuers(self, cert: Any) -> AsyncGenerator[asn1_x509.Certificate, None]:
        return
        yield  # pragma: no cover - makes this an async generator

    async def fetch_crl_issuers(self, certificate_list: Any) -> AsyncGenerator[
        asn1_x509.Certificate, None
    ]:
        return
        yield  # pragma: no cover

    def fetched_certs(self) -> Iterable[asn1_x509.Certificate]:
        return []


class InProcessFetchers(FetcherBackend):
    """A pyHanko FetcherBackend over a RevocationSource (no network)."""

    def __init__(self, source: RevocationSource) -> None:
        self.source = source

    def get_fetchers(self) -> Fetchers:
        return Fetchers(ocsp_fetcher=_Ocsp(self.source), crl_fetcher=_Crl(self.source),
                        cert_fetcher=_NoCerts())
