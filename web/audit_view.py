"""The auditors' page: the audit log with filters, the chain check, and a CSV export."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request
from flask_babel import format_datetime, gettext

from ca import audit
from web import get_kyso
from web.auth import login_required

bp = Blueprint("audit", __name__, url_prefix="/audit")

PER_PAGE = 50
EXPORT_MAX = 100_000
MAX_FILTER = 256
VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d")
_TEXT_FILTERS = ("actor", "action", "object", "outcome")


class BadFilter(ValueError):
    """A filter value that cannot be used; the message is for people."""


@dataclass(frozen=True)
class Filters:
    """The GET form's values as typed, and what they mean for `audit.events`."""

    actor: str = ""
    action: str = ""
    object: str = ""
    outcome: str = ""
    date_from: str = ""
    date_to: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def query(self) -> dict[str, Any]:
        """The keyword arguments of `audit.events` / `audit.count_events`."""
        action = self.action
        if action and not action.endswith("*"):
            action += "*"  # the action filter is a prefix: `certificate.` finds them all
        return {"since": self.since, "until": self.until, "actor": self.actor or None,
                "action": action or None, "obj": self.object or None,
                "outcome": self.outcome or None}

    def args(self) -> dict[str, str]:
        """The non-empty form values (for the pages' links)."""
        values = {"actor": self.actor, "action": self.action, "object": self.object,
                  "outcome": self.outcome, "from": self.date_from, "to": self.date_to}
        return {k: v for k, v in values.items() if v}


def _day(text: str, label: str) -> date:
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise BadFilter(gettext("%(field)s: «%(value)s» is not a date (dd/mm/yyyy or yyyy-mm-dd).",
                            field=label, value=text))


def _vietnam_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=VIETNAM).astimezone(UTC)


def parse_filters(args: Any) -> Filters:
    """The filters of a request's query string; BadFilter for a value that cannot be used."""
    values = {name: str(args.get(name, "")).strip() for name in (*_TEXT_FILTERS, "from", "to")}
    for name in _TEXT_FILTERS:
        if len(values[name]) > MAX_FILTER or not values[name].isprintable():
            raise BadFilter(gettext("A filter is too long (at most %(n)s characters) or holds "
                                    "control characters.", n=MAX_FILTER))
    since = until = None
    if values["from"]:
        since = _vietnam_midnight(_day(values["from"], gettext("From")))
    if values["to"]:
        # Through the whole of that day in Vietnam time.
        until = _vietnam_midnight(_day(values["to"], gettext("To")) + timedelta(days=1))
    if since is not None and until is not None and since >= until:
        raise BadFilter(gettext("The start date must not be after the end date."))
    return Filters(values["actor"], values["action"], values["object"], values["outcome"],
                   values["from"], values["to"], since, until)


def _page_number(args: Any) -> int:
    text = str(args.get("page", "1")).strip() or "1"
    if not text.isdigit() or not 1 <= int(text) <= 10**9:
        raise BadFilter(gettext("The page number must be a whole number from 1."))
    return int(text)


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the page shows it: Vietnam time, details as indented JSON (escaped by Jinja)."""
    at = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
    details = row["details"]
    return {**row, "at_vn": format_datetime(at, "dd/MM/yyyy HH:mm:ss"),
            "details_json": json.dumps(details, ensure_ascii=False, sort_keys=True, indent=1)
            if details is not None else ""}


def _render(filters: Filters, *, status: int = 200, error: str | None = None,
            page: int = 1, chain: audit.VerifyReport | None = None) -> Response:
    rows: list[dict[str, Any]] = []
    total = 0
    if error is None:
        with get_kyso().readers() as s:
            total = audit.count_events(s, **filters.query())
            found = audit.events(s, **filters.query(), limit=PER_PAGE,
                                 offset=(page - 1) * PER_PAGE)
        rows = [_shown(r) for r in reversed(found)]  # newest first
    pages = max(1, (total + PER_PAGE - 1) // PER_PAGE)
    response = Response(render_template(
        "audit/log.html", filters=filters, rows=rows, total=total, page=page, pages=pages,
        error=error, chain=chain, args=filters.args()), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/")
@login_required("auditor")
def log() -> Response:
    try:
        filters = parse_filters(request.args)
        page = _page_number(request.args)
    except BadFilter as exc:
        return _render(Filters(), status=400, error=str(exc))
    return _render(filters, page=page)


@bp.post("/verify")
@login_required("auditor")
def verify() -> Response:
    """What `kyso audit verify` does: recompute the chain and check every seal."""
    kyso = get_kyso()
    with kyso.readers() as s:
        report = audit.verify(s, kyso.audit_signer.public_key_for_label)
    return _render(Filters(), chain=report)


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # No formula injection when the file is opened in a spreadsheet.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@bp.get("/export.csv")
@login_required("auditor")
def export_csv() -> Response:
    """The filtered entries (newest first, at most EXPORT_MAX) as CSV, times in UTC (ISO)."""
    from web.errors import error_response

    try:
        filters = parse_filters(request.args)
    except BadFilter as exc:
        return error_response(400, "bad_filter", str(exc))
    with get_kyso().readers() as s:
        found = audit.events(s, **filters.query(), limit=EXPORT_MAX)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["seq", "at_utc", "actor", "action", "object", "outcome", "request_id",
                     "details", "hash"])
    for r in reversed(found):
        details = json.dumps(r["details"], ensure_ascii=False, sort_keys=True) \
            if r["details"] is not None else ""
        writer.writerow([r["seq"], r["at"], *(_cell(r[k]) for k in
                         ("actor", "action", "object", "outcome", "request_id")),
                         _cell(details), r["hash"]])
    response = Response("\ufeff" + out.getvalue(), mimetype="text/csv")
    response.headers["Content-Disposition"] = 'attachment; filename="kyso-audit.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response
