"""The public verification page: upload a signed PDF, read one verdict per signature."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from kyso.validation import revocation_source, trust_anchors
from signer.errors import SignerError
from web import get_kyso
from web.errors import csrf_message, error_response, too_large_message, wants_json
from web.i18n import current_language
from web.security import limiter, upload_limit_bytes

if TYPE_CHECKING:
    from signer.verify import SignatureReport, VerificationReport

bp = Blueprint("verify", __name__)

MAX_FILENAME_CHARS = 120
VERDICT_CLASSES = {"TOTAL-PASSED": "passed", "TOTAL-FAILED": "failed",
                   "INDETERMINATE": "indeterminate"}
VERDICT_MARKS = {"passed": "✔", "failed": "✘", "indeterminate": "?"}


# -- the report as the page shows it (plain strings, no library object in templates) --------

@dataclass(frozen=True)
class SignatureView:
    heading: str
    field_name: str
    verdict_class: str  # passed | failed | indeterminate: the colour (green, red, amber)
    verdict_mark: str
    verdict_text: str
    indication: str
    sub_indication: str | None
    rows: tuple[tuple[str, str], ...]
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class ReportView:
    filename: str
    size: int
    sha256: str
    verdict_class: str
    verdict_mark: str
    verdict_text: str
    indication: str
    checked_at: str
    counts: str
    last_covered: str
    certified: str | None
    notes: tuple[str, ...]
    signatures: tuple[SignatureView, ...] = field(default_factory=tuple)


def report_view(report: VerificationReport, lang: str, filename: str,
                data: bytes) -> ReportView:
    """Everything the report page prints, worded by signer.report in `lang`."""
    from signer.report import format_time, message

    def m(key: str, **params: Any) -> str:
        return message(key, lang, **params)

    verdict = VERDICT_CLASSES.get(report.indication, "indeterminate")
    counters: dict[str, int] = {}
    signatures = []
    for sig in report.signatures:
        counters[sig.kind] = counters.get(sig.kind, 0) + 1
        signatures.append(_signature_view(sig, counters[sig.kind], m))
    return ReportView(
        filename=filename,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        verdict_class=verdict,
        verdict_mark=VERDICT_MARKS[verdict],
        verdict_text=m("overall." + report.indication),
        indication=report.indication,
        checked_at=format_time(report.validation_time),
        counts=m("counts", signatures=report.signature_count,
                 timestamps=report.document_timestamp_count, revisions=report.revisions),
        last_covered=f"{m('last_covered')}: "
                     f"{m('yes') if report.last_revision_covered else m('no')}",
        certified=m("certified_doc") if report.certified else None,
        notes=tuple(m("reason." + note.code) for note in report.notes),
        signatures=tuple(signatures),
    )


def _signature_view(sig: SignatureReport, n: int, m: Any) -> SignatureView:
    from signer.report import format_time, integrity_text, reason_text, revocation_text

    is_sig = sig.kind == "signature"
    rows: list[tuple[str, str]] = []
    if sig.signer is not None:
        s = sig.signer
        rows.append((m("signer") if is_sig else m("tsa"), s.common_name or s.subject))
        rows.append((m("organization"), s.organization or "-"))
        rows.append((m("serial"), s.serial))
        rows.append((m("issuer"), s.issuer_common_name or "-"))
    if is_sig:
        rows.append((m("signing_time"), format_time(sig.claimed_signing_time)))
    if sig.timestamp is not None:
        ts = sig.timestamp
        state = m("ts.ok") if ts.trusted else m("ts.untrusted") if ts.valid else m("ts.invalid")
        tsa = f" — {ts.tsa}" if ts.tsa and is_sig else ""
        rows.append((m("timestamp"), f"{format_time(ts.time)}{tsa} ({state})"))
    elif is_sig:
        rows.append((m("timestamp"), "-"))
    if sig.document_timestamps:
        rows.append((m("doc_timestamps"), ", ".join(
            f"{format_time(d.time)} ({d.indication})" for d in sig.document_timestamps)))
    rows.append((m("integrity"), integrity_text(sig, m)))
    if sig.certificate_path:
        trust = m("path.trusted") if sig.path_trusted else m("path.untrusted")
        rows.append((m("path"), f"{' → '.join(sig.certificate_path)} ({trust})"))
    else:
        rows.append((m("path"), m("path.untrusted")))
    if is_sig:
        rows.append((m("revocation"), revocation_text(sig, m)))
        rows.append((m("level"), sig.pades_level or m("level.none")))
    mod = sig.modification
    mod_text = m("mod." + mod.level)
    if mod.changed_fields:
        mod_text += "; " + m("changed_fields", fields=", ".join(mod.changed_fields))
    rows.append((m("modification"), mod_text))
    if mod.docmdp_permission is not None:
        respected = m("docmdp.respected") if mod.permitted else m("docmdp.violated")
        rows.append((m("docmdp"), f"{m(f'docmdp.{mod.docmdp_permission}')}; {respected}"))
    rows.append((m("sub_indication"), sig.sub_indication or m("none")))
    verdict = VERDICT_CLASSES.get(sig.indication, "indeterminate")
    return SignatureView(
        heading=m(sig.kind, n=n),
        field_name=sig.field_name,
        verdict_class=verdict,
        verdict_mark=VERDICT_MARKS[verdict],
        verdict_text=m(f"indication.{sig.kind}.{sig.indication}"),
        indication=sig.indication,
        sub_indication=sig.sub_indication,
        rows=tuple(rows),
        reasons=tuple(reason_text(r, m) for r in sig.reasons),
    )


# -- the pages ------------------------------------------------------------------------------

class _Refused(Exception):
    """An upload the page refuses: status, stable code and a message for people."""

    def __init__(self, status: int, code: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail


def _signer_refusal(exc: SignerError) -> _Refused:
    messages = {
        "not_a_pdf": lambda: gettext("The file is not a PDF document. Choose a PDF file."),
        "pdf_damaged": lambda: gettext("The PDF cannot be read: the file is damaged or "
                                       "incomplete."),
        "pdf_encrypted": lambda: gettext("The PDF is protected by a password and cannot be "
                                         "verified. Upload a copy without password "
                                         "protection."),
        "pdf_too_large": too_large_message,
        "no_signatures": lambda: gettext("The document has no digital signature and no "
                                         "document timestamp: there is nothing to verify."),
    }
    message = messages[exc.code]() if exc.code in messages else exc.message
    return _Refused(exc.http_status, exc.code, message, exc.message)


def _form(status: int = 200, error: _Refused | None = None) -> Response | tuple[str, int]:
    if error is not None and wants_json():
        return error_response(error.status, error.code, error.message)
    page = render_template("verify.html", error=error,
                           max_mb=current_app.config["KYSO_SETTINGS"].web.max_upload_mb)
    return page, status


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response | tuple[str, int]:
    return _form(413, _Refused(413, "request_entity_too_large", too_large_message()))


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Response | tuple[str, int]:
    # The form again, with a fresh token: sending it once more is all a person has to do.
    return _form(400, _Refused(400, "csrf_failed", csrf_message()))


@bp.get("/verify")
def form() -> Response | tuple[str, int]:
    return _form()


def _rate_limit() -> str:
    return str(current_app.config["KYSO_SETTINGS"].web.verify_rate_limit)


def _uploaded(limit: int) -> tuple[str, bytes]:
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise _Refused(400, "missing_file", gettext("Choose a PDF file to verify."))
    name = upload.filename.replace("\\", "/").rsplit("/", 1)[-1]
    if len(name) > MAX_FILENAME_CHARS:
        name = name[:MAX_FILENAME_CHARS] + "…"
    data = upload.read(limit + 1)
    if not data:
        raise _Refused(400, "empty_file", gettext("The file is empty. Choose a PDF file."))
    if len(data) > limit:
        raise _Refused(413, "request_entity_too_large", too_large_message())
    return name, data


@bp.post("/verify")
@limiter.limit(_rate_limit)
def verify() -> Response | tuple[str, int]:
    """Verify every signature and document timestamp of the uploaded PDF: the report page."""
    # pyHanko is imported on first use: the repository pages never pay for it.
    from signer.pdfinput import check_input
    from signer.verify import verify_pdf

    limit = upload_limit_bytes(current_app.config["KYSO_SETTINGS"])
    try:
        filename, data = _uploaded(limit)
        check_input(data, limit)  # the sender's mistakes first, then ours (no anchors)
        kyso = get_kyso()
        anchors = trust_anchors(kyso)
        if not anchors:
            raise _Refused(503, "no_trust_anchors", gettext(
                "The service has no trusted root certificate (root CA) yet to verify "
                "signatures against."))
        report = verify_pdf(data, trust_roots=anchors, revocation=revocation_source(kyso),
                            max_bytes=limit)
    except SignerError as exc:
        return _form(exc.http_status, _signer_refusal(exc))
    except _Refused as refused:
        return _form(refused.status, refused)
    view = report_view(report, current_language(), filename, data)
    response = Response(render_template("verify_report.html", report=view),
                        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"  # a report of someone's document
    return response
