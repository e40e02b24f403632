"""Verification reports for people and machines: JSON, and text in Vietnamese (default) or English.

Every human-readable string lives in a gettext catalog per language,
signer/locale/<lang>/LC_MESSAGES/report.po (compiled to report.mo), keyed by message id; the
signer stays free of Flask, so the stdlib's gettext reads them. Times are shown
in Vietnam time, "dd/mm/yyyy hh:mm:ss +07:00"; JSON carries ISO 8601 UTC and machine codes.
"""

from __future__ import annotations

import dataclasses
import gettext
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from signer.verify import PASSED, Reason, SignatureReport, VerificationReport

__all__ = ["LANGUAGES", "format_time", "integrity_text", "message", "reason_text",
           "render_text", "report_to_json", "revocation_text"]

VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
LANGUAGES = ("vi", "en")

_LOCALE_DIR = Path(__file__).resolve().parent / "locale"


@lru_cache(maxsize=len(LANGUAGES))
def _catalog(lang: str) -> gettext.GNUTranslations:
    """The compiled gettext catalog signer/locale/<lang>/LC_MESSAGES/report.mo (msgid: the
    message id used here; msgstr: the text)."""
    return gettext.translation("report", localedir=_LOCALE_DIR, languages=[lang])


def _message_table(lang: str) -> dict[str, str]:
    # GNUTranslations keeps its entries in `_catalog` (CPython, stable since Python 2); the
    # empty msgid is the catalog header.
    return {k: v for k, v in _catalog(lang)._catalog.items() if k}  # type: ignore[attr-defined]


# Every message id and its text, per language (for tests and tools that list them).
_MESSAGES: dict[str, dict[str, str]] = {lang: _message_table(lang) for lang in LANGUAGES}


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
    out.append(f"  {m('integrity')}: {integrity_text(sig, m)}")
    if sig.certificate_path:
        trust = m("path.trusted") if sig.path_trusted else m("path.untrusted")
        out.append(f"  {m('path')}: {' → '.join(sig.certificate_path)} ({trust})")
    if is_sig:
        out.append(f"  {m('revocation')}: {revocation_text(sig, m)}")
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
            out.append(f"    - {reason_text(reason, m)}")
    return out


def integrity_text(sig: SignatureReport, m: Any) -> str:
    """Integrity of a signature in words (`m`: message id -> text in the wanted language)."""
    i = sig.integrity
    if i.digest_ok is None or i.signature_ok is None:
        return m("integrity.unknown")
    if not i.digest_ok:
        return m("integrity.hash")
    if not i.signature_ok:
        return m("integrity.sig")
    return m("integrity.ok")


def revocation_text(sig: SignatureReport, m: Any) -> str:
    """Revocation status at signing time, the revocation time and reason, and the sources."""
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


def reason_text(reason: Reason, m: Any) -> str:
    """A reason of the verdict in words, with its detail."""
    text = m("reason." + reason.code)
    return f"{text} ({reason.detail})" if reason.detail else text

