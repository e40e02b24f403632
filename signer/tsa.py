"""The RFC 3161 timestamp authority: checks a TimeStampReq, records and signs a TSTInfo.

Given a key (an HSM key, or any cryptography private key), its `timestamping` certificate and
the chain above it; where they come from is the caller's business (kyso/app.py). Every token
is recorded in a ledger *before* it is signed, so a serial is never issued twice and every
token ever signed has a row (the ledger is the TSA's record; the audit log is not written per
token).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from signer.errors import TsaRejected, TsaUnavailable

log = logging.getLogger("kyso.signer.tsa")

# Message-imprint algorithms accepted and their digest lengths. SHA-1 (and anything else) is
# refused with badAlg: a SHA-1 imprint no longer binds the data (chosen-prefix collisions).
IMPRINT_LENGTHS = {"sha256": 32, "sha384": 48, "sha512": 64}
_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}
SERIAL_BITS = 128
_SERIAL_ATTEMPTS = 5

# PKIFailureInfo names (asn1crypto's spelling of RFC 3161's bits).
BAD_ALG = "bad_alg"
BAD_REQUEST = "bad_request"
BAD_DATA_FORMAT = "bad_data_format"
TIME_NOT_AVAILABLE = "time_not_available"
UNACCEPTED_POLICY = "unaccepted_policy"
UNACCEPTED_EXTENSION = "unaccepted_extensions"
SYSTEM_FAILURE = "system_failure"


@dataclass(frozen=True)
class TsaPolicy:
    """What the TSA states and accepts (from settings [tsa])."""

    policy_oid: str
    accuracy_seconds: int = 1
    accuracy_millis: int = 0
    accuracy_micros: int = 0
    include_chain: bool = True  # certReq: the TSA certificate and the CAs above it (no root)
    max_request_bytes: int = 4096


@dataclass(frozen=True)
class LedgerEntry:
    """One token as recorded before it is signed."""

    serial: str  # lowercase hex
    gen_time: datetime
    policy: str
    hash_algorithm: str
    message_imprint: str  # lowercase hex
    tsa_certificate: str  # serial of the signing certificate, lowercase hex


class DuplicateSerial(Exception):
    """The ledger already holds this serial (the caller draws another)."""


class TokenLedger(Protocol):
    def record(self, entry: LedgerEntry) -> None:
        """Store the entry durably; raise DuplicateSerial if the serial exists."""


class SqlTokenLedger:
    """The ledger in a database table, through a SQLAlchemy sessionmaker and an ORM class with
    the LedgerEntry fields plus `created_at` (ca.models.TsaTokenRecord, passed in by the
    composition root: signer does not import ca). The serial column is unique."""

    def __init__(self, sessions: Any, model: Any) -> None:
        self.sessions = sessions
        self.model = model

    def record(self, entry: LedgerEntry) -> None:
        from sqlalchemy.exc import IntegrityError

        try:
            with self.sessions.begin() as s:
                s.add(self.model(
                    serial=entry.serial, gen_time=entry.gen_time, policy=entry.policy,
                    hash_algorithm=entry.hash_algorithm, message_imprint=entry.message_imprint,
                    tsa_certificate=entry.tsa_certificate, created_at=datetime.now(UTC),
                ))
        except IntegrityError as exc:
            raise DuplicateSerial(entry.serial) from exc


@dataclass(frozen=True)
class TimestampRequest:
    """A checked request."""

    hash_algorithm: str
    message_imprint: bytes
    nonce: int | None = None
    cert_req: bool = False
    req_policy: str | None = None
    # The request's own AlgorithmIdentifier, copied into TSTInfo unchanged (with or without
    # NULL parameters) so strict clients compare it equal.
    algorithm: Any = None


@dataclass(frozen=True)
class Timestamp:
    """A granted timestamp: the token (CMS ContentInfo) and the whole TimeStampResp, DER."""

    token: bytes
    response: bytes
    serial: int
    gen_time: datetime
    policy: str

    @property
    def serial_hex(self) -> str:
        return format(self.serial, "x")


class _StatusOnly(core.Sequence):
    """TimeStampResp without a token (asn1crypto's TimeStampResp wrongly requires one)."""

    _fields = [("status", tsp.PKIStatusInfo)]


def rejection(failure: str, text: str) -> bytes:
    """A TimeStampResp with status rejection, the failure bit and a status string, DER."""
    return _StatusOnly({"status": {
        "status": "rejection",
        "status_string": [text],
        "fail_info": tsp.PKIFailureInfo({failure}),
    }}).dump()


def parse_request(der: bytes, policy: TsaPolicy) -> TimestampRequest:
    """Decode and check a TimeStampReq; TsaRejected carries the failure bit if it is wrong."""
    if not der:
        raise TsaRejected(BAD_DATA_FORMAT, "empty request")
    if len(der) > policy.max_request_bytes:
        raise TsaRejected(BAD_REQUEST, f"request larger than {policy.max_request_bytes} bytes")
    try:
        req = tsp.TimeStampReq.load(der, strict=True)
        req.native  # noqa: B018 - asn1crypto parses lazily: make every field fail here
        version = req["version"].native
        imprint = req["message_imprint"]
        algorithm = imprint["hash_algorithm"]
        alg_name = algorithm["algorithm"].native
        params = algorithm["parameters"]
        hashed = imprint["hashed_message"].native
        req_policy = req["req_policy"].dotted if req["req_policy"].native is not None else None
        nonce = req["nonce"].native
        cert_req = bool(req["cert_req"].native)
        extensions = req["extensions"].native
    except TsaRejected:
        raise
    except Exception:  # noqa: BLE001 - any decoding error is the client's: badDataFormat
        raise TsaRejected(BAD_DATA_FORMAT, "not a DER TimeStampReq") from None
    if version != "v1":
        raise TsaRejected(BAD_REQUEST, f"unsupported version {version!r} (only v1)")
    if alg_name not in IMPRINT_LENGTHS:
        raise TsaRejected(BAD_ALG, f"hash algorithm {alg_name} not accepted "
                          f"(use {', '.join(IMPRINT_LENGTHS)})")
    if params.native is not None:
        raise TsaRejected(BAD_DATA_FORMAT, "hash algorithm parameters must be absent or NULL")
    if len(hashed) != IMPRINT_LENGTHS[alg_name]:
        raise TsaRejected(BAD_DATA_FORMAT, f"message imprint of {len(hashed)} bytes; "
                          f"{alg_name} has {IMPRINT_LENGTHS[alg_name]}")
    if req_policy is not None and req_policy != policy.policy_oid:
        raise TsaRejected(UNACCEPTED_POLICY, f"policy {req_policy} not offered "
                          f"(this TSA: {policy.policy_oid})")
    if extensions:
        raise TsaRejected(UNACCEPTED_EXTENSION, "request extensions are not supported")
    return TimestampRequest(alg_name, hashed, nonce, cert_req, req_policy, algorithm)


def check_tsa_certificate(certificate: x509.Certificate, key: Any) -> None:
    """The certificate must be a TSA certificate (RFC 3161 2.3: extended key usage present,
    critical, id-kp-timeStamping only) for this key; TsaUnavailable says what is wrong."""
    try:
        eku = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        raise TsaUnavailable("the TSA certificate has no extended key usage") from None
    if not eku.critical or list(eku.value) != [ExtendedKeyUsageOID.TIME_STAMPING]:
        raise TsaUnavailable("the TSA certificate's extended key usage must be "
                             "id-kp-timeStamping alone and critical")
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != certificate.public_key().public_bytes(*spki):
        raise TsaUnavailable("the TSA certificate is not for the TSA key")
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TsaUnavailable("the TSA key must be ECDSA or RSA")


class TimestampAuthority:
    """Answers TimeStampReqs (`respond`, never raises) and stamps in-process (`timestamp`)."""

    def __init__(self, key: Any, certificate: x509.Certificate,
                 chain: Sequence[x509.Certificate], policy: TsaPolicy, ledger: TokenLedger,
                 clock: Callable[[], datetime] | None = None) -> None:
        check_tsa_certificate(certificate, key)
        self.key = key
        self.certificate = certificate
        self.policy = policy
        self.ledger = ledger
        self.clock = clock or (lambda: datetime.now(UTC))
        der = serialization.Encoding.DER
        self._cert_der = certificate.public_bytes(der)
        self._cert_asn1 = ax509.Certificate.load(self._cert_der)
        self._cert_serial_hex = format(certificate.serial_number, "x")
        # The CAs above the TSA certificate, without self-signed roots (the relying party has
        # its trust anchor; sending it proves nothing).
        self._chain_asn1 = [ax509.Certificate.load(c.public_bytes(der)) for c in chain
                            if c.subject != c.issuer and c != certificate]
        if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
            self._digest = "sha384"
        else:
            self._digest = "sha256"
        self._tsa_name = ax509.GeneralName(
            name="directory_name", value=self._cert_asn1["tbs_certificate"]["subject"])
        ess = tsp.SigningCertificateV2({"certs": [{
            # hashAlgorithm omitted: its DEFAULT is sha256 (RFC 5035), what is used here.
            "cert_hash": hashlib.sha256(self._cert_der).digest(),
            "issuer_serial": {
                "issuer": [ax509.GeneralName(
                    name="directory_name", value=self._cert_asn1["tbs_certificate"]["issuer"])],
                "serial_number": certificate.serial_number,
            },
        }]})
        self._ess = ess

    # -- the two entry points -------------------------------------------------------------

    def respond(self, request_der: bytes) -> bytes:
        """A TimeStampResp (DER) for a TimeStampReq (DER): granted, or a rejection with the
        failure info. Never raises: what goes wrong inside is systemFailure, logged."""
        try:
            return self._grant(parse_request(request_der, self.policy)).response
        except TsaRejected as exc:
            return rejection(exc.failure, exc.message)
        except TsaUnavailable as exc:
            log.error("TSA cannot sign: %s", exc.message)
            return rejection(SYSTEM_FAILURE, "timestamping service unavailable")
        except Exception:  # noqa: BLE001 - an HSM or database failure must still answer
            log.exception("TSA failed")
            return rejection(SYSTEM_FAILURE, "timestamping service unavailable")

    def timestamp(self, message_imprint: bytes, hash_algorithm: str = "sha256", *,
                  nonce: int | None = None, cert_req: bool = True,
                  req_policy: str | None = None) -> Timestamp:
        """Stamp a digest in-process (for the PDF signer). Raises TsaRejected for a bad
        digest or policy, TsaUnavailable (or the HSM's or database's error) if it cannot."""
        req = tsp.TimeStampReq({
            "version": "v1",
            "message_imprint": {"hash_algorithm": {"algorithm": hash_algorithm},
                                "hashed_message": message_imprint},
            "nonce": nonce, "cert_req": cert_req,
            **({"req_policy": req_policy} if req_policy else {}),
        }) if hash_algorithm in IMPRINT_LENGTHS else None
        if req is None:
            raise TsaRejected(BAD_ALG, f"hash algorithm {hash_algorithm} not accepted")
        return self._grant(parse_request(req.dump(), self.policy))

    def timestamp_data(self, data: bytes, hash_algorithm: str = "sha256",
                       **kwargs: Any) -> Timestamp:
        """Stamp `data` (hashed here with `hash_algorithm`)."""
        if hash_algorithm not in _HASHES:
            raise TsaRejected(BAD_ALG, f"hash algorithm {hash_algorithm} not accepted")
        digest = hashes.Hash(_HASHES[hash_algorithm]())
        digest.update(data)
        return self.timestamp(digest.finalize(), hash_algorithm, **kwargs)

    # -- inside ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self.clock().astimezone(UTC)
        # genTime carries no more precision than the accuracy claims (RFC 3161 2.4.2).
        if self.policy.accuracy_micros:
            return now
        if self.policy.accuracy_millis:
            return now.replace(microsecond=now.microsecond // 1000 * 1000)
        return now.replace(microsecond=0)

    def _grant(self, req: TimestampRequest) -> Timestamp:
        gen_time = self._now()
        cert = self.certificate
        if not cert.not_valid_before_utc <= gen_time <= cert.not_valid_after_utc:
            raise TsaUnavailable("the TSA certificate is not valid now")
        serial = 0
        for _ in range(_SERIAL_ATTEMPTS):
            serial = secrets.randbits(SERIAL_BITS) or 1
            try:
                self.ledger.record(LedgerEntry(
                    serial=format(serial, "x"), gen_time=gen_time,
                    policy=self.policy.policy_oid, hash_algorithm=req.hash_algorithm,
                    message_imprint=req.message_imprint.hex(),
                    tsa_certificate=self._cert_serial_hex))
                break
            except DuplicateSerial:
                continue
        else:
            raise TsaUnavailable("could not draw a unique serial number")
        token = self._sign(self._tst_info(req, serial, gen_time), req.cert_req)
        response = tsp.TimeStampResp({"status": {"status": "granted"},
                                      "time_stamp_token": token}).dump()
        return Timestamp(token.dump(), response, serial, gen_time, self.policy.policy_oid)

    def _tst_info(self, req: TimestampRequest, serial: int, gen_time: datetime) -> bytes:
        p = self.policy
        accuracy = {k: v for k, v in (("seconds", p.accuracy_seconds),
                                      ("millis", p.accuracy_millis),
                                      ("micros", p.accuracy_micros)) if v}
        algorithm = (algos.DigestAlgorithm.load(req.algorithm.dump()) if req.algorithm
                     is not None else {"algorithm": req.hash_algorithm})
        info: dict[str, Any] = {
            "version": "v1",
            "policy": p.policy_oid,
            "message_imprint": {"hash_algorithm": algorithm,
                                "hashed_message": req.message_imprint},
            "serial_number": serial,
            "gen_time": gen_time,
            "tsa": self._tsa_name,
        }
        if accuracy:
            info["accuracy"] = accuracy
        if req.nonce is not None:
            info["nonce"] = req.nonce
        return tsp.TSTInfo(info).dump()

    def _sign(self, tst_der: bytes, cert_req: bool) -> cms.ContentInfo:
        digest = hashlib.new(self._digest, tst_der).digest()
        attrs = cms.CMSAttributes([
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [digest]},
            {"type": "signing_certificate_v2", "values": [self._ess]},
        ])
        # The signature covers the attributes encoded as a SET (RFC 5652 5.4).
        to_sign = attrs.dump()
        algorithm = _HASHES[self._digest]()
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            signature = self.key.sign(to_sign, ec.ECDSA(algorithm))
            sig_alg = f"{self._digest}_ecdsa"
        else:
            signature = self.key.sign(to_sign, padding.PKCS1v15(), algorithm)
            sig_alg = f"{self._digest}_rsa"
        tbs = self._cert_asn1["tbs_certificate"]
        signer_info = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier(name="issuer_and_serial_number", value={
                "issuer": tbs["issuer"], "serial_number": tbs["serial_number"]}),
            "digest_algorithm": {"algorithm": self._digest},
            "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": sig_alg},
            "signature": signature,
        })
        signed: dict[str, Any] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": self._digest}],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(tst_der)},
            "signer_infos": [signer_info],
        }
        if cert_req:
            certs = [self._cert_asn1, *(self._chain_asn1 if self.policy.include_chain else [])]
            signed["certificates"] = [cms.CertificateChoices(name="certificate", value=c)
                                      for c in certs]
        return cms.ContentInfo({"content_type": "signed_data",
                                "content": cms.SignedData(signed)})


class _AnyResp(core.Sequence):
    _fields = [("status", tsp.PKIStatusInfo),
               ("time_stamp_token", cms.ContentInfo, {"optional": True})]


@dataclass(frozen=True)
class ResponseStatus:
    """What a TimeStampResp says: granted / rejection / ..., the failure bits, the text."""

    status: str
    failures: frozenset[str]
    text: str
    token: bytes | None


def response_status(der: bytes) -> ResponseStatus:
    """Read a TimeStampResp (granted or not; asn1crypto's own type needs a token)."""
    resp = _AnyResp.load(der, strict=True)
    info = resp["status"]
    failures = info["fail_info"].native
    token = resp["time_stamp_token"]
    return ResponseStatus(
        info["status"].native, frozenset(failures or ()),
        " ".join(info["status_string"].native or []),
        token.dump() if token.native is not None else None)
