"""Files the verifier refuses as a whole: each a SignerError with a stable code, no traceback."""

from __future__ import annotations

import tracemalloc
from io import BytesIO

import pytest
import verify_docs as docs
from pypdf import PdfReader, PdfWriter

from signer.errors import (
    NoSignatures,
    NotAPdf,
    PdfDamaged,
    PdfEncrypted,
    PdfTooLarge,
    SignerError,
)
from signer.verify import DEFAULT_MAX_BYTES, verify_pdf, verify_pdf_file


def _encrypted(data: bytes, user_password: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret",
                   algorithm="AES-256")
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("data", [b"", b"hello", b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
                                  b" " * 2000 + b"%PDF-1.7 too far down"])
def test_not_a_pdf(pki, data):
    with pytest.raises(NotAPdf) as err:
        verify_pdf(data, trust_roots=[pki.root.cert])
    assert err.value.code == "not_a_pdf" and err.value.http_status == 415


@pytest.mark.parametrize("cut", [0.5, 0.9])
def test_truncated(signed, pki, cut):
    data = signed["B-T"]
    with pytest.raises(PdfDamaged) as err:
        verify_pdf(data[:int(len(data) * cut)], trust_roots=[pki.root.cert])
    assert err.value.code == "pdf_damaged" and "damaged or truncated" in err.value.message


def test_garbage_after_header(pki):
    with pytest.raises(PdfDamaged):
        verify_pdf(b"%PDF-1.7\n" + bytes(range(256)) * 40, trust_roots=[pki.root.cert])


def test_encrypted_with_password(signed, pki):
    with pytest.raises(PdfEncrypted) as err:
        verify_pdf(_encrypted(signed["base"], "mat-khau"), trust_roots=[pki.root.cert])
    assert err.value.code == "pdf_encrypted" and "password" in err.value.message


def test_encrypted_with_empty_user_password_opens(signed, pki):
    # Owner-password-only encryption needs no password to read: it gets as far as the
    # signatures (there are none here).
    with pytest.raises(NoSignatures):
        verify_pdf(_encrypted(signed["base"], ""), trust_roots=[pki.root.cert])


def test_no_signatures(signed, pki):
    with pytest.raises(NoSignatures) as err:
        verify_pdf(signed["base"], trust_roots=[pki.root.cert])
    assert err.value.code == "no_signatures" and err.value.http_status == 422


def test_empty_signature_field_is_no_signature(signed, pki):
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign.fields import SigFieldSpec, append_signature_field

    w = IncrementalPdfFileWriter(BytesIO(signed["base"]))
    append_signature_field(w, SigFieldSpec("Empty"))
    out = BytesIO()
    w.write(out)
    with pytest.raises(NoSignatures):
        verify_pdf(out.getvalue(), trust_roots=[pki.root.cert])


def test_too_large_file_is_refused_before_reading(tmp_path, pki):
    """200 MiB and one byte, sparse: refused from its size, without reading it."""
    path = tmp_path / "huge.pdf"
    with open(path, "wb") as fh:
        fh.write(b"%PDF-1.7\n")
        fh.truncate(DEFAULT_MAX_BYTES + 1)
    tracemalloc.start()
    try:
        with pytest.raises(PdfTooLarge) as err:
            verify_pdf_file(path, trust_roots=[pki.root.cert])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20
    assert err.value.code == "pdf_too_large" and err.value.http_status == 413
    assert str(DEFAULT_MAX_BYTES) in err.value.message


def test_size_limit_is_configurable(signed, pki, tmp_path):
    data = signed["B-T"]
    with pytest.raises(PdfTooLarge):
        verify_pdf(data, trust_roots=[pki.root.cert], max_bytes=len(data) - 1)
    path = tmp_path / "doc.pdf"
    path.write_bytes(data)
    with pytest.raises(PdfTooLarge):
        verify_pdf_file(path, trust_roots=[pki.root.cert], max_bytes=1000)
    report = verify_pdf_file(path, trust_roots=[pki.root.cert], max_bytes=len(data))
    assert report.file_size == len(data)


def test_errors_are_signer_errors_with_safe_messages():
    for cls in (NotAPdf, PdfDamaged, PdfEncrypted, PdfTooLarge, NoSignatures):
        assert issubclass(cls, SignerError)
        err = cls("message")
        assert err.code and 400 <= err.http_status < 600 and str(err) == "message"


def test_signature_with_foreign_subfilter_fails_instead_of_vanishing(signed, check):
    data = signed["B-T"].replace(b"/ETSI.CAdES.detached", b"/adbe.x509.rsa_sha1 ", 1)
    assert len(data) == len(signed["B-T"])
    sig = docs.only(check(data, online=True), "Sig1")
    assert sig.indication == "TOTAL-FAILED" and docs.codes(sig) == {"unsupported_format"}
