"""Bulk change after a reorganization: a mapping (CSV) of old -> new organization, unit and
locality, planned (dry run), then applied as one audited, resumable batch: each affected
official certificate reissued (same key), then the old one revoked, the official's record
updated and the official notified.

Public API (the CLI `kyso lifecycle reorg` and the console page use these names):

- `parse_mapping(text, organizations=None) -> list[MappingRow]` (MappingRejected naming rows)
- `plan(authority, rows, now=None) -> Plan` (dry run: what `run` will do);
  `dry_run(authority, mapping_text) -> Plan` parses and plans, naming every problem at once
- `start(authority, mapping_text, rekey=False, actor=...) -> int` (batch id; resumes the
  unfinished batch of the same mapping)
- `run(authority, batch_id, actor=..., progress=None, chunk_size=100) -> BatchReport`
- `show(authority_or_session, batch_id) -> BatchView`, `list_batches(...) -> list[BatchSummary]`
- `complete_rekey(authority, batch_id, official_id, pin, actor=...)` (a `--rekey` batch: the
  official's new key needs their PIN)

Decisions: only VALID (not expired) official certificates are reissued; a certificate on
hold is left alone and named in the plan's notes (a hold is a suspension under
investigation: reissuing would silently end it). A certificate whose official already has a
newer valid certificate of the same profile is skipped with a note. Rows whose effective
date is in the future are shown by the dry run as "not yet effective" and refused by `start`.
A certificate that already has the new content is not reissued (a note). The same mapping
(SHA-256 of its text) resumes its unfinished batch, and is refused once applied.

Crash safety: the new certificates' requests carry `requested_by = reorg-batch:<id>`; a run
resuming a batch adopts a signed successor of that batch instead of issuing again, and marks
a reservation an interrupted run never stored as failed (it was never published) before
issuing anew. Item states: pending -> issued (new serial recorded) -> done (old revoked,
official updated, notice queued, in one transaction per chunk); waiting (--rekey: the
official's PIN is needed); failed (with the reason, e.g. renewed outside the batch).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import socket
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509
from sqlalchemy.orm import Session

from ca import audit, lifecycle, outbox, store
from ca.authority import Reissue, certificate_content
from ca.errors import (
    CAError,
    InvalidRequest,
    LintFailed,
    MappingRejected,
    NotFound,
    RowProblem,
    StateConflict,
)
from ca.models import OfficialRecord, ReorgBatchRecord

HEADER = ("old_organization", "old_unit", "old_locality",
          "new_organization", "new_unit", "new_locality", "effective_date")
BATCH_STATUSES = ("planned", "running", "waiting", "done", "failed")
ITEM_STATUSES = ("pending", "waiting", "issued", "done", "failed")
MAX_ROWS = 5000
MAX_FIELD = 128  # the organization column; the profile limits the subject further
# A process running a batch whose heartbeat is older than this is taken for dead.
RUNNER_LEASE = timedelta(minutes=10)
WINDOW = 4  # chunks handed to issue_batch at once (its lint runs ahead within a call)
VN = ZoneInfo("Asia/Ho_Chi_Minh")
# The reason given to officials in the notice (Vietnamese), by revocation reason.
NOTICE_REASONS = {
    "affiliationChanged": "Sắp xếp lại tổ chức: thay đổi cơ quan, đơn vị công tác",
    "superseded": "Sắp xếp lại tổ chức: thay đổi thông tin đơn vị, địa bàn trên chứng thư",
}
log = logging.getLogger(__name__)

__all__ = ["HEADER", "BatchReport", "BatchSummary", "BatchView", "ItemView", "MappingRejected",
           "MappingRow", "Plan", "PlanItem", "PlanNote", "Retried", "RowProblem", "batch_tag",
           "complete_rekey", "dry_run", "known_organizations", "list_batches",
           "mapping_sha256", "parse_mapping", "plan", "retry", "run", "show", "start",
           "summary"]


@dataclass(frozen=True)
class MappingRow:
    """One line of the mapping. Old fields: None matches any value. New fields: None keeps
    the certificate's value. `row` is the line number in the file (the header is line 1)."""

    row: int
    old_organization: str | None
    old_unit: str | None
    old_locality: str | None
    new_organization: str | None
    new_unit: str | None
    new_locality: str | None
    effective_date: date

    @property
    def changes(self) -> dict[str, str]:
        """The content fields this row changes (field -> new value)."""
        return {k: v for k, v in (("organization", self.new_organization),
                                  ("unit", self.new_unit), ("locality", self.new_locality))
                if v is not None}


@dataclass(frozen=True)
class PlanItem:
    """One certificate the batch will reissue: old serial, its official, the current and new
    subject, the revocation reason of the old one (superseded / affiliationChanged)."""

    old_serial: str
    official_id: int
    official_name: str
    ca_name: str
    row: int  # the mapping row that matched it
    old_subject: str
    new_subject: str
    content: dict[str, str | None]  # the new content (CONTENT_FIELDS)
    changes: dict[str, str]  # what the row changes (organization / unit / locality)
    reason: str  # "superseded" | "affiliationChanged"
    effective: bool = True  # False: its row's effective date is still in the future

    def as_dict(self) -> dict[str, Any]:
        return {"old_serial": self.old_serial, "official_id": self.official_id,
                "official_name": self.official_name, "ca": self.ca_name, "row": self.row,
                "old_subject": self.old_subject, "new_subject": self.new_subject,
                "reason": self.reason, "effective": self.effective}


@dataclass(frozen=True)
class PlanNote:
    """A certificate matched but left alone (on hold, superseded by a newer one...)."""

    serial: str
    row: int
    message: str


@dataclass(frozen=True)
class Plan:
    """What applying the mapping will do, sorted by (organization, subject, serial).
    `warnings`: rows matching nothing, rows not yet effective. `notes`: certificates matched
    but skipped, and why."""

    rows: list[MappingRow]
    items: list[PlanItem]
    warnings: list[RowProblem] = field(default_factory=list)
    notes: list[PlanNote] = field(default_factory=list)
    not_yet_effective: list[int] = field(default_factory=list)  # row numbers

    @property
    def ready(self) -> bool:
        """Whether `start` would accept it (no row waiting for its effective date)."""
        return not self.not_yet_effective

    def as_dict(self) -> dict[str, Any]:
        return {"items": [i.as_dict() for i in self.items],
                "warnings": [{"row": w.row, "message": w.message} for w in self.warnings],
                "notes": [{"serial": n.serial, "row": n.row, "message": n.message}
                          for n in self.notes],
                "not_yet_effective": self.not_yet_effective, "count": len(self.items)}


@dataclass(frozen=True)
class ItemView:
    """One certificate of a batch: old -> new, the reason, where it stands."""

    old_serial: str
    official_id: int
    old_subject: str
    new_subject: str
    reason: str
    status: str  # pending | waiting | issued | done | failed
    new_serial: str | None
    error: str | None
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {"old_serial": self.old_serial, "official_id": self.official_id,
                "old_subject": self.old_subject, "new_subject": self.new_subject,
                "reason": self.reason, "status": self.status, "new_serial": self.new_serial,
                "error": self.error, "updated_at": self.updated_at.isoformat()}


@dataclass(frozen=True)
class BatchSummary:
    """A batch in a list: id, status, counts."""

    id: int
    status: str  # planned | running | waiting | done | failed
    mapping_sha256: str
    created_by: str
    created_at: datetime
    rekey: bool
    total: int
    done: int
    failed: int

    @property
    def remaining(self) -> int:
        return self.total - self.done - self.failed

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "mapping_sha256": self.mapping_sha256,
                "created_by": self.created_by, "created_at": self.created_at.isoformat(),
                "rekey": self.rekey, "total": self.total, "done": self.done,
                "failed": self.failed}


@dataclass(frozen=True)
class BatchView:
    """A batch with every certificate old -> new (the final report)."""

    batch: BatchSummary
    items: list[ItemView]
    mapping_text: str

    def as_dict(self) -> dict[str, Any]:
        return {**self.batch.as_dict(), "items": [i.as_dict() for i in self.items]}


@dataclass(frozen=True)
class BatchReport:
    """What one `run` did: the batch afterwards, and how many items this run finished."""

    batch: BatchSummary
    done_now: int
    failed_now: int
    adopted: int  # items whose new certificate a previous (interrupted) run had issued



# -- the mapping ----------------------------------------------------------------------------

_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_VN_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def _nfc(value: str | None) -> str | None:
    if value is None:
        return None
    value = unicodedata.normalize("NFC", value).strip()
    return value or None


def _parse_date(text: str) -> date | None:
    text = text.strip()
    m = _ISO_DATE.fullmatch(text)
    try:
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
        m = _VN_DATE.fullmatch(text)
        if m:
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        return None
    return None


def mapping_sha256(text: str) -> str:
    """The mapping's identity: SHA-256 of its text (UTF-8), as uploaded."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_mapping(text: str, *, organizations: Iterable[str] | None = None) -> list[MappingRow]:
    """Parse a mapping (UTF-8 CSV, optional BOM, the exact HEADER, 7 columns, dates as
    YYYY-MM-DD or DD/MM/YYYY). With `organizations` (the known ones: see
    `known_organizations`), a non-empty old_organization must be one of them. Raises
    MappingRejected listing every problem row (bad columns or date, duplicate old triple,
    unknown organization, a row changing nothing, a row matching everything)."""
    rows, problems = _parse(text, organizations)
    if problems:
        raise MappingRejected(problems)
    if not rows:
        raise MappingRejected([RowProblem(0, "the mapping has no rows")])
    return rows


def _parse(text: str, organizations: Iterable[str] | None) -> (
    tuple[list[MappingRow], list[RowProblem]]
):
    """The rows that are well formed, and the problems of the others."""
    problems: list[RowProblem] = []
    if text.startswith("\ufeff"):
        text = text[1:]
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[MappingRow] = []
    known = None if organizations is None else {_nfc(o) for o in organizations}
    first_of: dict[tuple[str | None, ...], int] = {}
    line = 0
    try:
        header = next(reader, None)
        line = reader.line_num
        if header is None or [h.strip() for h in header] != list(HEADER):
            raise MappingRejected([RowProblem(1, "the header must be exactly: "
                                              + ",".join(HEADER))])
        for record in reader:
            row_no, line = line + 1, reader.line_num
            if not record or all(not v.strip() for v in record) and len(record) <= 1:
                continue  # a blank line
            if len(rows) >= MAX_ROWS:
                problems.append(RowProblem(row_no, f"more than {MAX_ROWS} rows"))
                break
            if len(record) != len(HEADER):
                problems.append(RowProblem(row_no, f"{len(record)} column(s), expected "
                                                   f"{len(HEADER)}"))
                continue
            values = [_nfc(v) for v in record[:6]]
            bad = [HEADER[i] for i, v in enumerate(values)
                   if v is not None and (len(v) > MAX_FIELD or not v.isprintable())]
            if bad:
                problems.append(RowProblem(row_no, f"{', '.join(bad)}: at most {MAX_FIELD} "
                                                   "printable characters"))
                continue
            effective = _parse_date(record[6])
            if effective is None:
                problems.append(RowProblem(row_no, f"effective_date {record[6].strip()!r} is "
                                                   "not a date (YYYY-MM-DD or DD/MM/YYYY)"))
                continue
            row = MappingRow(row_no, *values, effective_date=effective)
            old = (row.old_organization, row.old_unit, row.old_locality)
            if old == (None, None, None):
                problems.append(RowProblem(row_no, "at least one old field is needed (an "
                                                   "empty row would match every certificate)"))
                continue
            if all(new is None or new == prev for new, prev in zip(
                    (row.new_organization, row.new_unit, row.new_locality), old, strict=True)):
                problems.append(RowProblem(row_no, "the row changes nothing"))
                continue
            if old in first_of:
                first = first_of[old]
                problems.append(RowProblem(row_no, f"duplicate of row {first} (same old "
                                                   "organization, unit and locality)"))
                problems.append(RowProblem(first, f"duplicated by row {row_no}"))
                continue
            first_of[old] = row_no
            if known is not None and row.old_organization is not None \
                    and row.old_organization not in known:
                problems.append(RowProblem(row_no, f"unknown organization "
                                                   f"{row.old_organization!r}: no valid "
                                                   "certificate or official carries it"))
                continue
            rows.append(row)
    except csv.Error as exc:
        problems.append(RowProblem(line + 1, f"not valid CSV: {exc}"))
    except MappingRejected as exc:  # the header: nothing else can be read
        return [], exc.problems
    return rows, problems


def known_organizations(authority: Any) -> set[str]:
    """Organizations that valid certificates or officials carry."""
    with authority.readers() as s:
        return store.reorg_known_organizations(s)


# -- the plan (dry run) ---------------------------------------------------------------------

def _today_vn(now: datetime) -> date:
    return now.astimezone(VN).date()


def _matches(row: MappingRow, content: dict[str, str | None]) -> bool:
    return all(want is None or _nfc(content.get(name)) == want for name, want in (
        ("organization", row.old_organization), ("unit", row.old_unit),
        ("locality", row.old_locality)))


def plan(authority: Any, rows: Sequence[MappingRow], *, now: datetime | None = None) -> Plan:
    """The dry run: every affected valid official certificate with its current and new
    subject (built through the profile, as `Authority.prepare_reissue`), and the reason its
    old certificate will be revoked with. MappingRejected (rows named) for an unknown
    organization, a certificate matched by two rows, or a new subject the profile refuses.
    Reads the database; writes nothing, and never touches the HSM."""
    now = now or authority.clock()
    today = _today_vn(now)
    problems: list[RowProblem] = []
    with authority.readers() as s:
        known = {_nfc(o) for o in store.reorg_known_organizations(s)}
        for row in rows:
            if row.old_organization is not None and row.old_organization not in known:
                problems.append(RowProblem(row.row, f"unknown organization "
                                                    f"{row.old_organization!r}: no valid "
                                                    "certificate or official carries it"))
        orgs = None if any(r.old_organization is None for r in rows) else \
            [str(r.old_organization) for r in rows]
        candidates = store.reorg_candidates(s, orgs)
        latest = store.latest_valid_certificate_ids(s, [c.official_id for c in candidates])
        ca_names = {ca.id: ca.name for ca in store.list_cas(s)}
    notes: list[PlanNote] = []
    matched: list[tuple[store.ReorgCandidate, MappingRow, dict[str, str | None]]] = []
    double: dict[tuple[int, ...], list[str]] = {}
    touched: set[int] = set()
    for cand in candidates:
        content = certificate_content(x509.load_der_x509_certificate(cand.cert_der))
        hits = [row for row in rows if _matches(row, content)]
        if not hits:
            continue
        touched.update(r.row for r in hits)
        if len(hits) > 1:
            double.setdefault(tuple(r.row for r in hits), []).append(cand.serial)
            continue
        row = hits[0]
        if cand.status == "hold":
            notes.append(PlanNote(cand.serial, row.row, "on hold: not reissued (release or "
                                                        "revoke it first)"))
        elif cand.not_after <= now:
            notes.append(PlanNote(cand.serial, row.row, "expired: not reissued"))
        elif latest.get((cand.official_id, cand.profile), cand.id) > cand.id:
            notes.append(PlanNote(cand.serial, row.row, f"official {cand.official_id} has a "
                                                        "newer valid certificate: not reissued"))
        else:
            matched.append((cand, row, content))
    for row_numbers, serials in double.items():
        listed = " and ".join(str(n) for n in row_numbers)
        for n in row_numbers:
            problems.append(RowProblem(n, f"rows {listed} both match {len(serials)} "
                                          f"certificate(s), e.g. {serials[0]}"))
    prepared = authority.prepare_reissues(
        [(cand.serial, row.changes) for cand, row, _ in matched], now=now,
        actor="reorg-plan")
    refused: dict[tuple[int, str], list[str]] = {}
    items: list[PlanItem] = []
    for (cand, row, _content), result in zip(matched, prepared, strict=True):
        if isinstance(result, CAError):
            refused.setdefault((row.row, result.message.replace(cand.serial, "<serial>")),
                               []).append(cand.serial)
            continue
        if result.request.kind == "renewal":  # the certificate already says what is wanted
            notes.append(PlanNote(cand.serial, row.row, "already has the new content: "
                                                        "not reissued"))
            continue
        items.append(PlanItem(
            old_serial=cand.serial, official_id=cand.official_id,
            official_name=cand.official_name, ca_name=ca_names.get(cand.ca_id, result.ca_name),
            row=row.row, old_subject=cand.subject,
            new_subject=_subject_text(result), content=dict(result.content),
            changes=row.changes, reason=result.revocation_reason.value,
            effective=row.effective_date <= today))
    for (row_no, message), serials in refused.items():
        problems.append(RowProblem(row_no, f"the new subject is refused for {len(serials)} "
                                           f"certificate(s), e.g. {serials[0]}: {message}"))
    if problems:
        raise MappingRejected(problems)
    warnings = [RowProblem(r.row, "matches no valid official certificate")
                for r in rows if r.row not in touched]
    with_items = {i.row for i in items}
    warnings += [RowProblem(r.row, "matches only certificates that are not reissued (see "
                                   "the notes)")
                 for r in rows if r.row in touched and r.row not in with_items]
    later = sorted(r.row for r in rows if r.effective_date > today)
    warnings += [RowProblem(r.row, f"not yet effective (from {r.effective_date:%Y-%m-%d}): "
                                   "--apply refuses it until then")
                 for r in rows if r.row in later]
    items.sort(key=lambda i: (i.row, i.old_subject, i.old_serial))
    notes.sort(key=lambda n: (n.row, n.serial))
    warnings.sort(key=lambda w: (w.row, w.message))
    return Plan(rows=list(rows), items=items, warnings=warnings, notes=notes,
                not_yet_effective=later)


def _subject_text(reissue: Reissue) -> str:
    from ca.profiles import format_subject

    return format_subject(reissue.request.subject)


def dry_run(authority: Any, mapping_text: str, *, now: datetime | None = None) -> Plan:
    """`parse_mapping` then `plan` (which checks the organizations are known), reporting
    every problem of the file at once (MappingRejected): what the CLI's --dry-run and the
    console's preview show."""
    rows, problems = _parse(mapping_text, None)
    if not rows and not problems:
        problems = [RowProblem(0, "the mapping has no rows")]
    the_plan: Plan | None = None
    if rows:  # every problem at once: the well-formed rows are planned too
        try:
            the_plan = plan(authority, rows, now=now)
        except MappingRejected as exc:
            problems += exc.problems
    if problems or the_plan is None:
        raise MappingRejected(problems)
    return the_plan


# -- the batch ------------------------------------------------------------------------------

def batch_tag(batch_id: int) -> str:
    """`requested_by` of the certificates a batch issues: how a resumed run recognizes them."""
    return f"reorg-batch:{batch_id}"


def _summary(b: ReorgBatchRecord) -> BatchSummary:
    return BatchSummary(id=b.id, status=b.status, mapping_sha256=b.mapping_sha256,
                        created_by=b.created_by, created_at=b.created_at, rekey=bool(b.rekey),
                        total=b.total, done=b.done, failed=b.failed)


def start(authority: Any, mapping_text: str, *, rekey: bool = False, actor: str,
          now: datetime | None = None) -> int:
    """Parse, plan and record a batch (status `planned`, its items `pending`, or `waiting`
    with `rekey`) in one transaction, audited `reorg.start`; returns its id. If an unfinished
    batch of the same mapping (SHA-256 of the text) exists, returns that one instead, so
    rerunning resumes it; a mapping already applied (a `done` batch) is refused.
    MappingRejected as `parse_mapping`/`plan`, and for rows not yet effective."""
    digest = mapping_sha256(mapping_text)
    with authority.readers() as s:
        existing = _unfinished_batch_of(s, digest, rekey)
    if existing is not None:
        return existing
    now = now or authority.clock()
    the_plan = dry_run(authority, mapping_text, now=now)
    if the_plan.not_yet_effective:
        raise MappingRejected([RowProblem(n, "not yet effective: apply it on or after its "
                                             "effective date")
                               for n in the_plan.not_yet_effective])
    if not the_plan.items:
        raise InvalidRequest("the mapping matches no certificate to reissue; nothing to do")
    with authority.sessions.begin() as s:
        # The old certificates locked first (in serial order): on PostgreSQL a second start
        # of this or an overlapping mapping waits here until this one commits, then finds its
        # batch below (SQLite serializes the whole transaction anyway).
        olds = store.certificates_by_serial(s, [i.old_serial for i in the_plan.items],
                                            for_update=True)
        existing = _unfinished_batch_of(s, digest, rekey)
        if existing is not None:
            return existing
        busy = store.open_reorg_items_for(s, [i.old_serial for i in the_plan.items])
        if busy:
            shown = ", ".join(f"{serial} (batch {b})" for serial, b in busy[:5])
            raise StateConflict(f"{len(busy)} certificate(s) are already in an unfinished "
                                f"batch: {shown}")
        batch = ReorgBatchRecord(
            mapping_sha256=digest, mapping_text=mapping_text, created_by=actor,
            created_at=now, status="planned", rekey=rekey, total=len(the_plan.items),
            done=0, failed=0)
        s.add(batch)
        s.flush()
        store.insert_reorg_items(s, [{
            "batch_id": batch.id, "old_serial": i.old_serial,
            "old_certificate_id": olds[i.old_serial].id, "official_id": i.official_id,
            "row": i.row, "old_subject": i.old_subject, "new_subject": i.new_subject,
            "content": json.dumps({"content": i.content, "changes": i.changes},
                                  ensure_ascii=False, sort_keys=True),
            "reason": i.reason, "status": "waiting" if rekey else "pending",
            "new_serial": None, "error": None, "updated_at": now,
        } for i in the_plan.items])
        audit.record(s, actor=actor, action="reorg.start", obj=f"batch:{batch.id}",
                     details={"mapping_sha256": digest, "rows": len(the_plan.rows),
                              "certificates": len(the_plan.items), "rekey": rekey,
                              "notes": len(the_plan.notes)}, clock=authority.clock)
        return int(batch.id)


def _unfinished_batch_of(s: Any, digest: str, rekey: bool) -> int | None:
    """The unfinished batch of the mapping with SHA-256 `digest`, if any (to resume);
    StateConflict if it differs in --rekey or the mapping was already applied."""
    for b in store.reorg_batches_for_mapping(s, digest):
        if b.status != "done":
            if bool(b.rekey) != rekey:
                raise StateConflict(
                    f"batch {b.id} of this mapping is unfinished and was started "
                    f"{'with' if b.rekey else 'without'} --rekey; finish it first")
            return int(b.id)
        raise StateConflict(f"this mapping was already applied as batch {b.id} "
                            f"({b.finished_at or b.created_at:%Y-%m-%d %H:%M} UTC); "
                            "running it again would reissue the new certificates")
    return None


def _runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _runner_alive(runner: str | None, heartbeat: datetime | None, now: datetime) -> bool:
    """Whether the process named `runner` may still be running the batch."""
    if not runner or heartbeat is None or now - heartbeat > RUNNER_LEASE:
        return False
    host, _, rest = runner.partition(":")
    if host != socket.gethostname():
        return True  # another machine, fresh heartbeat: assume it runs
    try:
        pid = int(rest.partition(":")[0])
        if pid == os.getpid():
            return True  # another thread of this process (the console runs batches so)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) runs nothing
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _claim(authority: Any, batch_id: int, actor: str, me: str) -> BatchSummary:
    """Mark the batch running by `me` (host:pid:nonce of this call); StateConflict if
    another live process or thread runs it."""
    now = authority.clock()
    with authority.sessions.begin() as s:
        b = store.get_reorg_batch(s, batch_id, for_update=True)
        if b.status == "done":
            return _summary(b)
        if b.status == "running" and _runner_alive(b.runner, b.heartbeat_at, now):
            raise StateConflict(f"batch {batch_id} is being run by another process "
                                f"({b.runner}, last seen {b.heartbeat_at:%H:%M:%S} UTC)")
        resumed = b.status != "planned"
        b.status, b.runner, b.heartbeat_at, b.error = "running", me, now, None
        audit.record(s, actor=actor, action="reorg.run", obj=f"batch:{batch_id}",
                     outcome="started", details={"resumed": resumed, "runner": me},
                     clock=authority.clock)
        return _summary(b)


@dataclass(frozen=True)
class Retried:
    """What `retry` put back: how many certificates, and whether they wait for their
    officials' PINs (a --rekey batch) rather than for `run`."""

    items: int
    rekey: bool


def retry(authority: Any, batch_id: int, *, actor: str) -> Retried:
    """Put a batch's failed certificates back to be tried again (after a hold was released,
    a lint problem fixed...): `pending`, or `waiting` for the official's PIN in a --rekey
    batch; then `run` (or each official's rekey) does them. InvalidRequest
    if none failed, StateConflict while the batch runs or if one of them is in another
    unfinished batch now. Audited `reorg.retry`."""
    now = authority.clock()
    with authority.sessions.begin() as s:
        b = store.get_reorg_batch(s, batch_id, for_update=True)
        if b.status == "running" and _runner_alive(b.runner, b.heartbeat_at, now):
            raise StateConflict(f"batch {batch_id} is being run by another process "
                                f"({b.runner}); retry it when that run ends")
        failed = store.reorg_items(s, batch_id, statuses=("failed",))
        if not failed:
            raise InvalidRequest(f"batch {batch_id} has no failed certificate to retry")
        busy = store.open_reorg_items_for(s, [it.old_serial for it in failed],
                                          except_batch=batch_id)
        if busy:
            shown = ", ".join(f"{serial} (batch {other})" for serial, other in busy[:5])
            raise StateConflict(f"{len(busy)} of its failed certificate(s) are in another "
                                f"unfinished batch now: {shown}")
        store.update_reorg_items(s, [
            {"id": it.id, "status": "waiting" if b.rekey else "pending", "error": None,
             "updated_at": now} for it in failed])
        b.status = "waiting" if b.rekey else "planned"  # to be run again
        b.failed, b.finished_at, b.runner, b.error = 0, None, None, None
        audit.record(s, actor=actor, action="reorg.retry", obj=f"batch:{batch_id}",
                     details={"items": len(failed),
                              "errors": sorted({(it.error or "")[:200] for it in failed})[:10]},
                     clock=authority.clock)
        return Retried(items=len(failed), rekey=bool(b.rekey))


@dataclass
class _Tally:
    done: int = 0
    failed: int = 0
    adopted: int = 0


def run(authority: Any, batch_id: int, *, actor: str,
        progress: Callable[[int, int], None] | None = None,
        chunk_size: int = 100) -> BatchReport:
    """Process the batch's pending items, chunk by chunk: issue the new certificates
    (`issue_batch`, same key), record their serials, then in one transaction per chunk revoke
    the old ones, update the officials' records, queue the notices and mark the items done.
    Resumable: a certificate an interrupted run already issued is adopted, never issued
    again. `progress(finished, total)` is called before the first chunk and after each.
    StateConflict if another live process is running the batch."""
    if chunk_size < 1:
        raise InvalidRequest("chunk_size must be at least 1")
    summary = _claim(authority, batch_id, actor, _runner_id())
    tally = _Tally()
    if summary.status == "done":
        return BatchReport(summary, 0, 0, 0)
    try:
        if progress is not None:
            progress(summary.done + summary.failed, summary.total)
        after_id = 0
        while True:
            # A window of a few chunks goes to issue_batch at once, so the lint of its next
            # chunks runs while this one is signed and stored; it is completed chunk by chunk.
            with authority.readers() as s:
                items = store.reorg_items(s, batch_id, statuses=("pending", "issued"),
                                          after_id=after_id, limit=chunk_size * WINDOW)
            if not items:
                break
            after_id = items[-1].id
            _process(authority, batch_id, items, actor, tally, chunk_size=chunk_size,
                     progress=progress)
    except BaseException as exc:
        message = exc.message if isinstance(exc, CAError) else type(exc).__name__
        try:
            with authority.sessions.begin() as s:
                b = store.get_reorg_batch(s, batch_id, for_update=True)
                b.status, b.error, b.runner = "failed", message[:1000], None
                audit.record(s, actor=actor, action="reorg.run", obj=f"batch:{batch_id}",
                             outcome="failure", details={"error": message[:500],
                                                         "done_now": tally.done},
                             clock=authority.clock)
        except Exception:  # noqa: BLE001 - the original error matters more
            log.exception("could not record the failure of batch %s", batch_id)
        raise
    summary = _finish(authority, batch_id, actor, tally)
    return BatchReport(summary, tally.done, tally.failed, tally.adopted)


def _finish(authority: Any, batch_id: int, actor: str, tally: _Tally) -> BatchSummary:
    with authority.sessions.begin() as s:
        b = store.get_reorg_batch(s, batch_id, for_update=True)
        counts = store.reorg_item_counts(s, batch_id)
        b.done, b.failed = counts.get("done", 0), counts.get("failed", 0)
        if counts.get("pending", 0) or counts.get("issued", 0):
            b.status = "failed"  # should not happen: run() leaves none behind
            b.error = "items left unprocessed; run the batch again"
        elif counts.get("waiting", 0):
            b.status = "waiting"
        else:
            b.status, b.finished_at = "done", authority.clock()
        b.runner = None
        audit.record(s, actor=actor, action="reorg.run", obj=f"batch:{batch_id}",
                     details={"status": b.status, "done": b.done, "failed": b.failed,
                              "waiting": counts.get("waiting", 0), "done_now": tally.done,
                              "failed_now": tally.failed, "adopted": tally.adopted},
                     clock=authority.clock)
        return _summary(b)


def _process(authority: Any, batch_id: int, items: Sequence[Any], actor: str,
             tally: _Tally, *, key_id: int | None = None, chunk_size: int = 100,
             progress: Callable[[int, int], None] | None = None) -> None:
    """A window of items: adopt what an interrupted run issued, issue the rest
    (`issue_batch`, in chunks of `chunk_size`), record the serials, then per chunk revoke +
    update officials + notify + mark done in one transaction, reporting progress."""
    tag = batch_tag(batch_id)
    now = authority.clock()
    pending = [it for it in items if it.status in ("pending", "waiting")]
    new_serials: dict[int, str] = {it.id: it.new_serial for it in items
                                   if it.status == "issued"}
    errors: dict[int, str] = {}
    with authority.readers() as s:
        successors = store.successors_of(s, [it.old_certificate_id for it in pending])
        olds = store.certificates_by_serial(s, [it.old_serial for it in pending])
    by_old: dict[int, list[store.Successor]] = {}
    for succ in successors:
        by_old.setdefault(succ.predecessor_id, []).append(succ)
    orphans: list[str] = []
    to_issue: list[Any] = []
    for it in pending:
        found = by_old.get(it.old_certificate_id, [])
        mine = [x for x in found if x.requested_by == tag]
        signed = [x for x in mine if x.signed and x.status != "failed"]
        if signed:  # issued by an interrupted run: adopt it, never issue twice
            new_serials[it.id] = signed[0].serial
            tally.adopted += 1
            continue
        orphans += [x.serial for x in mine if x.status == "pending"]
        others = [x for x in found if x.requested_by != tag and x.status != "failed"]
        old = olds.get(it.old_serial)
        if others:
            errors[it.id] = (f"renewed outside this batch as {others[0].serial}; not "
                             "reissued")
        elif old is None or old.status != "valid":
            errors[it.id] = (f"the certificate is now {old.status if old else 'missing'}; "
                             "not reissued")
        elif old.not_after <= now:
            errors[it.id] = "the certificate has expired; not reissued"
        else:
            to_issue.append(it)
    if orphans:
        # Reserved by a run that died before the HSM signature was stored: never published,
        # so it is marked failed (audited) and the certificate is issued again below.
        with authority.engine.begin() as conn:
            store.fail_certificates(conn, orphans, actor=actor, now=now,
                                    error="interrupted reorganization run (never stored)")
    if to_issue:
        if key_id is None:
            prepared = authority.prepare_reissues(
                [(it.old_serial, json.loads(it.content)["changes"]) for it in to_issue],
                actor=actor, requested_by=tag)
        else:
            prepared = []
            for it in to_issue:
                try:
                    prepared.append(authority.prepare_reissue(
                        it.old_serial, json.loads(it.content)["changes"], key_id=key_id,
                        actor=actor, requested_by=tag))
                except CAError as exc:
                    prepared.append(exc)
        by_ca: dict[str, list[tuple[Any, Reissue]]] = {}
        for it, result in zip(to_issue, prepared, strict=True):
            if isinstance(result, CAError):
                errors[it.id] = result.message[:1000]
            else:
                by_ca.setdefault(result.ca_name, []).append((it, result))
        for ca_name, group in by_ca.items():
            for it, serial, error in _issue(authority, ca_name, group, actor, chunk_size):
                if serial is not None:
                    new_serials[it.id] = serial
                else:
                    errors[it.id] = error or "not issued"
    # The new serials are recorded first, so a crash from here on only leaves revocations.
    with authority.sessions.begin() as s:
        store.update_reorg_items(s, [
            {"id": item_id, "status": "issued", "new_serial": serial, "error": None,
             "updated_at": now} for item_id, serial in new_serials.items()])
        store.update_reorg_items(s, [
            {"id": item_id, "status": "failed", "error": error, "updated_at": now}
            for item_id, error in errors.items()])
    tally.failed += len(errors)
    issued = [it for it in items if it.id in new_serials]
    for i in range(0, max(len(issued), 1), chunk_size):
        finished, total = _complete(authority, batch_id, issued[i:i + chunk_size], new_serials,
                                    actor, tally, key_id=key_id)
        if progress is not None:
            progress(finished, total)


def _issue(authority: Any, ca_name: str, group: Sequence[tuple[Any, Reissue]],
           actor: str, chunk_size: int) -> list[tuple[Any, str | None, str | None]]:
    """Issue a window's certificates of one CA: (item, new serial or None, error)."""
    requests = [r.request for _, r in group]
    try:
        issued = authority.issue_batch(ca_name, requests, actor=actor, chunk_size=chunk_size)
        return [(it, cert.serial, None) for (it, _), cert in zip(group, issued, strict=True)]
    except LintFailed as exc:
        earlier = list(exc.issued)  # the chunks before the refused one, in order
    out: list[tuple[Any, str | None, str | None]] = [
        (it, cert.serial, None) for (it, _), cert in zip(group, earlier, strict=False)]
    for it, r in group[len(earlier):]:  # find the refused ones: one at a time (rare)
        try:
            out.append((it, authority.issue(ca_name, r.request, actor=actor).serial, None))
        except LintFailed as exc:
            out.append((it, None, exc.message[:1000]))
    return out


def _complete(authority: Any, batch_id: int, items: Sequence[Any], new_serials: dict[int, str],
              actor: str, tally: _Tally, *, key_id: int | None = None) -> tuple[int, int]:
    """Revoke the old certificates of issued items, update their officials, queue the
    notices, mark them done: one transaction. Returns (finished, total) of the batch."""
    now = authority.clock()
    with authority.sessions.begin() as s:
        b = store.get_reorg_batch(s, batch_id, for_update=True)
        if items:
            if key_id is not None:  # the official's new key signs from now on
                store.activate_official_key(s, items[0].official_id, key_id)
            revoked = set(authority.revoke_many(
                [(it.old_serial, it.reason) for it in items], actor=actor, session=s,
                skip_revoked=True))
            new = store.certificates_by_serial(s, list(new_serials.values()))
            officials = {o.id: o for o in s.query(OfficialRecord).filter(
                OfficialRecord.id.in_({it.official_id for it in items}))}
            updates = []
            notices = []
            for it in items:
                doc = json.loads(it.content)
                official = officials[it.official_id]
                for name, value in doc["changes"].items():
                    if name in ("organization", "unit", "locality"):
                        setattr(official, name, value)
                cert = new[new_serials[it.id]]
                note = None
                try:
                    notices.append(_notice(official, cert, it, batch_id))
                except InvalidRequest as exc:  # an unusable address: the others still go
                    note = f"notice not queued: {exc.message}"[:1000]
                if it.old_serial not in revoked and note is None:
                    note = "the old certificate was already revoked"
                updates.append({"id": it.id, "status": "done", "new_serial": cert.serial,
                                "error": note, "updated_at": now})
            s.flush()
            _queue_notices(s, notices, actor, now)
            store.update_reorg_items(s, updates)
            tally.done += len(items)
        counts = store.reorg_item_counts(s, batch_id)
        b.done, b.failed = counts.get("done", 0), counts.get("failed", 0)
        b.heartbeat_at = now
        return b.done + b.failed, b.total


def _notice(official: OfficialRecord, cert: Any, item: Any, batch_id: int) -> dict[str, Any]:
    """The "new certificate" mail of ca/lifecycle.py for one item, checked as the outbox
    checks what it queues (InvalidRequest for an unusable address)."""
    subject, body = lifecycle.reissue_mail(
        official_name=official.name, new_serial=cert.serial, not_after=cert.not_after,
        subject_dn=cert.subject, old_serial=item.old_serial,
        reason=NOTICE_REASONS.get(item.reason, item.reason))
    row = {"recipient": official.email, "subject": subject, "body": body,
           "kind": lifecycle.REISSUE_KIND, "ref": f"batch:{batch_id}",
           "dedupe_key": f"reissued:{cert.serial}"}  # as lifecycle.notify_reissued
    outbox.check_message(official.email, subject, body, row["kind"], row["ref"], row["dedupe_key"])
    return row


def _queue_notices(s: Session, notices: Sequence[dict[str, Any]], actor: str,
                   now: datetime) -> None:
    """`lifecycle.notify_reissued` for a whole chunk: one insert (a notice already queued is
    skipped, as there) and one audit append (`mail.queue` per message, as `outbox.enqueue`)."""
    queued = store.queue_mails(s, notices, now)
    audit.append(s, [audit.entry(at=now, actor=actor, action="mail.queue",
                                 obj=f"mail:{queued[n['dedupe_key']]}",
                                 details={"to": n["recipient"], "kind": n["kind"],
                                          "ref": n["ref"], "dedupe_key": n["dedupe_key"]})
                     for n in notices if n["dedupe_key"] in queued])


def complete_rekey(authority: Any, batch_id: int, official_id: int, pin: str, *,
                   actor: str) -> list[str]:
    """For a `--rekey` batch: make the official's new key (their PIN opens the current one),
    issue their waiting certificates for it, revoke the old ones, notify. Returns the new
    serials. Safe to repeat after an interruption (a certificate already issued for the
    batch is adopted, not issued again)."""
    with authority.readers() as s:
        b = store.get_reorg_batch(s, batch_id)
        if not b.rekey:
            raise StateConflict(f"batch {batch_id} keeps the officials' keys (no --rekey)")
        items = store.reorg_items(s, batch_id, statuses=("waiting", "issued"),
                                  official_id=official_id)
    if not items:
        raise NotFound(f"batch {batch_id} has no certificate of official {official_id} "
                       "waiting for a new key")
    tally = _Tally()
    waiting = [it for it in items if it.status == "waiting"]
    key_id: int | None = None
    with authority.readers() as s:
        adoptable = {x.predecessor_id: x for x in store.successors_of(
            s, [it.old_certificate_id for it in waiting])
            if x.requested_by == batch_tag(batch_id) and x.signed and x.status != "failed"}
    if waiting and not all(it.old_certificate_id in adoptable for it in waiting):
        spec, blob, public_key = authority.new_official_key(official_id, pin, actor=actor)
        with authority.sessions.begin() as s:
            key_id = authority.store_official_key(s, official_id, spec, blob, public_key,
                                                  pin).id
            audit.record(s, actor=actor, action="official.key.rekey",
                         obj=f"official:{official_id}", details={"batch": batch_id,
                                                                 "key_id": key_id},
                         clock=authority.clock)
    else:  # an interrupted call issued them all: activate the key they were issued for
        with authority.official_signing_key(official_id, pin, actor=actor):
            pass  # the PIN is checked all the same: only the official completes a rekey
        keys = [adoptable[it.old_certificate_id].official_key_id for it in waiting]
        with authority.readers() as s:
            found = store.certificates_by_serial(
                s, [it.new_serial for it in items if it.status == "issued" and it.new_serial])
        keys += [c.official_key_id for c in found.values()]
        key_id = next((k for k in keys if k is not None), None)
    _process(authority, batch_id, items, actor, tally, key_id=key_id)
    _finish(authority, batch_id, actor, tally)
    with authority.readers() as s:
        return [it.new_serial for it in store.reorg_items(s, batch_id, statuses=("done",),
                                                          official_id=official_id)
                if it.new_serial and it.id in {x.id for x in items}]


# -- reading --------------------------------------------------------------------------------

@dataclass(frozen=True)
class WaitingRekey:
    """A certificate of an official waiting in a `--rekey` batch for their new key."""

    batch_id: int
    item: ItemView


def waiting_rekeys(authority: Any, official_id: int) -> list[WaitingRekey]:
    """What `complete_rekey` would do for this official, batch by batch (the portal asks the
    official for their PIN with this in view)."""
    with authority.readers() as s:
        return [WaitingRekey(it.batch_id, _item_view(it))
                for it in store.waiting_rekey_items(s, official_id)]


def _item_view(it: Any) -> ItemView:
    return ItemView(old_serial=it.old_serial, official_id=it.official_id,
                    old_subject=it.old_subject, new_subject=it.new_subject, reason=it.reason,
                    status=it.status, new_serial=it.new_serial, error=it.error,
                    updated_at=it.updated_at)


def show(source: Any, batch_id: int) -> BatchView:
    """A batch and every certificate old -> new. `source`: an Authority (its readers are
    used) or an open Session."""
    if isinstance(source, Session):
        return _show(source, batch_id)
    with source.readers() as s:
        return _show(s, batch_id)


def summary(authority: Any, batch_id: int) -> BatchSummary:
    """A batch's status and counts only (no items: what a progress poll needs)."""
    with authority.readers() as s:
        return _summary(store.get_reorg_batch(s, batch_id))


def _show(s: Session, batch_id: int) -> BatchView:
    b = store.get_reorg_batch(s, batch_id)
    return BatchView(batch=_summary(b), items=[_item_view(it) for it in store.reorg_items(
        s, batch_id)], mapping_text=b.mapping_text)


def list_batches(source: Any, *, limit: int = 50) -> list[BatchSummary]:
    """Batches, newest first. `source`: an Authority or an open Session."""
    if isinstance(source, Session):
        return [_summary(b) for b in store.list_reorg_batches(source, limit)]
    with source.readers() as s:
        return [_summary(b) for b in store.list_reorg_batches(s, limit)]
