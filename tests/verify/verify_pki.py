"""A small software PKI for the verification tests: root, issuing CA, signers, TSA, OCSP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from asn1crypto import core as asn1_core
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")
OCSP_URL = "http://pki.test.invalid/ocsp"
ROOT_CRL_URL = "http://pki.test.invalid/crl/root.crl"
ISSUING_CRL_URL = "http://pki.test.invalid/crl/issuing.crl"

# Real time: pyHanko stamps signatures and timestamps with the wall clock, so the PKI is
# valid around it and tests move the verifier's clock forward instead.
NOW = datetime.now(UTC).replace(microsecond=0)

Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def _name(cn: str, org: str = "Sở Thông tin và Truyền thông TP.HCM") -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
    ])


@dataclass
class Party:
    """A certificate with its key, in both cryptography and asn1crypto form."""

    cert: x509.Certificate
    key: Key

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.der)

    @property
    def asn1_key(self) -> asn1_keys.PrivateKeyInfo:
        return asn1_keys.PrivateKeyInfo.load(self.key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _issue(subject: x509.Name, key: Key, issuer: Party | None, *, ca: bool,
           extensions: list[tuple[x509.ExtensionType, bool]],
           not_before: datetime, not_after: datetime) -> Party:
    issuer_name = issuer.cert.subject if issuer else subject
    signing_key = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return Party(builder.sign(signing_key, hashes.SHA256()), key)


def _ku(**flags: bool) -> x509.KeyUsage:
    names = ["digital_signature", "content_commitment", "key_encipherment",
             "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign",
             "encipher_only", "decipher_only"]
    return x509.KeyUsage(**{n: flags.get(n, False) for n in names})


def _crl_dp(url: str) -> x509.CRLDistributionPoints:
    return x509.CRLDistributionPoints([x509.DistributionPoint(
        [x509.UniformResourceIdentifier(url)], None, None, None)])


def _aia() -> x509.AuthorityInformationAccess:
    return x509.AuthorityInformationAccess([x509.AccessDescription(
        x509.AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(OCSP_URL))])


def _ec() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@dataclass
class Revoked:
    at: datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise


@dataclass
class TestPki:
    root: Party
    issuing: Party
    signer: Party
    signer2: Party
    tsa: Party
    responder: Party
    revoked: dict[int, Revoked] = field(default_factory=dict)

    @property
    def chain(self) -> list[asn1_x509.Certificate]:
        return [self.issuing.asn1, self.root.asn1]

    def issue_signer(self, cn: str, *, not_before: datetime | None = None,
                     not_after: datetime | None = None) -> Party:
        return _issue(_name(cn), _ec(), self.issuing, ca=False, extensions=_signer_exts(),
                      not_before=not_before or NOW - timedelta(days=30),
                      not_after=not_after or NOW + timedelta(days=365))

    def source(self, clock: datetime | None = None) -> TestRevocation:
        return TestRevocation(self, clock or NOW)


def _signer_exts() -> list[tuple[x509.ExtensionType, bool]]:
    return [
        (_ku(digital_signature=True, content_commitment=True), True),
        (x509.ExtendedKeyUsage([DOCUMENT_SIGNING, ExtendedKeyUsageOID.EMAIL_PROTECTION]), False),
        (_aia(), False),
        (_crl_dp(ISSUING_CRL_URL), False),
    ]


def build_pki() -> TestPki:
    nb, na = NOW - timedelta(days=60), NOW + timedelta(days=3650)
    root = _issue(_name("Kyso Test Root CA"), _ec(), None, ca=True,
                  extensions=[(_ku(key_cert_sign=True, crl_sign=True), True)],
                  not_before=nb, not_after=na)
    issuing = _issue(_name("Kyso Test Issuing CA"), _ec(), root, ca=True,
                     extensions=[(_ku(key_cert_sign=True, crl_sign=True), True),
                                 (_crl_dp(ROOT_CRL_URL), False)],
                     not_before=nb, not_after=na)
    ee_nb, ee_na = NOW - timedelta(days=30), NOW + timedelta(days=365)
    signer = _issue(_name("Nguyễn Thị Hồng Nhung", "UBND Phường Bến Nghé"), _ec(), issuing,
                    ca=False, extensions=_signer_exts(), not_before=ee_nb, not_after=ee_na)
    signer2 = _issue(_name("Trần Văn Bình"), _ec(), issuing, ca=False,
                     extensions=_signer_exts(), not_before=ee_nb, not_after=ee_na)
    # pyHanko's DummyTimeStamper signs with RSA only.
    tsa = _issue(_name("Kyso Test TSA"), rsa.generate_private_key(65537, 2048), issuing,
                 ca=False, extensions=[
                     (_ku(digital_signature=True, content_commitment=True), True),
                     (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True),
                     (_aia(), False), (_crl_dp(ISSUING_CRL_URL), False)],
                 not_before=ee_nb, not_after=ee_na)
    responder = _issue(_name("Kyso Test OCSP"), _ec(), issuing, ca=False, extensions=[
        (_ku(digital_signature=True), True),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), False),
        (x509.OCSPNoCheck(), False)], not_before=ee_nb, not_after=ee_na)
    return TestPki(root, issuing, signer, signer2, tsa, responder)


def build_untrusted() -> tuple[Party, Party]:
    """A self-made root and a signer under it: nothing the verifier trusts."""
    nb, na = NOW - timedelta(days=60), NOW + timedelta(days=365)
    root = _issue(_name("Evil Root"), _ec(), None, ca=True,
                  extensions=[(_ku(key_cert_sign=True, crl_sign=True), True)],
                  not_before=nb, not_after=na)
    signer = _issue(_name("Nguyễn Thị Hồng Nhung"), _ec(), root, ca=False,
                    extensions=_signer_exts(), not_before=nb, not_after=na)
    return root, signer


class TestRevocation:
    """RevocationSource over the test PKI; answers as of `clock` (responses made to order)."""

    __test__ = False  # not a pytest class

    def __init__(self, pki: TestPki, clock: datetime) -> None:
        self.pki = pki
        self.clock = clock
        self.ocsp_calls = 0
        self.crl_calls = 0

    def _status(self, serial: int) -> Revoked | None:
        rev = self.pki.revoked.get(serial)
        return rev if rev is not None and rev.at <= self.clock else None

    def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None:
        cert = x509.load_der_x509_certificate(cert_der)
        if cert.issuer != self.pki.issuing.cert.subject:
            return None
        self.ocsp_calls += 1
        return make_ocsp(self.pki, cert, self._status(cert.serial_number), self.clock)

    def crls(self, cert_der: bytes) -> list[bytes]:
        cert = x509.load_der_x509_certificate(cert_der)
        self.crl_calls += 1
        if cert.issuer == self.pki.root.cert.subject:
            return [make_crl(self.pki.root, {}, self.clock)]
        if cert.issuer == self.pki.issuing.cert.subject:
            revoked = {s: r for s, r in self.pki.revoked.items() if r.at <= self.clock}
            return [make_crl(self.pki.issuing, revoked, self.clock)]
        return []


def make_crl(ca: Party, revoked: dict[int, Revoked], at: datetime) -> bytes:
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.cert.subject)
               .last_update(at - timedelta(minutes=5)).next_update(at + timedelta(days=1))
               .add_extension(x509.CRLNumber(int(at.timestamp())), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    for serial, rev in revoked.items():
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(rev.at)
            .add_extension(x509.CRLReason(rev.reason), critical=False).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def make_ocsp(pki: TestPki, cert: x509.Certificate, revoked: Revoked | None,
              at: datetime) -> bytes:
    """An OCSP response built with asn1crypto, so producedAt can be any time (cryptography's
    builder always stamps the wall clock)."""
    issuer = pki.issuing.asn1
    cert_id = asn1_ocsp.CertId({
        "hash_algorithm": {"algorithm": "sha1"},
        "issuer_name_hash": issuer.subject.sha1,
        "issuer_key_hash": issuer.public_key.sha1,
        "serial_number": cert.serial_number,
    })
    if revoked is None:
        status = asn1_ocsp.CertStatus(name="good", value=asn1_core.Null())
    else:
        status = asn1_ocsp.CertStatus(name="revoked", value={
            "revocation_time": revoked.at, "revocation_reason": revoked.reason.name})
    this_update = at - timedelta(minutes=5)
    tbs = asn1_ocsp.ResponseData({
        "responder_id": asn1_ocsp.ResponderId(name="by_key",
                                              value=pki.responder.asn1.public_key.sha1),
        "produced_at": at,
        "responses": [{"cert_id": cert_id, "cert_status": status, "this_update": this_update,
                       "next_update": at + timedelta(hours=12)}],
    })
    key = pki.responder.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(tbs.dump(), ec.ECDSA(hashes.SHA256()))
    basic = asn1_ocsp.BasicOCSPResponse({
        "tbs_response_data": tbs, "signature_algorithm": {"algorithm": "sha256_ecdsa"},
        "signature": signature, "certs": [pki.responder.asn1]})
    return asn1_ocsp.OCSPResponse({
        "response_status": "successful",
        "response_bytes": {"response_type": "basic_ocsp_response", "response": basic},
    }).dump()
