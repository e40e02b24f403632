"""The cross-check tools: pdfsig and endesive accept pyHanko-signed PDFs and catch faults."""

from __future__ import annotations

import datetime
import importlib
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pdf_crosscheck import (
    CERTIFICATE_GENERIC,
    PdfsigError,
    _parse,
    _signature,
    endesive_verify,
    nss_db,
    pdfsig,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.fields import SigSeedSubFilter
from pyhanko_certvalidator.registry import SimpleCertificateStore

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
TEXT = b"Hello kyso"

# --------------------------------------------------------------------------- fixtures


def one_page_pdf() -> bytes:
    """A minimal, uncompressed one-page PDF 1.7 with a line of Helvetica text."""
    content = b"BT /F1 24 Tf 72 720 Td (" + TEXT + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def new_key(kind: str) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def certificate(subject: str, key: PrivateKey, issuer: x509.Certificate | None,
                issuer_key: PrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=not ca, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                       critical=False)
    )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


@dataclass
class Signed:
    kind: str
    pdf: Path
    data: bytes
    root_pem: bytes
    trusting: Path  # NSS db trusting root_pem
    other_root_pem: bytes  # an unrelated root
    not_trusting: Path  # NSS db trusting only other_root_pem


@pytest.fixture(scope="module", params=["rsa", "ec"])
def signed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Signed:
    """Root CA -> issuing CA -> signer (software keys of one kind); a one-page PDF signed twice
    with pyHanko's SimpleSigner (PAdES, ETSI.CAdES.detached), the second signature incremental."""
    kind: str = request.param
    directory = tmp_path_factory.mktemp(f"crosscheck-{kind}")
    root_key, issuing_key, signer_key = new_key(kind), new_key(kind), new_key(kind)
    root = certificate(f"Crosscheck {kind} Root", root_key, None, root_key, ca=True)
    issuing = certificate(f"Crosscheck {kind} Issuing", issuing_key, root, root_key, ca=True)
    leaf = certificate(f"Crosscheck {kind} Signer", signer_key, issuing, issuing_key, ca=False)
    other_key = new_key(kind)
    other_root = certificate("Unrelated Root", other_key, None, other_key, ca=True)

    signer = signers.SimpleSigner(
        signing_cert=asn1(leaf),
        signing_key=asn1_keys.PrivateKeyInfo.load(signer_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())),
        cert_registry=SimpleCertificateStore.from_certs([asn1(issuing), asn1(root)]),
    )
    data = one_page_pdf()
    for field in ("Sig1", "Sig2"):
        meta = signers.PdfSignatureMetadata(field_name=field, subfilter=SigSeedSubFilter.PADES,
                                            md_algorithm="sha256")
        writer = IncrementalPdfFileWriter(io.BytesIO(data))
        data = signers.sign_pdf(writer, meta, signer=signer).getvalue()
    pdf = directory / "signed.pdf"
    pdf.write_bytes(data)
    return Signed(
        kind=kind, pdf=pdf, data=data, root_pem=pem(root),
        trusting=nss_db(directory / "nss-trusting", [pem(root)]),
        other_root_pem=pem(other_root),
        not_trusting=nss_db(directory / "nss-other", [pem(other_root)]),
    )


def tampered(signed: Signed) -> bytes:
    """One byte of the page text flipped ('H' -> 'h'): inside both signatures' ranges."""
    data = bytearray(signed.data)
    at = data.index(TEXT)
    data[at] ^= 0x20
    return bytes(data)


# --------------------------------------------------------------------------- pdfsig


def test_pdfsig_valid_and_trusted(signed: Signed) -> None:
    sigs = pdfsig(signed.pdf, signed.trusting)
    assert [s.index for s in sigs] == [1, 2]
    assert [s.field_name for s in sigs] == ["Sig1", "Sig2"]
    assert [s.total_document_signed for s in sigs] == [False, True]
    for sig in sigs:
        assert sig.signature_valid, sig.raw
        assert sig.certificate_trusted, sig.raw
        assert sig.signer == f"Crosscheck {signed.kind} Signer"
        assert sig.signer_dn == f"CN=Crosscheck {signed.kind} Signer"
        assert sig.signature_type == "ETSI.CAdES.detached"
        assert sig.hash_algorithm == "SHA-256"
        assert sig.signing_time
        assert len(sig.signed_ranges) == 2 and sig.signed_ranges[0][0] == 0
    assert sigs[-1].signed_ranges[1][1] == len(signed.data)


def test_pdfsig_with_revocation_policy(signed: Signed) -> None:
    """revocation=True drops -no-ocsp; these certificates name no OCSP responder, so nothing is
    fetched and the soft-fail policy leaves the verdict unchanged."""
    sigs = pdfsig(signed.pdf, signed.trusting, revocation=True)
    assert [(s.signature_valid, s.certificate_trusted) for s in sigs] == [(True, True)] * 2


def test_pdfsig_untrusted_root(signed: Signed) -> None:
    sigs = pdfsig(signed.pdf, signed.not_trusting)
    assert len(sigs) == 2
    for sig in sigs:
        assert sig.signature_valid, sig.raw
        assert not sig.certificate_trusted, sig.raw
        assert sig.certificate_trust_source is None
        assert sig.certificate_status not in (None, CERTIFICATE_GENERIC), sig.raw


def test_pdfsig_empty_nss_db(signed: Signed, tmp_path: Path) -> None:
    sigs = pdfsig(signed.pdf, nss_db(tmp_path / "empty", []))
    assert [(s.signature_valid, s.certificate_trusted) for s in sigs] == [(True, False)] * 2


def test_pdfsig_tampered(signed: Signed, tmp_path: Path) -> None:
    pdf = tmp_path / "tampered.pdf"
    pdf.write_bytes(tampered(signed))
    sigs = pdfsig(pdf, signed.trusting)
    assert len(sigs) == 2
    for sig in sigs:
        assert not sig.signature_valid, sig.raw
        assert not sig.certificate_trusted, sig.raw
        assert sig.signature_status == "Digest Mismatch."


def test_pdfsig_unsigned(tmp_path: Path) -> None:
    pdf = tmp_path / "plain.pdf"
    pdf.write_bytes(one_page_pdf())
    assert pdfsig(pdf, nss_db(tmp_path / "nss", [])) == []


def test_pdfsig_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PdfsigError, match="Couldn't open file"):
        pdfsig(tmp_path / "absent.pdf", nss_db(tmp_path / "nss", []))


def test_nss_db_refuses_existing_database(tmp_path: Path) -> None:
    nss_db(tmp_path / "nss", [])
    with pytest.raises(FileExistsError):
        nss_db(tmp_path / "nss", [])


# --------------------------------------------------------------------------- endesive


def test_endesive_valid(signed: Signed) -> None:
    assert endesive_verify(signed.data, [signed.root_pem]) == [(True, True, True)] * 2


def test_endesive_untrusted_root(signed: Signed) -> None:
    assert endesive_verify(signed.data, [signed.other_root_pem]) == [(True, True, False)] * 2


def test_endesive_tampered(signed: Signed) -> None:
    results = endesive_verify(tampered(signed), [signed.root_pem])
    assert len(results) == 2
    assert all(not hashok for hashok, _, _ in results), results


def test_endesive_unsigned() -> None:
    assert endesive_verify(one_page_pdf(), []) == []


def test_oscrypto_imports_after_workaround() -> None:
    endesive_verify(one_page_pdf(), [])
    endesive_verify(one_page_pdf(), [])  # the workaround is idempotent
    assert importlib.import_module("oscrypto.asymmetric")


# --------------------------------------------------------------------------- parser

SAMPLE = """\
Digital Signature Info of: signed.pdf
Signature #1:
  - Signature Field Name: Sig1
  - Signer Certificate Common Name: Test Signer
  - Signer full Distinguished Name: CN=Test Signer,O=Kyso
  - Signing Time: Nov 26 2026 04:08:42
  - Signing Hash Algorithm: SHA-256
  - Signature Type: ETSI.CAdES.detached
  - Signed Ranges: [0 - 1080], [7216 - 7794]
  - Not total document signed
  - Signature Validation: Signature is Valid.
  - Certificate Validation: Certificate is Trusted.
Signature #2:
  - Signature Field Name: Sig2
  - Signer Certificate Common Name: Test Signer
  - Signer full Distinguished Name: CN=Test Signer,O=Kyso
  - Signing Time: Nov 26 2026 04:08:43
  - Signing Hash Algorithm: SHA-256
  - Signature Type: ETSI.CAdES.detached
  - Signed Ranges: [0 - 8229], [14365 - 14848]
  - Total document signed
  - Signature Validation: Digest Mismatch.
"""


def test_parse_sample() -> None:
    sigs = [_signature(i, block, "sample", SAMPLE) for i, block in _parse(SAMPLE, "sample")]
    first, second = sigs
    assert (first.index, first.field_name, first.signer, first.signing_time) == (
        1, "Sig1", "Test Signer", "Nov 26 2026 04:08:42")
    assert first.signer_dn == "CN=Test Signer,O=Kyso"
    assert (first.signature_valid, first.certificate_trusted, first.total_document_signed) == (
        True, True, False)
    assert first.certificate_trust_source == "pdfsig"
    assert first.signed_ranges == ((0, 1080), (7216, 7794))
    assert first.raw.splitlines()[0] == "Signature #1:" and len(first.raw.splitlines()) == 11
    assert (second.signature_valid, second.certificate_trusted, second.total_document_signed) == (
        False, False, True)
    assert second.signature_status == "Digest Mismatch." and second.certificate_status is None


@pytest.mark.parametrize("output", [
    "",
    "Something else\n",
    "Digital Signature Info of: x.pdf\n",
    "Digital Signature Info of: x.pdf\nSignature #1:\n  - Signer Certificate Common Name: A\n",
    "Digital Signature Info of: x.pdf\nSignature #1:\n"
    "  - Signature Validation: Signature is Valid.\nstray\n",
])
def test_parse_rejects_unexpected_output(output: str) -> None:
    with pytest.raises(PdfsigError) as excinfo:
        for i, block in _parse(output, "ctx"):
            _signature(i, block, "ctx", output)
    assert isinstance(excinfo.value, AssertionError)
    assert output in str(excinfo.value)
