"""Reports: JSON for machines, Vietnamese (default) and English text for people."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import verify_docs as docs
from verify_pki import NOW, Revoked

from signer.report import format_time, message, render_text, report_to_json
from signer.verify import verify_pdf

VN_TIME = re.compile(r"\d{2}/\d{2}/\d{4} \d{2}:\d{2}:\d{2} \+07:00")
SIGNATURE_KEYS = {
    "field_name", "kind", "revision", "sub_filter", "signer", "claimed_signing_time",
    "timestamp", "document_timestamps", "integrity", "certificate_path", "path_trusted",
    "revocation", "pades_level", "modification", "certified", "indication",
    "sub_indication", "reasons", "best_signature_time",
}


def test_vietnam_time_format():
    assert format_time(datetime(2025, 1, 1, 17, 30, 5, tzinfo=UTC)) == \
        "02/01/2025 00:30:05 +07:00"
    assert format_time(None) == "-"


def test_json_has_stable_keys_iso_times_and_codes(signed, check):
    report = check(signed["B-LTA"])
    data = report_to_json(report)
    json.dumps(data)  # serialisable as is
    assert set(data) == {"signatures", "signature_count", "document_timestamp_count",
                         "revisions", "last_revision_covered", "validation_time",
                         "indication", "file_size", "certified", "notes", "passed"}
    assert data["indication"] == "TOTAL-PASSED" and data["passed"] is True
    sig, ts = data["signatures"]
    assert set(sig) == SIGNATURE_KEYS == set(ts)
    assert sig["pades_level"] == "B-LTA" and sig["kind"] == "signature"
    assert ts["kind"] == "document_timestamp"
    assert sig["revocation"]["status"] == "good" and sig["revocation"]["sources"] == ["dss"]
    assert sig["modification"]["level"] == "lta_updates"
    assert re.fullmatch(r"[0-9a-f]+", sig["signer"]["serial"])
    for value in (data["validation_time"], sig["claimed_signing_time"],
                  sig["timestamp"]["time"], sig["document_timestamps"][0]["time"]):
        parsed = datetime.fromisoformat(value)
        assert parsed.utcoffset() == timedelta(0)


def test_json_of_a_failure_names_the_change(signed, check):
    data = report_to_json(check(docs.isa_add_content(signed["B-LT"])))
    (sig,) = data["signatures"]
    assert (sig["indication"], sig["sub_indication"]) == ("TOTAL-FAILED", "FORMAT_FAILURE")
    assert sig["reasons"][0]["code"] == "modified_after_signing"
    assert "page content stream" in sig["reasons"][0]["detail"]
    assert data["passed"] is False


def test_vietnamese_text_of_a_valid_signature(signed, check):
    text = render_text(check(signed["B-LTA"]))
    for phrase in ("KẾT QUẢ XÁC MINH CHỮ KÝ SỐ", "Chữ ký hợp lệ", "Người ký: Nguyễn Thị Hồng "
                   "Nhung", "Thời điểm ký", "Toàn vẹn: Nguyên vẹn", "Tình trạng thu hồi",
                   "Còn hiệu lực", "Mức chữ ký PAdES: B-LTA", "Dấu thời gian hợp lệ",
                   "Kyso Test Issuing CA → Kyso Test Root CA", "nhúng trong tệp (DSS)"):
        assert phrase in text, phrase
    assert VN_TIME.search(text)
    assert "TOTAL-PASSED" in text


def test_vietnamese_text_of_revoked_and_indeterminate(fresh_pki, signed, check):
    fresh_pki.revoked[fresh_pki.signer.cert.serial_number] = Revoked(NOW - timedelta(hours=1))
    data = docs.sign(docs.base_pdf(), fresh_pki, level="B-T")
    now = NOW + timedelta(hours=1)
    text = render_text(verify_pdf(data, trust_roots=[fresh_pki.root.cert],
                                  revocation=fresh_pki.source(now), now=now))
    assert "Chữ ký không hợp lệ" in text and "Đã bị thu hồi" in text
    assert "lý do: lộ khóa bí mật" in text
    assert "Chữ ký được tạo sau khi chứng thư số bị thu hồi" in text
    open_text = render_text(check(signed["B-B"]))
    assert "Không xác định được tính hợp lệ của chữ ký" in open_text
    assert "Tình trạng thu hồi (tại thời điểm ký): Không xác định" in open_text


def test_english_text(signed, check):
    text = render_text(check(docs.isa_add_content(signed["B-LT"])), lang="en")
    assert "Invalid signature (TOTAL-FAILED / FORMAT_FAILURE)" in text
    assert "The document was changed after signing" in text
    assert "Signer: Nguyễn Thị Hồng Nhung" in text


def test_unknown_language_is_refused(signed, check):
    with pytest.raises(ValueError):
        render_text(check(signed["B-LT"]), lang="fr")


def test_every_reason_code_has_both_languages():
    import signer.verify as verify

    codes = set(verify._SUBINDIC_REASONS.values()) | {
        "modified_after_signing", "docmdp_violated", "byte_range_invalid",
        "signature_unreadable", "unsupported_format", "certification_not_first",
        "signed_after_revocation", "timestamp_invalid", "seed_value", "validation_error",
        "validation_failed", "ades", "unsigned_changes_at_end", "validation_data_at_end"}
    for code in codes:
        for lang in ("vi", "en"):
            assert message(f"reason.{code}", lang) != f"reason.{code}", (code, lang)
    assert message("reason.hash_mismatch", "vi") != message("reason.hash_mismatch", "en")
