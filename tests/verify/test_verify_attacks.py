"""PDF signature attacks (pdf-insecurity.org, RUB-NDS PDF-Tester): none may come out valid.

Each document is built here from a genuinely signed one, the way the published attacks do:
USF (broken /ByteRange, /Contents), ISA (incremental updates), SWA (signature wrapping),
shadow attacks (hide, replace, hide-and-replace), EAA and SSA on certified documents.
"""

from __future__ import annotations

from io import BytesIO

import pytest
import verify_docs as docs
from pyhanko.pdf_utils.reader import PdfFileReader
from verify_docs import codes, only

from signer.verify import FAILED, PASSED, SignatureReport


def _details(sig: SignatureReport) -> str:
    return " ".join(r.detail for r in sig.reasons)


def _failed(sig: SignatureReport, sub: str = "FORMAT_FAILURE") -> None:
    assert (sig.indication, sig.sub_indication) == (FAILED, sub), sig.reasons


# -- USF: universal signature forgery -----------------------------------------------------

@pytest.mark.parametrize("forge, code", [
    (docs.usf_no_byterange, "signature_unreadable"),
    (docs.usf_no_contents, "signature_unreadable"),
    (lambda d: docs.usf_contents(d, b""), "signature_unreadable"),
    (lambda d: docs.usf_contents(d, b"3082ffff" + b"ab" * 64), "signature_unreadable"),
])
def test_usf_unreadable_signature_fails(signed, check, forge, code):
    report = check(forge(signed["B-T"]), online=True)
    sig = only(report, "Sig1")
    _failed(sig)
    assert codes(sig) == {code}
    assert report.indication == FAILED and report.signature_count == 1


def test_usf_byte_range_zero(signed, check):
    sig = only(check(docs.usf_byterange(signed["B-T"], (0, 0, 0, 0)), online=True), "Sig1")
    _failed(sig, "HASH_FAILURE")
    assert {"byte_range_invalid", "hash_mismatch"} <= codes(sig)
    assert sig.integrity.digest_ok is False


def test_usf_byte_range_covering_less(signed, check):
    data = signed["B-T"]
    m = list(docs._BR.finditer(data))[-1]
    a, b, c, d = (int(x) for x in m.groups())
    sig = only(check(docs.usf_byterange(data, (a, b, c, d - 100)), online=True), "Sig1")
    assert sig.indication == FAILED
    assert "byte_range_invalid" in codes(sig) or "hash_mismatch" in codes(sig)


# -- ISA: incremental saving attack ---------------------------------------------------------

def test_isa_new_page_content(signed, check):
    sig = only(check(docs.isa_add_content(signed["B-LT"])), "Sig1")
    _failed(sig)
    assert codes(sig) == {"modified_after_signing"}
    assert "page content stream" in _details(sig)
    assert sig.modification.level == "other"
    # The cryptography is intact: only the analysis of the update catches the attack.
    assert sig.integrity.digest_ok and sig.integrity.signature_ok


def test_isa_new_catalog(signed, check):
    sig = only(check(docs.isa_new_root(signed["B-LT"])), "Sig1")
    _failed(sig)
    assert "/Root replaced" in _details(sig)


# -- SWA: signature wrapping ----------------------------------------------------------------

def test_swa_moved_signed_bytes(signed, check):
    forged = docs.swa(signed["B-T"])
    # The attack is real: a reader sees the attacker's extra content stream...
    page = PdfFileReader(BytesIO(forged), strict=False).root["/Pages"]["/Kids"][0]
    assert len(page["/Contents"]) == 2
    sig = only(check(forged, online=True), "Sig1")
    # ...while the signed bytes still hash to the signed digest.
    assert sig.integrity.digest_ok and sig.integrity.signature_ok
    _failed(sig)
    assert "byte_range_invalid" in codes(sig)
    assert sig.modification.coverage == "unclear"


# -- shadow attacks ---------------------------------------------------------------------------

@pytest.mark.parametrize("certify", [False, True])
def test_shadow_hide_overlay_revealed(pki, check, certify):
    signed_doc, attacked = docs.hide_prepared(pki, certify=certify)
    assert only(check(signed_doc, online=True), "Sig1").indication == PASSED
    sig = only(check(attacked, online=True), "Sig1")
    _failed(sig)
    assert "annotation Square" in _details(sig)


def test_shadow_replace_font(signed, check):
    sig = only(check(docs.replace_font(signed["B-T"]), online=True), "Sig1")
    _failed(sig)
    assert "Font" in _details(sig)


def test_shadow_replace_field_value_beyond_docmdp(signed, check):
    sig = only(check(docs.replace_field_value(signed["certified-p1"]), online=True), "Sig1")
    _failed(sig)
    assert "docmdp_violated" in codes(sig)


def test_shadow_hide_and_replace_content(signed, check):
    sig = only(check(docs.hide_and_replace(signed["B-T"]), online=True), "Sig1")
    _failed(sig)
    assert "replaced page content stream" in _details(sig)


# -- EAA and SSA on certified documents ---------------------------------------------------------

@pytest.mark.parametrize("subtype", ["/FreeText", "/Stamp"])
def test_eaa_annotation_on_certified_document(signed, check, subtype):
    sig = only(check(docs.annotate(signed["certified"], subtype), online=True), "Sig1")
    _failed(sig)
    assert f"annotation {subtype[1:]}" in _details(sig)


def test_annotation_on_approval_signature_is_not_permitted_either(signed, check):
    sig = only(check(docs.annotate(signed["B-T"], "/FreeText"), online=True), "Sig1")
    _failed(sig)


def test_ssa_sneaky_signature_over_content(signed, check, pki):
    report = check(docs.sneaky_signature(signed["certified"], pki), online=True)
    cert_sig = only(report, "Sig1")
    _failed(cert_sig)
    assert cert_sig.certified
    assert "annotation Widget" in _details(cert_sig)
    assert report.indication == FAILED
