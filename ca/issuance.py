"""Issuance: build the to-be-signed certificate from an approved request, lint it, sign it once."""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import AuthorityInformationAccessOID

from ca.errors import InvalidCSR, InvalidRequest, LintFailed
from ca.profiles import Profile

if TYPE_CHECKING:  # pkilint is heavy to import: only issuing commands load it
    from ca.lint import LintReport

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class PublicationUrls:
    """Where relying parties fetch CRLs, CA certificates and OCSP answers (from settings)."""

    base_url: str
    # Online CAs publish delta CRLs: their certificates then name them (Freshest CRL).
    delta_crls: bool = False

    def crl(self, ca_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/crl/{ca_name}.crl"

    def delta_crl(self, ca_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/crl/delta/{ca_name}.crl"

    def ca_issuers(self, ca_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/ca/{ca_name}.crt"

    def ocsp(self) -> str:
        return f"{self.base_url.rstrip('/')}/ocsp"


@dataclass(frozen=True)
class Issuer:
    """An issuing CA as issuance needs it: its certificate and its (HSM) private key."""

    name: str
    record_id: int
    certificate: x509.Certificate
    key: CertificateIssuerPrivateKeyTypes
    key_spec: str
    parent_name: str | None = None
    online: bool = True  # its key is on the online token: it publishes CRLs on its own


@dataclass(frozen=True)
class ApprovedRequest:
    """What an operator approved: the subject and SANs come from here, never from a CSR."""

    profile: Profile
    subject: x509.Name
    public_key: CertificatePublicKeyTypes
    emails: tuple[str, ...] = ()
    dns_names: tuple[str, ...] = ()
    validity_days: int | None = None
    kind: str = "csr"  # csr | server-key | renewal
    csr_der: bytes | None = None
    requested_by: str = "operator"
    approved_by: str = "operator"
    official_id: int | None = None
    official_key_id: int | None = None
    predecessor_id: int | None = None
    path_length: int | None = None
    extra: dict[str, object] = field(default_factory=dict)


def new_serial() -> int:
    """A positive serial of 127 bits straight from the CSPRNG (16 random bytes, top bit cleared)."""
    while True:
        serial = int.from_bytes(secrets.token_bytes(16), "big") >> 1
        if serial:
            return serial


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def normalize_serial(text: str) -> str:
    """Accept 'AB:CD', '0xabcd', 'ABCD' and return the canonical lowercase hex."""
    cleaned = text.strip().lower().replace(":", "").removeprefix("0x")
    try:
        value = int(cleaned, 16)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a certificate serial (hexadecimal)") from None
    if value <= 0:
        raise InvalidRequest(f"{text!r} is not a valid certificate serial")
    return serial_hex(value)


def signature_hash(key: object) -> hashes.HashAlgorithm:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey
                      | rsa.RSAPrivateKey | rsa.RSAPublicKey) and hasattr(key, "public_key"):
        key = key.public_key()  # a stand-in that only knows the public half
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return hashes.SHA384() if key.curve.key_size >= 384 else hashes.SHA256()
    return hashes.SHA256()


def spki_sha256(public_key: CertificatePublicKeyTypes) -> str:
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check its own signature (proof of possession)."""
    if not data or not data.strip():
        raise InvalidCSR("the CSR is empty")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(data)
    except ValueError:
        raise InvalidCSR("the CSR cannot be parsed (PEM or DER PKCS#10 expected)") from None
    try:
        valid = csr.is_signature_valid
        csr.public_key()
    except (ValueError, TypeError) as exc:
        raise InvalidCSR(f"the CSR's public key or signature cannot be read: {exc}") from None
    except x509.UnsupportedGeneralNameType as exc:  # pragma: no cover - defensive
        raise InvalidCSR(str(exc)) from None
    if not valid:
        raise InvalidCSR(
            "the CSR's signature does not verify: it was not signed by the key it contains "
            "(no proof of possession)"
        )
    return csr


class _LintOnlyRSAKey(rsa.RSAPrivateKey):
    """Stands in for the issuer when signing a lint certificate: an all-zero signature of the
    right length, so the lint certificate can never verify and costs no signing.

    pkilint checks structure and encodings, not the signature value (except on self-signed
    certificates, which are linted after their real signature instead)."""

    def __init__(self, public: rsa.RSAPublicKey) -> None:
        self._public = public

    def sign(self, data: bytes, padding: object, algorithm: object) -> bytes:
        return bytes(self._public.key_size // 8)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def decrypt(self, ciphertext: bytes, padding: object) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> rsa.RSAPrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> _LintOnlyRSAKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _LintOnlyRSAKey:
        return self


class _LintOnlyECKey(ec.EllipticCurvePrivateKey):
    """The EC counterpart: a well-formed ECDSA-Sig-Value of full size that verifies nothing."""

    def __init__(self, public: ec.EllipticCurvePublicKey) -> None:
        self._public = public
        size = (public.curve.key_size + 7) // 8
        self._signature = encode_dss_signature(2 ** (8 * size - 2) + 1, 2 ** (8 * size - 2) + 3)

    def sign(self, data: bytes, signature_algorithm: object) -> bytes:
        return self._signature

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.curve.key_size

    def exchange(self, algorithm: object, peer_public_key: object) -> bytes:
        raise NotImplementedError

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        raise NotImplementedError

    def private_bytes(self, *args: object, **kwargs: object) -> bytes:
        raise NotImplementedError

    def __copy__(self) -> _LintOnlyECKey:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> _LintOnlyECKey:
        return self


def lint_only_key(issuer_key: object) -> CertificateIssuerPrivateKeyTypes:
    """A key that signs like the issuer's (same algorithm and size) but with a dummy value."""
    public = issuer_key.public_key()  # type: ignore[attr-defined]
    if isinstance(public, rsa.RSAPublicKey):
        return _LintOnlyRSAKey(public)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return _LintOnlyECKey(public)
    raise InvalidRequest(f"unsupported issuer key type {type(public).__name__}")


_probe_lock = threading.Lock()
_probe_keys: dict[str, CertificateIssuerPrivateKeyTypes] = {}


def throwaway_key(spec: str) -> CertificateIssuerPrivateKeyTypes:
    """A software key of a given spec, made once per process (to check requests early)."""
    with _probe_lock:
        key = _probe_keys.get(spec)
        if key is None:
            if spec.startswith("rsa-"):
                key = rsa.generate_private_key(65537, int(spec.split("-")[1]))
            else:
                key = ec.generate_private_key(
                    ec.SECP384R1() if spec == "ec-p384" else ec.SECP256R1()
                )
            _probe_keys[spec] = key
        return key


def _ski(public_key: CertificatePublicKeyTypes) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(public_key)


def build_certificate(
    request: ApprovedRequest,
    *,
    serial: int,
    not_before: datetime,
    not_after: datetime,
    issuer: Issuer | None,
    urls: PublicationUrls,
) -> x509.CertificateBuilder:
    """The to-be-signed certificate. `issuer=None` makes a self-signed (root) certificate."""
    profile = request.profile
    pub = request.public_key
    ski = _ski(pub)
    builder = (
        x509.CertificateBuilder()
        .subject_name(request.subject)
        .issuer_name(issuer.certificate.subject if issuer else request.subject)
        .public_key(pub)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if profile.is_ca:
        path_len = request.path_length if request.path_length is not None else profile.path_length
        builder = builder.add_extension(x509.BasicConstraints(True, path_len), critical=True)
    else:
        builder = builder.add_extension(x509.BasicConstraints(False, None), critical=True)
    builder = builder.add_extension(profile.key_usage_extension(pub), critical=True)
    eku = profile.extended_key_usage_extension()
    if eku is not None:
        builder = builder.add_extension(eku, critical=profile.extended_key_usage_critical)
    builder = builder.add_extension(ski, critical=False)
    if issuer is not None:
        issuer_ski = issuer.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier
        ).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski),
            critical=False,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False
        )
    sans: list[x509.GeneralName] = [x509.RFC822Name(e) for e in request.emails]
    sans += [x509.DNSName(d) for d in request.dns_names]
    if sans:
        # A subject-less certificate would need a critical SAN; ours always have a subject.
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if issuer is not None and profile.include_crl_distribution_point:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        [x509.UniformResourceIdentifier(urls.crl(issuer.name))], None, None, None
                    )
                ]
            ),
            critical=False,
        )
        if urls.delta_crls and issuer.online:
            builder = builder.add_extension(
                x509.FreshestCRL([x509.DistributionPoint(
                    [x509.UniformResourceIdentifier(urls.delta_crl(issuer.name))],
                    None, None, None)]),
                critical=False,
            )
    if issuer is not None:
        access = []
        if profile.include_ocsp_url:
            access.append(
                x509.AccessDescription(
                    AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(urls.ocsp())
                )
            )
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(urls.ca_issuers(issuer.name)),
            )
        )
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), critical=False)
    if profile.ocsp_no_check:
        builder = builder.add_extension(x509.OCSPNoCheck(), critical=False)
    return builder


def validity_window(
    profile: Profile,
    validity_days: int | None,
    now: datetime,
    backdate: timedelta,
    issuer: Issuer | None,
) -> tuple[datetime, datetime]:
    days = profile.default_validity_days if validity_days is None else validity_days
    if days <= 0:
        raise InvalidRequest("validity must be at least one day")
    if days > profile.max_validity_days:
        raise InvalidRequest(
            f"validity of {days} days exceeds profile {profile.name}'s maximum of "
            f"{profile.max_validity_days} days"
        )
    not_before = (now - backdate).replace(microsecond=0)
    not_after = not_before + timedelta(days=days)
    if issuer is not None:
        # A certificate never outlives the CA certificate that vouches for it.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        if not_after <= now:
            raise InvalidRequest(f"the issuing CA {issuer.name} has expired")
    return not_before, not_after


def check_lint(der: bytes, report: LintReport) -> bytes:
    """Refuse on any ERROR or FATAL finding; the message lists them for the operator."""
    if not report.ok:
        raise LintFailed("the certificate would not pass linting:\n" + report.summary())
    return der


def check_request(request: ApprovedRequest) -> str:
    """Checks every approved request must pass before anything is stored; returns its key spec."""
    spec = request.profile.check_public_key(request.public_key)
    profile = request.profile
    for rule, values, what in (
        (profile.san_email, request.emails, "e-mail address"),
        (profile.san_dns, request.dns_names, "DNS name"),
    ):
        if rule == "required" and not values:
            raise InvalidRequest(f"profile {profile.name} requires at least one {what}")
        if rule == "forbidden" and values:
            raise InvalidRequest(f"profile {profile.name} does not allow a {what}")
    for email in request.emails:
        local, _, domain = email.partition("@")
        if not local or "." not in domain or any(c.isspace() for c in email) or len(email) > 254:
            raise InvalidRequest(f"{email!r} is not a valid e-mail address")
        if not email.isascii():
            raise InvalidRequest(f"{email!r}: only ASCII e-mail addresses are supported")
    for name in request.dns_names:
        labels = name.split(".")
        if (
            not name.isascii()
            or len(name) > 253
            or len(labels) < 2
            or any(not lab or len(lab) > 63 for lab in labels)
            or any(not all(c.isalnum() or c == "-" for c in lab) for lab in labels)
        ):
            raise InvalidRequest(f"{name!r} is not a valid DNS name")
    return spec


__all__ = [
    "ApprovedRequest",
    "Issuer",
    "PublicationUrls",
    "build_certificate",
    "check_request",
    "load_csr",
    "new_serial",
    "normalize_serial",
    "serial_hex",
    "signature_hash",
    "spki_sha256",
    "validity_window",
]
