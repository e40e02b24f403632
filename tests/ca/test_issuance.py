"""Issuance through the real HSM, checked with openssl and pkilint's own command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ca.errors import InvalidCSR, SubjectRejected, UnknownProfile, WeakKey
from ca.profiles import ID_KP_DOCUMENT_SIGNING

OFFICIAL_SUBJECT = ("CN=Nguyễn Thị Hồng Nhung,T=Chánh Văn phòng,"
                    "O=Ủy ban nhân dân phường Bến Thành,OU=Văn phòng,"
                    "L=Thành phố Hồ Chí Minh,C=VN")


def make_csr(key: object, cn: str = "ignored", *, extensions: bool = False) -> bytes:
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
    if extensions:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("evil.example")]), False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def chain_files(authority, ca_name: str, tmp_path: Path) -> tuple[Path, Path]:
    chain = authority.chain(ca_name)
    root = tmp_path / "root.pem"
    root.write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))
    inter = tmp_path / "intermediates.pem"
    inter.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain[:-1]))
    return root, inter


def openssl_verify(authority, ca_name: str, cert: x509.Certificate, tmp_path: Path,
                   purpose: str | None = None) -> subprocess.CompletedProcess[str]:
    root, inter = chain_files(authority, ca_name, tmp_path)
    leaf = tmp_path / "leaf.pem"
    leaf.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    args = ["openssl", "verify", "-CAfile", str(root), "-untrusted", str(inter)]
    if purpose:
        args += ["-purpose", purpose]
    return subprocess.run([*args, str(leaf)], capture_output=True, text=True, timeout=30)


def pkilint_findings(cert: x509.Certificate) -> list[dict]:
    """pkilint's own command line, an independent check of what we issued."""
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "lint_pkix_cert"), "lint", "-f", "JSON", "-"],
        input=cert.public_bytes(serialization.Encoding.PEM).decode(),
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode in (0, 1), proc.stderr
    report = json.loads(proc.stdout)
    results = report["results"] if isinstance(report, dict) else report
    return [f | {"validator": r.get("validator")} for r in results
            for f in r.get("finding_descriptions", [])]


def errors_of(findings: list[dict]) -> list[dict]:
    return [f for f in findings if f["severity"] in ("ERROR", "FATAL")]


@pytest.mark.parametrize("ca_name", ["issuing", "issuing-rsa"])
@pytest.mark.parametrize("key_kind", ["rsa-2048", "ec-p256"])
def test_official_signing_from_csr_verifies_and_lints(authority, tmp_path, ca_name, key_kind):
    key = (rsa.generate_private_key(65537, 2048) if key_kind == "rsa-2048"
           else ec.generate_private_key(ec.SECP256R1()))
    request = authority.request_from_csr(
        "official-signing", make_csr(key), OFFICIAL_SUBJECT,
        emails=("nhung@benthanh.hochiminhcity.gov.vn",))
    issued = authority.issue(ca_name, request)
    cert = issued.certificate

    proc = openssl_verify(authority, ca_name, cert, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    findings = pkilint_findings(cert)
    assert errors_of(findings) == []
    # Our in-process (accelerated) lint agrees with pkilint's own command line.
    from ca.lint import lint_certificate

    shown = ("FATAL", "ERROR", "WARNING", "NOTICE", "INFO")
    ours = {(f.severity, f.code) for f in lint_certificate(
        cert.public_bytes(serialization.Encoding.DER)).findings if f.severity in shown}
    assert ours == {(f["severity"], f["code"]) for f in findings if f["severity"] in shown}

    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
        "Nguyễn Thị Hồng Nhung"
    assert cert.subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "VN"
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and ku.value.content_commitment
    assert not ku.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.EMAIL_PROTECTION, ID_KP_DOCUMENT_SIGNING}
    cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value.endswith(f"/crl/{ca_name}.crl")
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {a.access_location.value.rsplit("/", 1)[-1] for a in aia} == {"ocsp",
                                                                         f"{ca_name}.crt"}
    assert cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    # Serial: positive, from >= 64 bits of randomness, recorded under its lowercase hex.
    assert cert.serial_number > 0 and cert.serial_number.bit_length() > 64
    record = authority.certificate(issued.serial)
    assert record.status == "valid" and record.cert_der == cert.public_bytes(
        serialization.Encoding.DER)
    assert record.lint_der is not None  # the lint certificate is kept beside the real one


def test_tls_server_certificate(authority, tmp_path):
    key = ec.generate_private_key(ec.SECP384R1())
    request = authority.request_from_csr("tls-server", make_csr(key), "CN=dvc.hochiminhcity.gov.vn,"
                                         "O=Trung tâm Chuyển đổi số,C=VN",
                                         dns_names=("dvc.hochiminhcity.gov.vn",))
    cert = authority.issue("issuing", request).certificate
    proc = openssl_verify(authority, "issuing", cert, tmp_path, purpose="sslserver")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert errors_of(pkilint_findings(cert)) == []


def test_csr_extensions_are_never_copied(authority):
    key = ec.generate_private_key(ec.SECP256R1())
    request = authority.request_from_csr("official-signing",
                                         make_csr(key, "Sneaky", extensions=True),
                                         OFFICIAL_SUBJECT, emails=("a@example.vn",))
    cert = authority.issue("issuing", request).certificate
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == []
    assert "Sneaky" not in cert.subject.rfc4514_string()


def test_ca_certificates_are_published_and_chain(kyso_app, authority, tmp_path):
    chain = authority.chain("issuing")
    assert [c.subject.rfc4514_string() for c in chain][-1].startswith("CN=Test Root CA")
    published = kyso_app.settings.publish_dir / "ca" / "issuing.crt"
    assert x509.load_der_x509_certificate(published.read_bytes()) == chain[0]
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(chain[-1].public_bytes(serialization.Encoding.PEM))
    leaf = tmp_path / "issuing.pem"
    leaf.write_bytes(chain[0].public_bytes(serialization.Encoding.PEM))
    proc = subprocess.run(["openssl", "verify", "-CAfile", str(root_pem), str(leaf)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    for cert in chain:
        assert errors_of(pkilint_findings(cert)) == []
    bc = chain[0].extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca and bc.path_length == 0


def tampered_csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.load_pem_x509_csr(make_csr(key))
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature value
    return bytes(der)


@pytest.mark.parametrize(
    ("make", "error", "words"),
    [
        (tampered_csr, InvalidCSR, "does not verify"),
        (lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n"
                 b"-----END CERTIFICATE REQUEST-----\n", InvalidCSR, "cannot be parsed"),
        (lambda: b"\x30\x03\x02\x01\x00", InvalidCSR, "cannot be parsed"),
        (lambda: b"", InvalidCSR, "empty"),
        (lambda: make_csr(rsa.generate_private_key(65537, 1024)), WeakKey, "1024"),
        (lambda: make_csr(ec.generate_private_key(ec.SECP256K1())), WeakKey, "secp256k1"),
    ],
)
def test_bad_csr_is_refused_and_nothing_stored(authority, counts, make, error, words):
    before = counts()
    with pytest.raises(error) as info:
        request = authority.request_from_csr("official-signing", make(), OFFICIAL_SUBJECT,
                                             emails=("a@example.vn",))
        authority.issue("issuing", request)
    assert words in str(info.value)
    assert counts() == before


@pytest.mark.parametrize(
    ("subject", "words"),
    [
        ("CN=Someone,O=Org,C=US", "C=VN"),
        ("CN=Someone,C=VN", "requires subject attribute(s) O"),
        ("CN=Someone,O=Org,C=VN,serialNumber=123", "not allowed"),
        ("CN=" + "x" * 65 + ",O=Org,C=VN", "<= 64"),
        ("CN=Someone,O=" + "ơ" * 65 + ",C=VN", "64"),
        ("this is not a subject", "cannot parse"),
        ("CN=A,CN=B,O=Org,C=VN", "more than once"),
    ],
)
def test_subject_the_profile_forbids(authority, counts, subject, words):
    key = ec.generate_private_key(ec.SECP256R1())
    before = counts()
    with pytest.raises(SubjectRejected) as info:
        request = authority.request_from_csr("official-signing", make_csr(key), subject,
                                             emails=("a@example.vn",))
        authority.issue("issuing", request)
    assert words in str(info.value)
    assert counts() == before


def test_unknown_profile(authority, counts):
    before = counts()
    with pytest.raises(UnknownProfile, match="official-signing"):
        authority.request_from_csr("no-such-profile", make_csr(
            ec.generate_private_key(ec.SECP256R1())), OFFICIAL_SUBJECT)
    assert counts() == before


def test_serial_is_reserved_before_the_hsm_signs(authority, kyso_app, monkeypatch):
    """A crash after the HSM signature must still leave a record to revoke."""
    issuer = authority.issuer("issuing")
    seen = {}
    real_sign = type(issuer.key).sign

    def spying_sign(self, data, algorithm):
        from ca.models import CertificateRecord

        with kyso_app.sessions() as s:
            seen["pending"] = [(r.serial, r.status, r.lint_der is not None) for r in
                               s.query(CertificateRecord).filter_by(status="pending")]
        return real_sign(self, data, algorithm)

    monkeypatch.setattr(type(issuer.key), "sign", spying_sign)
    request = authority.request_from_csr("official-signing", make_csr(
        ec.generate_private_key(ec.SECP256R1())), OFFICIAL_SUBJECT, emails=("a@example.vn",))
    issued = authority.issue("issuing", request)
    assert seen["pending"] == [(issued.serial, "pending", True)]


def test_hsm_failure_leaves_a_failed_record(authority, monkeypatch):
    issuer = authority.issuer("issuing")

    def broken(self, data, algorithm):
        from hsm import TokenUnavailable

        raise TokenUnavailable()

    monkeypatch.setattr(type(issuer.key), "sign", broken)
    request = authority.request_from_csr("official-signing", make_csr(
        ec.generate_private_key(ec.SECP256R1())), OFFICIAL_SUBJECT, emails=("a@example.vn",))
    from hsm import TokenUnavailable

    with pytest.raises(TokenUnavailable):
        authority.issue("issuing", request)
    from ca import store

    with authority.sessions() as s:
        failed = store.list_certificates(s, status="failed")
    assert failed and failed[-1].lint_der is not None and failed[-1].cert_der is None
