"""Verification reports for people and machines: JSON, and text in Vietnamese (default) or English.

Every human-readable string lives in `_MESSAGES`, one dict per language keyed by message id:
a gettext catalog (Flask-Babel) can take it over later by keeping the ids. Times are shown
in Vietnam time, "dd/mm/yyyy hh:mm:ss +07:00"; JSON carries ISO 8601 UTC and machine codes.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from signer.verify import PASSED, Reason, SignatureReport, VerificationReport

__all__ = ["LANGUAGES", "format_time", "message", "render_text", "report_to_json"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
LANGUAGES = ("vi", "en")

_MESSAGES: dict[str, dict[str, str]] = {
    "vi": {
        "title": "KẾT QUẢ XÁC MINH CHỮ KÝ SỐ",
        "checked_at": "Thời điểm kiểm tra",
        "overall": "Kết luận chung",
        "overall.TOTAL-PASSED": "Tất cả chữ ký hợp lệ",
        "overall.TOTAL-FAILED": "Có chữ ký không hợp lệ",
        "overall.INDETERMINATE": "Có chữ ký chưa xác định được tính hợp lệ",
        "counts": "Số chữ ký: {signatures}; dấu thời gian tài liệu: {timestamps}; "
                  "số phiên bản của tệp: {revisions}",
        "certified_doc": "Tài liệu được chứng nhận (chữ ký chứng nhận DocMDP)",
        "last_covered": "Phần cuối của tệp được chữ ký bao phủ",
        "yes": "Có",
        "no": "Không",
        "signature": "Chữ ký {n}",
        "document_timestamp": "Dấu thời gian tài liệu {n}",
        "field": "Trường",
        "result": "Kết quả",
        "indication.signature.TOTAL-PASSED": "Chữ ký hợp lệ",
        "indication.signature.TOTAL-FAILED": "Chữ ký không hợp lệ",
        "indication.signature.INDETERMINATE": "Không xác định được tính hợp lệ của chữ ký",
        "indication.document_timestamp.TOTAL-PASSED": "Dấu thời gian hợp lệ",
        "indication.document_timestamp.TOTAL-FAILED": "Dấu thời gian không hợp lệ",
        "indication.document_timestamp.INDETERMINATE":
            "Không xác định được tính hợp lệ của dấu thời gian",
        "signer": "Người ký",
        "tsa": "Đơn vị cấp dấu thời gian",
        "organization": "Tổ chức",
        "serial": "Số hiệu chứng thư số",
        "issuer": "Tổ chức cấp chứng thư",
        "signing_time": "Thời điểm ký (theo người ký khai)",
        "timestamp": "Dấu thời gian",
        "ts.ok": "hợp lệ, đáng tin cậy",
        "ts.untrusted": "nguyên vẹn nhưng chưa xác minh được nguồn cấp",
        "ts.invalid": "không hợp lệ",
        "doc_timestamps": "Dấu thời gian tài liệu bao phủ chữ ký",
        "integrity": "Toàn vẹn",
        "integrity.ok": "Nguyên vẹn: nội dung được ký không bị thay đổi, chữ ký đúng",
        "integrity.hash": "Không nguyên vẹn: nội dung được ký đã bị thay đổi",
        "integrity.sig": "Không nguyên vẹn: giá trị chữ ký sai",
        "integrity.unknown": "Không kiểm tra được",
        "path": "Chuỗi chứng thư",
        "path.trusted": "tin cậy",
        "path.untrusted": "không đến được chứng thư gốc tin cậy",
        "revocation": "Tình trạng thu hồi (tại thời điểm ký)",
        "revocation.good": "Còn hiệu lực",
        "revocation.revoked": "Đã bị thu hồi",
        "revocation.unknown": "Không xác định",
        "revoked_at": "thu hồi lúc {time}",
        "revoked_later": "chứng thư bị thu hồi sau thời điểm ký, lúc {time}",
        "revocation.reason": "lý do: {reason}",
        "revocation.ca": "chứng thư của tổ chức cấp bị thu hồi",
        "sources": "nguồn dữ liệu: {sources}",
        "source.dss": "nhúng trong tệp (DSS)",
        "source.cms": "nhúng trong chữ ký (CMS)",
        "source.fetched": "tra cứu trực tuyến",
        "level": "Mức chữ ký PAdES",
        "level.none": "không đạt",
        "modification": "Thay đổi sau khi ký",
        "mod.none": "Không có thay đổi",
        "mod.lta_updates": "Chỉ bổ sung dữ liệu xác thực dài hạn (DSS, dấu thời gian)",
        "mod.form_filling": "Điền biểu mẫu hoặc thêm chữ ký (được phép)",
        "mod.annotations": "Thêm chú thích",
        "mod.other": "Có thay đổi không được phép",
        "changed_fields": "trường đã thay đổi: {fields}",
        "docmdp": "Chứng nhận (DocMDP)",
        "docmdp.1": "P=1: không cho phép thay đổi",
        "docmdp.2": "P=2: cho phép điền biểu mẫu và ký",
        "docmdp.3": "P=3: cho phép điền biểu mẫu, ký và chú thích",
        "docmdp.respected": "các thay đổi sau đó tuân thủ quyền này",
        "docmdp.violated": "các thay đổi sau đó vi phạm quyền này",
        "reasons": "Lý do",
        "sub_indication": "Mã ETSI",
        "none": "không có",
        "notes": "Ghi chú",
        # reasons
        "reason.modified_after_signing":
            "Tài liệu bị thay đổi sau khi ký theo cách chữ ký không cho phép",
        "reason.docmdp_violated": "Thay đổi sau khi ký vượt quá quyền chứng nhận (DocMDP)",
        "reason.byte_range_invalid":
            "Vùng dữ liệu được ký (/ByteRange) không bao phủ đúng phiên bản được ký",
        "reason.signature_unreadable": "Không đọc được dữ liệu chữ ký (/ByteRange, /Contents)",
        "reason.unsupported_format": "Định dạng chữ ký không được hỗ trợ",
        "reason.certification_not_first": "Chữ ký chứng nhận không phải chữ ký đầu tiên",
        "reason.hash_mismatch": "Mã băm không khớp: nội dung được ký đã bị thay đổi",
        "reason.signature_invalid": "Giá trị chữ ký không đúng",
        "reason.certificate_revoked": "Chứng thư số của người ký đã bị thu hồi",
        "reason.signed_after_revocation": "Chữ ký được tạo sau khi chứng thư số bị thu hồi",
        "reason.ca_revoked": "Chứng thư của tổ chức cấp đã bị thu hồi",
        "reason.certificate_expired": "Chứng thư số đã hết hạn và không có bằng chứng thời điểm ký",
        "reason.certificate_not_yet_valid": "Chứng thư số chưa có hiệu lực tại thời điểm ký",
        "reason.no_trusted_chain": "Không xây dựng được chuỗi đến chứng thư gốc tin cậy",
        "reason.no_signing_certificate": "Không tìm thấy chứng thư số của người ký",
        "reason.certificate_constraints": "Chứng thư số không đáp ứng ràng buộc sử dụng",
        "reason.certificate_chain_failure": "Lỗi khi kiểm tra chuỗi chứng thư",
        "reason.revocation_unknown":
            "Không có dữ liệu thu hồi (OCSP/CRL) còn hiệu lực để kiểm tra chứng thư",
        "reason.no_proof_of_existence": "Không có bằng chứng tồn tại (dấu thời gian) phù hợp",
        "reason.weak_algorithm": "Thuật toán mật mã không còn được chấp nhận",
        "reason.timestamp_order": "Thứ tự các dấu thời gian không hợp lệ",
        "reason.signature_constraints": "Chữ ký không đáp ứng ràng buộc của chính sách",
        "reason.timestamp_invalid": "Dấu thời gian của chữ ký không hợp lệ hoặc không tin cậy",
        "reason.seed_value": "Chữ ký không tuân thủ ràng buộc của trường chữ ký",
        "reason.validation_error": "Lỗi trong quá trình xác minh",
        "reason.validation_failed": "Xác minh không thành công",
        "reason.format_failure": "Lỗi định dạng chữ ký",
        "reason.ades": "Chi tiết kỹ thuật",
        "reason.unsigned_changes_at_end": "Phần cuối của tệp không được chữ ký nào bao phủ",
        "reason.validation_data_at_end":
            "Sau chữ ký cuối chỉ có dữ liệu xác thực dài hạn được bổ sung (hợp lệ)",
        # RFC 5280 revocation reasons (asn1crypto names)
        "crl.unspecified": "không nêu lý do",
        "crl.key_compromise": "lộ khóa bí mật",
        "crl.ca_compromise": "lộ khóa của tổ chức cấp",
        "crl.affiliation_changed": "thay đổi thông tin",
        "crl.superseded": "đã được thay thế",
        "crl.cessation_of_operation": "ngừng hoạt động",
        "crl.certificate_hold": "tạm dừng",
        "crl.remove_from_crl": "gỡ khỏi danh sách thu hồi",
        "crl.privilege_withdrawn": "rút quyền",
        "crl.aa_compromise": "lộ khóa của tổ chức cấp thuộc tính",
    },
    "en": {
        "title": "DIGITAL SIGNATURE VERIFICATION REPORT",
        "checked_at": "Checked at",
        "overall": "Overall result",
        "overall.TOTAL-PASSED": "All signatures are valid",
        "overall.TOTAL-FAILED": "At least one signature is invalid",
        "overall.INDETERMINATE": "At least one signature could not be fully verified",
        "counts": "Signatures: {signatures}; document timestamps: {timestamps}; "
                  "file revisions: {revisions}",
        "certified_doc": "Certified document (DocMDP certification signature)",
        "last_covered": "The end of the file is covered by a signature",
        "yes": "Yes",
        "no": "No",
        "signature": "Signature {n}",
        "document_timestamp": "Document timestamp {n}",
        "field": "Field",
        "result": "Result",
        "indication.signature.TOTAL-PASSED": "Valid signature",
        "indication.signature.TOTAL-FAILED": "Invalid signature",
        "indication.signature.INDETERMINATE": "Signature validity could not be determined",
        "indication.document_timestamp.TOTAL-PASSED": "Valid timestamp",
        "indication.document_timestamp.TOTAL-FAILED": "Invalid timestamp",
        "indication.document_timestamp.INDETERMINATE":
            "Timestamp validity could not be determined",
        "signer": "Signer",
        "tsa": "Time-stamping authority",
        "organization": "Organization",
        "serial": "Certificate serial",
        "issuer": "Issued by",
        "signing_time": "Signing time (claimed by the signer)",
        "timestamp": "Timestamp",
        "ts.ok": "valid, trusted",
        "ts.untrusted": "intact but its issuer could not be verified",
        "ts.invalid": "invalid",
        "doc_timestamps": "Document timestamps covering this signature",
        "integrity": "Integrity",
        "integrity.ok": "Intact: the signed content is unchanged and the signature is correct",
        "integrity.hash": "Broken: the signed content was changed",
        "integrity.sig": "Broken: the signature value is wrong",
        "integrity.unknown": "Could not be checked",
        "path": "Certificate path",
        "path.trusted": "trusted",
        "path.untrusted": "does not reach a trusted root",
        "revocation": "Revocation status (at signing time)",
        "revocation.good": "Not revoked",
        "revocation.revoked": "Revoked",
        "revocation.unknown": "Unknown",
        "revoked_at": "revoked at {time}",
        "revoked_later": "the certificate was revoked after signing, at {time}",
        "revocation.reason": "reason: {reason}",
        "revocation.ca": "an issuing CA certificate is revoked",
        "sources": "data from: {sources}",
        "source.dss": "embedded in the file (DSS)",
        "source.cms": "embedded in the signature (CMS)",
        "source.fetched": "looked up online",
        "level": "PAdES level",
        "level.none": "not reached",
        "modification": "Changes after signing",
        "mod.none": "None",
        "mod.lta_updates": "Long-term validation data only (DSS, timestamps)",
        "mod.form_filling": "Form filling or further signatures (permitted)",
        "mod.annotations": "Annotations added",
        "mod.other": "Changes that are not permitted",
        "changed_fields": "changed fields: {fields}",
        "docmdp": "Certification (DocMDP)",
        "docmdp.1": "P=1: no changes allowed",
        "docmdp.2": "P=2: form filling and signing allowed",
        "docmdp.3": "P=3: form filling, signing and annotations allowed",
        "docmdp.respected": "later changes respect it",
        "docmdp.violated": "later changes violate it",
        "reasons": "Reasons",
        "sub_indication": "ETSI code",
        "none": "none",
        "notes": "Notes",
        "reason.modified_after_signing":
            "The document was changed after signing in a way the signature does not permit",
        "reason.docmdp_violated": "Changes after signing exceed the certification (DocMDP)",
        "reason.byte_range_invalid": "The signed byte range (/ByteRange) does not cover "
                                     "the signed revision as it should",
        "reason.signature_unreadable": "The signature data (/ByteRange, /Contents) is unreadable",
        "reason.unsupported_format": "Unsupported signature format",
        "reason.certification_not_first": "The certification signature is not the first one",
        "reason.hash_mismatch": "Digest mismatch: the signed content was changed",
        "reason.signature_invalid": "The signature value is wrong",
        "reason.certificate_revoked": "The signer's certificate is revoked",
        "reason.signed_after_revocation": "The signature was made after the certificate was "
                                          "revoked",
        "reason.ca_revoked": "An issuing CA certificate is revoked",
        "reason.certificate_expired": "The certificate has expired and nothing proves when "
                                      "the signature was made",
        "reason.certificate_not_yet_valid": "The certificate was not yet valid when signing",
        "reason.no_trusted_chain": "No path to a trusted root certificate",
        "reason.no_signing_certificate": "The signer's certificate is missing",
        "reason.certificate_constraints": "The certificate does not meet usage constraints",
        "reason.certificate_chain_failure": "The certificate path could not be validated",
        "reason.revocation_unknown": "No current revocation data (OCSP/CRL) for the certificate",
        "reason.no_proof_of_existence": "No suitable proof of existence (timestamp)",
        "reason.weak_algorithm": "A cryptographic algorithm is no longer acceptable",
        "reason.timestamp_order": "Timestamps are in an impossible order",
        "reason.signature_constraints": "The signature does not meet the policy's constraints",
        "reason.timestamp_invalid": "The signature timestamp is invalid or untrusted",
        "reason.seed_value": "The signature does not meet its field's seed value constraints",
        "reason.validation_error": "Error during verification",
        "reason.validation_failed": "Verification failed",
        "reason.format_failure": "Signature format error",
        "reason.ades": "Technical detail",
        "reason.unsigned_changes_at_end": "The end of the file is not covered by any signature",
        "reason.validation_data_at_end":
            "Only long-term validation data was added after the last signature (permitted)",
        "crl.unspecified": "unspecified",
        "crl.key_compromise": "key compromise",
        "crl.ca_compromise": "CA compromise",
        "crl.affiliation_changed": "affiliation changed",
        "crl.superseded": "superseded",
        "crl.cessation_of_operation": "cessation of operation",
        "crl.certificate_hold": "certificate hold",
        "crl.remove_from_crl": "removed from CRL",
        "crl.privilege_withdrawn": "privilege withdrawn",
        "crl.aa_compromise": "AA compromise",
    },
}


def message(key: str, lang: str = "vi", **params: Any) -> str:
    """The message `key` in `lang` (English, then the key itself, when missing)."""
    catalog = _MESSAGES.get(lang, _MESSAGES["vi"])
    text = catalog.get(key) or _MESSAGES["en"].get(key) or key
    return text.format(**params) if params else text


def format_time(dt: datetime | None) -> str:
    """Vietnam time for people: "dd/mm/yyyy hh:mm:ss +07:00"."""
    if dt is None:
        return "-"
    local = (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(VIETNAM)
    return local.strftime("%d/%m/%Y %H:%M:%S ") + local.isoformat()[-6:]


# -- JSON -----------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC) \
            .isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def report_to_json(report: VerificationReport) -> dict[str, Any]:
    """The report as JSON-ready data: stable keys, ISO 8601 UTC times, machine codes
    (indication, sub_indication, reason codes, revocation status, modification level)."""
    out: dict[str, Any] = _jsonable(report)
    out["passed"] = report.indication == PASSED
    return out


# -- text -----------------------------------------------------------------------------------

def render_text(report: VerificationReport, lang: str = "vi") -> str:
    """A human-readable report, Vietnamese by default ("en" for English)."""
    if lang not in LANGUAGES:
        raise ValueError(f"unsupported language {lang!r}; use one of {', '.join(LANGUAGES)}")

    def m(key: str, **params: Any) -> str:
        return message(key, lang, **params)

    lines = [m("title"), "=" * len(m("title")),
             f"{m('checked_at')}: {format_time(report.validation_time)}",
             f"{m('overall')}: {m('overall.' + report.indication)} ({report.indication})",
             m("counts", signatures=report.signature_count,
               timestamps=report.document_timestamp_count, revisions=report.revisions),
             f"{m('last_covered')}: {m('yes') if report.last_revision_covered else m('no')}"]
    if report.certified:
        lines.append(m("certified_doc"))
    for note in report.notes:
        lines.append(f"{m('notes')}: {m('reason.' + note.code)}")
    counters = {"signature": 0, "document_timestamp": 0}
    for sig in report.signatures:
        counters[sig.kind] = counters.get(sig.kind, 0) + 1
        lines.append("")
        lines.extend(_render_signature(sig, counters[sig.kind], m))
    return "\n".join(lines) + "\n"


def _render_signature(sig: SignatureReport, n: int, m: Any) -> list[str]:
    is_sig = sig.kind == "signature"
    heading = f"{m(sig.kind, n=n)} — {m('field')} «{sig.field_name}»"
    out = [heading, "-" * len(heading)]
    verdict = m(f"indication.{sig.kind}.{sig.indication}")
    code = sig.indication + (f" / {sig.sub_indication}" if sig.sub_indication else "")
    out.append(f"  {m('result')}: {verdict} ({code})")
    if sig.signer is not None:
        s = sig.signer
        who = s.common_name or s.subject
        out.append(f"  {m('signer') if is_sig else m('tsa')}: {who}")
        if s.organization:
            out.append(f"  {m('organization')}: {s.organization}")
        out.append(f"  {m('serial')}: {s.serial}")
        if s.issuer_common_name:
            out.append(f"  {m('issuer')}: {s.issuer_common_name}")
    if is_sig:
        out.append(f"  {m('signing_time')}: {format_time(sig.claimed_signing_time)}")
    if sig.timestamp is not None:
        ts = sig.timestamp
        state = m("ts.ok") if ts.trusted else m("ts.untrusted") if ts.valid else m("ts.invalid")
        tsa = f" — {ts.tsa}" if ts.tsa and is_sig else ""
        out.append(f"  {m('timestamp')}: {format_time(ts.time)}{tsa} ({state})")
    if sig.document_timestamps:
        stamps = ", ".join(f"{format_time(d.time)} ({d.indication})"
                           for d in sig.document_timestamps)
        out.append(f"  {m('doc_timestamps')}: {stamps}")
    out.append(f"  {m('integrity')}: {_integrity_text(sig, m)}")
    if sig.certificate_path:
        trust = m("path.trusted") if sig.path_trusted else m("path.untrusted")
        out.append(f"  {m('path')}: {' → '.join(sig.certificate_path)} ({trust})")
    if is_sig:
        out.append(f"  {m('revocation')}: {_revocation_text(sig, m)}")
        out.append(f"  {m('level')}: {sig.pades_level or m('level.none')}")
    mod = sig.modification
    mod_text = m("mod." + mod.level)
    if mod.changed_fields:
        mod_text += "; " + m("changed_fields", fields=", ".join(mod.changed_fields))
    out.append(f"  {m('modification')}: {mod_text}")
    if mod.docmdp_permission is not None:
        respected = m("docmdp.respected") if mod.permitted else m("docmdp.violated")
        out.append(f"  {m('docmdp')}: {m(f'docmdp.{mod.docmdp_permission}')}; {respected}")
    if sig.reasons:
        out.append(f"  {m('reasons')}:")
        for reason in sig.reasons:
            out.append(f"    - {_reason_text(reason, m)}")
    return out


def _integrity_text(sig: SignatureReport, m: Any) -> str:
    i = sig.integrity
    if i.digest_ok is None or i.signature_ok is None:
        return m("integrity.unknown")
    if not i.digest_ok:
        return m("integrity.hash")
    if not i.signature_ok:
        return m("integrity.sig")
    return m("integrity.ok")


def _revocation_text(sig: SignatureReport, m: Any) -> str:
    r = sig.revocation
    parts = [m("revocation." + r.status)]
    if r.revoked_at is not None:
        key = "revoked_at" if r.status == "revoked" else "revoked_later"
        parts.append(m(key, time=format_time(r.revoked_at)))
        if r.reason:
            parts.append(m("revocation.reason", reason=m("crl." + r.reason)))
    if r.ca_revoked:
        parts.append(m("revocation.ca"))
    if r.sources:
        parts.append(m("sources", sources=", ".join(m("source." + s) for s in r.sources)))
    return "; ".join(parts)


def _reason_text(reason: Reason, m: Any) -> str:
    text = m("reason." + reason.code)
    return f"{text} ({reason.detail})" if reason.detail else text

