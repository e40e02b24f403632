"""Valid documents at each PAdES level, several signatures, certification, revocation, long-term."""

from __future__ import annotations

from datetime import timedelta

import pytest
import verify_docs as docs
from verify_docs import codes, only
from verify_pki import NOW, Revoked, build_untrusted

from signer.verify import FAILED, INDETERMINATE, PASSED, verify_pdf


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_each_level_passes_and_is_reported(signed, check, pki, level):
    # B-B and B-T carry no revocation data: the verifier asks the revocation source.
    report = check(signed[level], online=level in ("B-B", "B-T"))
    sig = only(report, "Sig1")
    assert (sig.indication, sig.sub_indication, sig.reasons) == (PASSED, None, ())
    assert sig.pades_level == level
    assert report.indication == PASSED and report.signature_count == 1
    assert sig.signer.common_name == "Nguyễn Thị Hồng Nhung"
    assert sig.signer.organization == "UBND Phường Bến Nghé"
    assert sig.signer.serial == format(pki.signer.cert.serial_number, "x")
    assert sig.signer.issuer_common_name == "Kyso Test Issuing CA"
    assert sig.certificate_path == ("Nguyễn Thị Hồng Nhung", "Kyso Test Issuing CA",
                                    "Kyso Test Root CA")
    assert sig.path_trusted
    assert sig.integrity.digest_ok and sig.integrity.signature_ok
    assert sig.integrity.digest_algorithm == "sha256"
    assert sig.claimed_signing_time is not None
    assert sig.revocation.status == "good"
    if level in ("B-B", "B-T"):
        assert sig.revocation.sources == ("fetched",)
        assert sig.modification.level == "none" and report.last_revision_covered
    else:
        assert sig.revocation.sources == ("dss",)  # offline: the DSS was enough
        assert sig.modification.level == "lta_updates" and sig.modification.permitted
    if level == "B-B":
        assert sig.timestamp is None and sig.best_signature_time is None
    else:
        assert sig.timestamp.valid and sig.timestamp.trusted
        assert sig.timestamp.tsa == "Kyso Test TSA"
        assert sig.best_signature_time == sig.timestamp.time
    if level == "B-LTA":
        assert report.document_timestamp_count == 1
        (ts_ref,) = sig.document_timestamps
        doc_ts = only(report, ts_ref.field_name)
        assert doc_ts.kind == "document_timestamp" and doc_ts.indication == PASSED
        assert doc_ts.timestamp.time == ts_ref.time
        # pyHanko adds the timestamp's own validation data after it: a permitted update.
        assert doc_ts.modification.level in ("none", "lta_updates")
        assert [n.code for n in report.notes] in ([], ["validation_data_at_end"])
    else:
        assert sig.document_timestamps == ()


def test_without_revocation_data_the_verdict_is_open(signed, check):
    sig = only(check(signed["B-B"]), "Sig1")
    assert sig.indication == INDETERMINATE
    assert sig.revocation.status == "unknown"
    assert "revocation_unknown" in codes(sig)
    assert sig.pades_level == "B-B"


def test_second_signature_leaves_the_first_valid(signed, check, pki):
    two = docs.sign(signed["B-LT"], pki, party=pki.signer2, field="Sig2", level="B-LT")
    report = check(two)
    first, second = only(report, "Sig1"), only(report, "Sig2")
    assert report.signature_count == 2 and report.indication == PASSED
    assert first.indication == second.indication == PASSED
    assert first.modification.level == "form_filling"  # a new signature field was filled
    assert second.modification.level == "lta_updates"
    assert second.signer.common_name == "Trần Văn Bình"
    assert first.revision < second.revision


def test_document_timestamp_after_signature_is_lta_update(signed, check, pki):
    report = check(docs.timestamp_document(signed["B-LT"], pki))
    sig = only(report, "Sig1")
    assert sig.indication == PASSED and sig.pades_level == "B-LTA"
    assert sig.modification.level == "lta_updates"
    assert [d.field_name for d in sig.document_timestamps] == ["DocTs"]


def test_certified_document_allows_form_filling(signed, check):
    report = check(docs.fill_field(signed["certified"]), online=True)
    sig = only(report, "Sig1")
    assert sig.certified and report.certified
    assert sig.indication == PASSED
    assert sig.modification.level == "form_filling"
    assert sig.modification.changed_fields == ("HoTen",)
    assert sig.modification.docmdp_permission == 2 and sig.modification.permitted


def test_certified_document_allows_a_later_approval_signature(signed, check, pki):
    report = check(docs.sign(signed["certified"], pki, party=pki.signer2, field="Sig2",
                             level="B-T"), online=True)
    assert [s.indication for s in report.signatures] == [PASSED, PASSED]


def test_certified_document_refuses_new_content(signed, check):
    sig = only(check(docs.isa_add_content(signed["certified"]), online=True), "Sig1")
    assert (sig.indication, sig.sub_indication) == (FAILED, "FORMAT_FAILURE")
    assert sig.modification.level == "other" and not sig.modification.permitted
    assert "page content stream" in " ".join(r.detail for r in sig.reasons)


def test_certified_p1_refuses_even_form_filling(signed, check):
    sig = only(check(docs.fill_field(signed["certified-p1"]), online=True), "Sig1")
    assert (sig.indication, sig.sub_indication) == (FAILED, "FORMAT_FAILURE")
    assert sig.modification.level == "form_filling"
    assert sig.modification.docmdp_permission == 1
    assert "docmdp_violated" in codes(sig)


def test_untrusted_signer_has_no_chain(signed, pki):
    root, signer = build_untrusted()
    from io import BytesIO

    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    out = signers.sign_pdf(
        IncrementalPdfFileWriter(BytesIO(signed["base"])),
        signers.PdfSignatureMetadata(field_name="Evil"),
        signer=signers.SimpleSigner(signing_cert=signer.asn1, signing_key=signer.asn1_key,
                                    cert_registry=SimpleCertificateStore.from_certs(
                                        [root.asn1])))
    report = verify_pdf(out.getvalue(), trust_roots=[pki.root.cert])
    sig = only(report, "Evil")
    assert (sig.indication, sig.sub_indication) == (INDETERMINATE,
                                                    "NO_CERTIFICATE_CHAIN_FOUND")
    assert not sig.path_trusted and sig.certificate_path == ("Nguyễn Thị Hồng Nhung",
                                                             "Evil Root")
    assert "no_trusted_chain" in codes(sig)


# -- revocation and the long term ---------------------------------------------------------

@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
@pytest.mark.parametrize("online", [True, False])
def test_revoked_after_signing_still_valid(fresh_pki, level, online):
    data = docs.sign(docs.base_pdf(), fresh_pki, level=level)
    revoked_at = NOW + timedelta(hours=1)
    fresh_pki.revoked[fresh_pki.signer.cert.serial_number] = Revoked(revoked_at)
    now = NOW + timedelta(hours=2)
    source = fresh_pki.source(now) if online else None
    report = verify_pdf(data, trust_roots=[fresh_pki.root.cert], revocation=source, now=now)
    sig = only(report, "Sig1")
    assert sig.indication == PASSED, sig.reasons
    assert sig.revocation.status == "good"  # at signing time
    if online:
        # The source says revoked; the signature timestamp proves the signature is older.
        assert sig.revocation.revoked_at == revoked_at
        assert sig.revocation.reason == "key_compromise"
        assert sig.revocation.sources == ("dss", "fetched")
        assert sig.best_signature_time < revoked_at
    else:
        assert sig.revocation.sources == ("dss",)


def test_lta_verifies_offline_a_month_later(fresh_pki):
    """The embedded revocation data is long stale: the document timestamp is the proof of
    existence that lets the past-validation path use it."""
    data = docs.sign(docs.base_pdf(), fresh_pki, level="B-LTA")
    fresh_pki.revoked[fresh_pki.signer.cert.serial_number] = Revoked(NOW + timedelta(hours=1))
    report = verify_pdf(data, trust_roots=[fresh_pki.root.cert],
                        now=NOW + timedelta(days=30))
    assert [s.indication for s in report.signatures] == [PASSED, PASSED]
    assert only(report, "Sig1").pades_level == "B-LTA"


def test_lt_without_document_timestamp_is_open_a_month_later(fresh_pki):
    """B-LT alone proves nothing about when its revocation data existed (ETSI): once that data
    is stale and no source is at hand, the answer is TRY_LATER, not a pass."""
    data = docs.sign(docs.base_pdf(), fresh_pki, level="B-LT")
    sig = only(verify_pdf(data, trust_roots=[fresh_pki.root.cert],
                          now=NOW + timedelta(days=30)), "Sig1")
    assert (sig.indication, sig.sub_indication) == (INDETERMINATE, "TRY_LATER")
    assert sig.pades_level == "B-LT"


def test_expired_certificate_lta_verifies(fresh_pki):
    short = fresh_pki.issue_signer("Ngắn Hạn", not_after=NOW + timedelta(days=5))
    data = docs.sign(docs.base_pdf(), fresh_pki, party=short, level="B-LTA")
    report = verify_pdf(data, trust_roots=[fresh_pki.root.cert], now=NOW + timedelta(days=30))
    assert only(report, "Sig1").indication == PASSED


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_signed_after_revocation_fails(fresh_pki, level):
    fresh_pki.revoked[fresh_pki.signer.cert.serial_number] = Revoked(NOW - timedelta(hours=1))
    data = docs.sign(docs.base_pdf(), fresh_pki, level=level)
    now = NOW + timedelta(hours=1)
    report = verify_pdf(data, trust_roots=[fresh_pki.root.cert],
                        revocation=fresh_pki.source(now), now=now)
    sig = only(report, "Sig1")
    assert (sig.indication, sig.sub_indication) == (FAILED, "REVOKED")
    assert sig.revocation.status == "revoked"
    assert sig.revocation.revoked_at == NOW - timedelta(hours=1)
    assert "signed_after_revocation" in codes(sig)
    detail = next(r.detail for r in sig.reasons if r.code == "signed_after_revocation")
    assert detail.startswith("timestamp" if level == "B-T" else "claimed signing time")


def test_revocation_source_without_answer_falls_back_to_the_dss(signed, pki):
    class Silent:
        def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None:
            return None

        def crls(self, cert_der: bytes) -> list[bytes]:
            raise RuntimeError("database down")

    sig = only(verify_pdf(signed["B-LT"], trust_roots=[pki.root.cert], revocation=Silent()),
               "Sig1")
    assert sig.indication == PASSED and sig.revocation.sources == ("dss",)


def test_a_revocation_answer_made_after_the_validation_time_still_counts(signed, pki):
    # The responder signs on a miss, after the verifier fixed its validation time: on a loaded
    # machine that answer's thisUpdate is seconds later. It must count (pyHanko's default 1 s
    # tolerance made it "not yet valid" and the verdict INDETERMINATE).
    late = pki.source(NOW + timedelta(minutes=5, seconds=20))  # thisUpdate: NOW + 20 s
    report = verify_pdf(signed["B-B"], trust_roots=[pki.root.cert], revocation=late, now=NOW)
    sig = only(report, "Sig1")
    assert (sig.indication, sig.revocation.status) == (PASSED, "good")
