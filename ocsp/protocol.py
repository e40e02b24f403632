"""OCSP wire format (RFC 6960, RFC 5019 profile, RFC 8954 nonces): parse requests, build and
sign responses. asn1crypto throughout: cryptography's request parser knows one certificate per
request and its builder one SingleResponse per response; we need several."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from asn1crypto import core
from asn1crypto import ocsp as aocsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from ocsp.errors import MalformedRequest

NONCE_OID = "1.3.6.1.5.5.7.48.1.2"
# CertID hash algorithms we match (asn1crypto names -> hashlib names).
HASHES = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}
MAX_NONCE = 32  # RFC 8954 2.1: Nonce ::= OCTET STRING (SIZE(1..32))

# Unsigned answers (RFC 6960 4.2.1): the whole OCSPResponse is the status.
MALFORMED = aocsp.OCSPResponse({"response_status": "malformed_request"}).dump()
INTERNAL_ERROR = aocsp.OCSPResponse({"response_status": "internal_error"}).dump()
TRY_LATER = aocsp.OCSPResponse({"response_status": "try_later"}).dump()
UNAUTHORIZED = aocsp.OCSPResponse({"response_status": "unauthorized"}).dump()


@dataclass(frozen=True)
class CertRequest:
    """One CertID of a request: hash algorithm, issuer name and key hashes, serial."""

    hash_algorithm: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    cert_id_der: bytes  # the CertID as the client sent it, DER: echoed in the SingleResponse

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")

    @property
    def cert_id(self) -> aocsp.CertId:
        return aocsp.CertId.load(self.cert_id_der)


@dataclass(frozen=True)
class ParsedRequest:
    certs: tuple[CertRequest, ...]
    # The nonce extension's extnValue contents as received (echoed byte for byte), or None.
    nonce_extn_value: bytes | None


def parse_request(der: bytes, *, max_certs: int) -> ParsedRequest:
    """Parse a DER OCSPRequest; MalformedRequest for anything RFC 6960 / 8954 refuses."""
    if not der:
        raise MalformedRequest("empty request")
    quick = _parse_plain(der)
    if quick is not None:
        if len(quick.certs) > max_certs:
            raise MalformedRequest(f"more than {max_certs} certificates in one request")
        if quick.nonce_extn_value is not None:
            check_nonce(quick.nonce_extn_value)
        return quick
    return _parse_asn1crypto(der, max_certs=max_certs)


def _parse_asn1crypto(der: bytes, *, max_certs: int) -> ParsedRequest:
    try:
        request = aocsp.OCSPRequest.load(der, strict=True)
        tbs = request["tbs_request"]
        if tbs["version"].native != "v1":
            raise MalformedRequest("unsupported OCSP request version")
        certs = []
        for item in tbs["request_list"]:
            cert_id = item["req_cert"]
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
            if algorithm not in HASHES:
                raise MalformedRequest(f"unsupported CertID hash algorithm {algorithm}")
            serial = cert_id["serial_number"].native
            name_hash = cert_id["issuer_name_hash"].native
            key_hash = cert_id["issuer_key_hash"].native
            size = hashlib.new(HASHES[algorithm]).digest_size
            if len(name_hash) != size or len(key_hash) != size:
                raise MalformedRequest("CertID hash of the wrong length")
            for ext in item["single_request_extensions"]:
                if ext["critical"].native:
                    raise MalformedRequest("unsupported critical request extension")
            certs.append(CertRequest(algorithm, name_hash, key_hash, serial, cert_id.dump()))
        if not certs:
            raise MalformedRequest("no certificate in the request")
        if len(certs) > max_certs:
            raise MalformedRequest(f"more than {max_certs} certificates in one request")
        nonce = None
        for ext in tbs["request_extensions"]:
            oid = ext["extn_id"].dotted
            if oid == NONCE_OID:
                if nonce is not None:
                    raise MalformedRequest("two nonce extensions")
                nonce = ext["extn_value"].contents
                check_nonce(nonce)
            elif ext["critical"].native:
                raise MalformedRequest("unsupported critical request extension")
        # Touch the optional signature so a broken one is refused here, not later.
        request["optional_signature"].native  # noqa: B018
    except MalformedRequest:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        raise MalformedRequest("the request is not a DER OCSPRequest") from None
    return ParsedRequest(tuple(certs), nonce)


# DER of the CertID hash algorithm OIDs we match (the OBJECT IDENTIFIER TLV).
_HASH_OIDS = {core.ObjectIdentifier(oid).dump(): name for oid, name in (
    ("1.3.14.3.2.26", "sha1"), ("2.16.840.1.101.3.4.2.1", "sha256"),
    ("2.16.840.1.101.3.4.2.2", "sha384"), ("2.16.840.1.101.3.4.2.3", "sha512"))}
_HASH_SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}


def _read(der: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the TLV at `pos`; ValueError unless it is
    a low tag number with a minimally encoded definite length that fits before `end`."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, first = der[pos], der[pos + 1]
    if tag & 0x1F == 0x1F:
        raise ValueError("high tag number")
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > end:
            raise ValueError("bad length")
        length = int.from_bytes(der[pos:pos + n], "big")
        if length < 0x80 or der[pos] == 0:
            raise ValueError("length not minimal")
        pos += n
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _parse_plain(der: bytes) -> ParsedRequest | None:
    """The usual request, read by hand (asn1crypto costs more than the HSM signature): no
    version, requestor name, signature or single-request extensions; CertIDs with a hash we
    match and a positive minimally encoded serial; request extensions without a critical
    flag. None for anything else -- asn1crypto then judges it, so this never accepts what
    the full parser refuses."""
    try:
        n = len(der)
        tag, pos, end = _read(der, 0, n)
        if tag != 0x30 or end != n:
            return None
        tag, pos, tbs_end = _read(der, pos, end)
        if tag != 0x30 or tbs_end != end:  # an optionalSignature follows: full parser
            return None
        tag, pos, list_end = _read(der, pos, tbs_end)
        if tag != 0x30:
            return None  # version, requestorName: full parser
        certs = []
        while pos < list_end:
            tag, rpos, rend = _read(der, pos, list_end)
            if tag != 0x30:
                return None
            tag, cpos, cend = _read(der, rpos, rend)
            if tag != 0x30 or cend != rend:  # singleRequestExtensions: full parser
                return None
            tag, apos, aend = _read(der, cpos, cend)
            if tag != 0x30:
                return None
            tag, opos, oend = _read(der, apos, aend)
            algorithm = _HASH_OIDS.get(der[apos:oend]) if tag == 0x06 else None
            if algorithm is None or not (oend == aend or der[oend:aend] == b"\x05\x00"):
                return None
            size = _HASH_SIZES[algorithm]
            tag, npos, nend = _read(der, aend, cend)
            if tag != 0x04 or nend - npos != size:
                return None
            tag, kpos, kend = _read(der, nend, cend)
            if tag != 0x04 or kend - kpos != size:
                return None
            tag, spos, send = _read(der, kend, cend)
            if (tag != 0x02 or send != cend or send == spos or der[spos] & 0x80
                    or (der[spos] == 0 and send - spos > 1 and not der[spos + 1] & 0x80)):
                return None
            certs.append(CertRequest(algorithm, der[npos:nend], der[kpos:kend],
                                     int.from_bytes(der[spos:send], "big"), der[rpos:cend]))
            pos = rend
        if not certs:
            return None
        nonce = None
        pos = list_end
        if pos < tbs_end:
            tag, epos, eend = _read(der, pos, tbs_end)  # [2] EXPLICIT Extensions
            if tag != 0xA2 or eend != tbs_end:
                return None
            tag, pos, exts_end = _read(der, epos, eend)
            if tag != 0x30 or exts_end != eend or pos == exts_end:
                return None
            while pos < exts_end:
                tag, xpos, xend = _read(der, pos, exts_end)
                if tag != 0x30:
                    return None
                tag, opos, oend = _read(der, xpos, xend)
                if tag != 0x06 or der[xpos:oend] != _NONCE_OID or nonce is not None:
                    return None  # another extension, or two nonces: full parser
                tag, vpos, vend = _read(der, oend, xend)
                if tag != 0x04 or vend != xend:  # a critical flag: full parser
                    return None
                tag, _, inner_end = _read(der, vpos, vend)
                if tag != 0x04 or inner_end != vend:  # not one OCTET STRING: full parser
                    return None
                nonce = der[vpos:vend]
                pos = xend
        elif pos != tbs_end:
            return None
        return ParsedRequest(tuple(certs), nonce)
    except (ValueError, IndexError):
        return None


def check_nonce(extn_value: bytes) -> None:
    """RFC 8954: the Nonce is an OCTET STRING of 1 to 32 octets; anything else is refused
    with malformedRequest. (Some old clients put the bytes without the OCTET STRING: their
    length counts the same way.)"""
    value = extn_value
    try:
        inner = core.OctetString.load(extn_value, strict=True)
        value = inner.native
    except (ValueError, TypeError):
        pass
    if not 1 <= len(value) <= MAX_NONCE:
        raise MalformedRequest(f"nonce of {len(value)} octets (RFC 8954: 1 to {MAX_NONCE})")


@dataclass(frozen=True)
class IssuerHashes:
    """The (algorithm, name hash, key hash) triples by which CertIDs name a CA."""

    triples: tuple[tuple[str, bytes, bytes], ...]

    @classmethod
    def of(cls, cert_der: bytes) -> IssuerHashes:
        cert = ax509.Certificate.load(cert_der)
        name = cert.subject.dump()
        key = bytes(cert.public_key["public_key"])
        return cls(tuple((alg, hashlib.new(h, name).digest(), hashlib.new(h, key).digest())
                         for alg, h in HASHES.items()))


class Signer:
    """A delegated responder: its HSM key and its certificate (included in every response)."""

    def __init__(self, ca_id: int, key: Any, cert_der: bytes, serial: str,
                 not_after: datetime) -> None:
        self.ca_id = ca_id
        self.key = key
        self.cert_der = cert_der
        self.serial = serial
        self.not_after = not_after
        self.certificate = ax509.Certificate.load(cert_der)
        self.key_hash = hashlib.sha1(bytes(self.certificate.public_key["public_key"])).digest()
        public = x509.load_der_x509_certificate(cert_der).public_key()
        if isinstance(public, ec.EllipticCurvePublicKey):
            big = public.curve.key_size >= 384
            self.hash: hashes.HashAlgorithm = hashes.SHA384() if big else hashes.SHA256()
            self.algorithm = "sha384_ecdsa" if big else "sha256_ecdsa"
            self._sign_args: tuple[Any, ...] = (ec.ECDSA(self.hash),)
        elif isinstance(public, rsa.RSAPublicKey):
            self.hash = hashes.SHA256()
            self.algorithm = "sha256_rsa"
            self._sign_args = (padding.PKCS1v15(), self.hash)
        else:  # pragma: no cover - the profile allows only RSA and EC keys
            raise ValueError("responder key must be RSA or EC")
        self.responder_id = aocsp.ResponderId(name="by_key", value=self.key_hash)
        # ResponderID is an untagged CHOICE in ResponseData; byKey is [2] EXPLICIT KeyHash.
        self.responder_id_der = _tlv(0xA2, _tlv(0x04, self.key_hash))
        from asn1crypto import algos

        self.algorithm_der = algos.SignedDigestAlgorithm({"algorithm": self.algorithm}).dump()
        self.certs_der = _tlv(0xA0, _tlv(0x30, cert_der))  # certs [0] EXPLICIT SEQUENCE OF

    def sign(self, data: bytes) -> bytes:
        return bytes(self.key.sign(data, *self._sign_args))


@dataclass(frozen=True)
class Status:
    """What one SingleResponse says: good, revoked (time, reason) or unknown."""

    kind: str  # good | revoked | unknown
    revoked_at: datetime | None = None
    reason: str | None = None  # cryptography ReasonFlags value, e.g. "keyCompromise"


GOOD = Status("good")
UNKNOWN = Status("unknown")


def cert_id_for(hash_algorithm: str, issuer: IssuerHashes, serial: int) -> aocsp.CertId:
    """The CertID a client computes for `serial` with `hash_algorithm` (pre-signing)."""
    for alg, name_hash, key_hash in issuer.triples:
        if alg == hash_algorithm:
            return aocsp.CertId({
                "hash_algorithm": {"algorithm": alg, "parameters": core.Null()},
                "issuer_name_hash": name_hash, "issuer_key_hash": key_hash,
                "serial_number": serial})
    raise ValueError(f"unsupported hash algorithm {hash_algorithm}")


def single_response(cert_id: aocsp.CertId | bytes, status: Status, this_update: datetime,
                    next_update: datetime) -> bytes:
    """One SingleResponse, DER (hand-encoded: asn1crypto costs more than the HSM signature).
    `cert_id` is echoed as given (DER bytes, or an asn1crypto CertId)."""
    cert_id_der = cert_id if isinstance(cert_id, bytes) else cert_id.dump()
    return _tlv(0x30, cert_id_der + cert_status_der(status) + generalized_time(this_update)
                + _tlv(0xA0, generalized_time(next_update)))


# CRLReason codes (RFC 5280 5.3.1) by cryptography's ReasonFlags value.
_REASON_CODES = {"unspecified": 0, "keyCompromise": 1, "cACompromise": 2,
                 "affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5,
                 "certificateHold": 6, "removeFromCRL": 8, "privilegeWithdrawn": 9,
                 "aACompromise": 10}


def cert_status_der(status: Status) -> bytes:
    """CertStatus: good [0] IMPLICIT NULL, revoked [1] IMPLICIT RevokedInfo (time and, unless
    unspecified, [0] EXPLICIT CRLReason), unknown [2] IMPLICIT NULL."""
    if status.kind == "good":
        return b"\x80\x00"
    if status.kind == "revoked":
        assert status.revoked_at is not None
        info = generalized_time(status.revoked_at)
        if status.reason and status.reason != "unspecified":
            code = _REASON_CODES[x509.ReasonFlags(status.reason).value]
            info += b"\xa0\x03\x0a\x01" + bytes((code,))
        return _tlv(0xA1, info)
    return b"\x82\x00"


def generalized_time(moment: datetime) -> bytes:
    """GeneralizedTime, UTC, whole seconds (RFC 5280 4.1.2.5.2)."""
    moment = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return b"\x18\x0f" + b"%04d%02d%02d%02d%02d%02dZ" % (
        moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)


def response_data(signer: Signer, singles: list[bytes], produced_at: datetime,
                  nonce_extn_value: bytes | None = None) -> bytes:
    """ResponseData DER: version v1 (the default, omitted), responderID byKey, producedAt,
    responses, and the nonce extension (critical FALSE, the default, omitted) if any."""
    parts = signer.responder_id_der + generalized_time(produced_at) + _tlv(0x30, b"".join(singles))
    if nonce_extn_value is not None:
        ext = _tlv(0x30, _NONCE_OID + _tlv(0x04, nonce_extn_value))
        parts += _tlv(0xA1, _tlv(0x30, ext))
    return _tlv(0x30, parts)


def sign_response(signer: Signer, singles: list[bytes], produced_at: datetime,
                  nonce_extn_value: bytes | None = None) -> bytes:
    """A successful OCSPResponse: BasicOCSPResponse signed by the responder's HSM key, with
    responderID byKey and the responder certificate."""
    tbs = response_data(signer, singles, produced_at, nonce_extn_value)
    signature = signer.sign(tbs)
    # The layers around ResponseData never change but for the signature: assembled from
    # DER parts asn1crypto encoded once per signer (re-encoding them costs more than signing).
    basic = _tlv(0x30, tbs + signer.algorithm_der + _tlv(0x03, b"\x00" + signature)
                 + signer.certs_der)
    return _tlv(0x30, _SUCCESSFUL + _tlv(0xA0, _tlv(0x30, _BASIC_OID + _tlv(0x04, basic))))


_SUCCESSFUL = b"\x0a\x01\x00"  # OCSPResponseStatus ENUMERATED successful (0)
_BASIC_OID = core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1").dump()  # id-pkix-ocsp-basic
_NONCE_OID = core.ObjectIdentifier(NONCE_OID).dump()


def _tlv(tag: int, content: bytes) -> bytes:
    """One DER tag-length-value (definite length)."""
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content
