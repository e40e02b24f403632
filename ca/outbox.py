"""The mail outbox: e-mails queued in the transaction of what they announce (a renewal, a
batch, an expiry warning), kept until kyso/mailer.py has delivered them or they failed for good.

Whoever changes an official's certificate calls `enqueue(session, ...)` inside its own unit of
work: the notice commits (or rolls back) with the act, and the SMTP server being down never
loses it. Delivery claims due rows (`claim_due`), sends, then records the outcome
(`mark_sent`, `mark_retry`, `mark_failed`), each audited.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca import audit, store
from ca.errors import InvalidRequest, NotFound, StateConflict
from ca.models import MailOutboxRecord

STATUSES = ("queued", "sent", "failed")
MAX_SUBJECT = 300
MAX_BODY = 100_000
MAX_ERROR = 1000
# An address as the outbox accepts it: one mailbox, no display name, nothing a header could
# be split on.
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+")


@dataclass(frozen=True)
class OutboxMessage:
    """One outbox row as the callers see it (no ORM object outside a transaction)."""

    id: int
    recipient: str
    subject: str
    body: str
    kind: str
    ref: str | None
    dedupe_key: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None


def _message(r: MailOutboxRecord) -> OutboxMessage:
    return OutboxMessage(r.id, r.recipient, r.subject, r.body, r.kind, r.ref, r.dedupe_key,
                         r.status, r.attempts, r.next_attempt_at, r.last_error, r.created_at,
                         r.sent_at)


def check_message(to: str, subject: str, body: str, kind: str, ref: str | None,
                  dedupe_key: str) -> None:
    """InvalidRequest unless the outbox can take this message (`enqueue` checks it; callers
    that queue many in bulk check each first)."""
    if len(to) > 254 or not _ADDRESS.fullmatch(to):
        raise InvalidRequest(f"{to!r} is not an e-mail address the outbox can send to")
    if not subject.strip() or len(subject) > MAX_SUBJECT or "\r" in subject or "\n" in subject:
        raise InvalidRequest(f"a mail subject is one line of 1 to {MAX_SUBJECT} characters")
    if not body.strip() or len(body) > MAX_BODY:
        raise InvalidRequest(f"a mail body is 1 to {MAX_BODY} characters of text")
    if not kind or len(kind) > 32:
        raise InvalidRequest("a mail kind is 1 to 32 characters")
    if ref is not None and len(ref) > 128:
        raise InvalidRequest("a mail ref is at most 128 characters")
    if not dedupe_key or len(dedupe_key) > 200:
        raise InvalidRequest("a mail dedupe key is 1 to 200 characters")


def enqueue(session: Session, *, to: str, subject: str, body: str, kind: str,
            ref: str | None, dedupe_key: str, now: datetime | None = None,
            actor: str = "kyso") -> int | None:
    """Queue one e-mail in `session`'s transaction (audited `mail.queue`); it is sent by the
    next delivery run. `dedupe_key` names the notice (e.g. `renewal:<new serial>`): a notice
    already queued, sent or failed is not queued again, and None is returned instead of the
    new message's id. `ref` says what it is about: `cert:<serial>`, `request:<id>`,
    `batch:<id>`. InvalidRequest for an unusable address, subject or body."""
    check_message(to, subject, body, kind, ref, dedupe_key)
    now = now or datetime.now(UTC)
    dialect_insert = store.insert_on_conflict(session)
    # ON CONFLICT DO NOTHING: two processes queueing the same notice at once never fail.
    stmt = (dialect_insert(MailOutboxRecord)
            .values(recipient=to, subject=subject, body=body, kind=kind, ref=ref,
                    dedupe_key=dedupe_key, status="queued", attempts=0,
                    next_attempt_at=now, created_at=now)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(MailOutboxRecord.id))
    new_id = session.execute(stmt).scalar_one_or_none()
    if new_id is None:
        return None
    audit.record(session, actor=actor, action="mail.queue", obj=f"mail:{new_id}",
                 details={"to": to, "kind": kind, "ref": ref, "dedupe_key": dedupe_key})
    return int(new_id)


def is_queued(session: Session, dedupe_key: str) -> bool:
    """Whether a notice with this key was ever queued (whatever became of it)."""
    return session.scalar(select(func.count()).select_from(MailOutboxRecord)
                          .where(MailOutboxRecord.dedupe_key == dedupe_key)) > 0


def retry_delay(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """Exponential backoff: base after the first failed attempt, doubling, at most cap."""
    if attempts <= 1:
        return min(base, cap)
    return min(cap, base * (2 ** min(attempts - 1, 30)))


def claim_due(session: Session, now: datetime, *, lease: timedelta,
              limit: int = 100) -> list[OutboxMessage]:
    """Queued messages due at `now` (oldest first), claimed for this sender: their
    next_attempt_at moves to now + lease and attempts counts this one, in `session`'s
    transaction. Another process sees them due again only if this one never reports back
    (a crash mid-send: the message is retried, never lost). Skips rows another
    transaction holds (PostgreSQL; SQLite's writers are serialised anyway)."""
    o = MailOutboxRecord
    rows = session.scalars(
        select(o).where(o.status == "queued", o.next_attempt_at <= now)
        .order_by(o.next_attempt_at, o.id).limit(limit)
        .with_for_update(skip_locked=True)).all()
    for r in rows:
        r.attempts += 1
        r.next_attempt_at = now + lease
    session.flush()
    return [_message(r) for r in rows]


def _get(session: Session, message_id: int) -> MailOutboxRecord:
    row = session.scalars(select(MailOutboxRecord).where(MailOutboxRecord.id == message_id)
                          .with_for_update()).first()
    if row is None:
        raise NotFound(f"no mail with id {message_id}")
    return row


def mark_sent(session: Session, message_id: int, now: datetime, *,
              actor: str = "mailer") -> None:
    """The server accepted the message (audited `mail.sent`)."""
    row = _get(session, message_id)
    row.status, row.sent_at, row.last_error = "sent", now, None
    audit.record(session, actor=actor, action="mail.sent", obj=f"mail:{message_id}",
                 details={"to": row.recipient, "kind": row.kind, "ref": row.ref,
                          "attempts": row.attempts})


def mark_retry(session: Session, message_id: int, error: str, now: datetime, *,
               base: timedelta, cap: timedelta, actor: str = "mailer") -> datetime:
    """A temporary failure (server unreachable, 4xx): stays queued, next attempt after the
    backoff (audited `mail.failed`, permanent false). Returns when it is due again."""
    row = _get(session, message_id)
    row.last_error = error[:MAX_ERROR]
    row.next_attempt_at = now + retry_delay(row.attempts, base, cap)
    audit.record(session, actor=actor, action="mail.failed", obj=f"mail:{message_id}",
                 outcome="failure",
                 details={"to": row.recipient, "permanent": False, "attempts": row.attempts,
                          "retry_at": audit.iso_utc(row.next_attempt_at),
                          "error": row.last_error})
    return row.next_attempt_at


def mark_failed(session: Session, message_id: int, error: str, now: datetime, *,
                actor: str = "mailer") -> None:
    """A permanent failure (5xx for the recipient or the message): never retried by itself
    (`requeue` puts it back). Audited `mail.failed`, permanent true."""
    row = _get(session, message_id)
    row.status, row.last_error = "failed", error[:MAX_ERROR]
    audit.record(session, actor=actor, action="mail.failed", obj=f"mail:{message_id}",
                 outcome="failure",
                 details={"to": row.recipient, "permanent": True, "attempts": row.attempts,
                          "error": row.last_error})


def requeue(session: Session, message_id: int, now: datetime, *,
            actor: str = "operator") -> None:
    """Put a failed message back in the queue (e.g. after the address was corrected)."""
    row = _get(session, message_id)
    if row.status != "failed":
        raise StateConflict(f"mail {message_id} is {row.status}; only failed mail is requeued")
    row.status, row.next_attempt_at = "queued", now
    audit.record(session, actor=actor, action="mail.requeue", obj=f"mail:{message_id}",
                 details={"to": row.recipient})


def list_messages(session: Session, *, status: str | None = None, ref: str | None = None,
                  limit: int = 100) -> list[OutboxMessage]:
    """Newest first."""
    o = MailOutboxRecord
    stmt = select(o).order_by(o.id.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(o.status == status)
    if ref is not None:
        stmt = stmt.where(o.ref == ref)
    return [_message(r) for r in session.scalars(stmt).all()]


def get_message(session: Session, message_id: int) -> OutboxMessage:
    row = session.get(MailOutboxRecord, message_id)
    if row is None:
        raise NotFound(f"no mail with id {message_id}")
    return _message(row)


def counts(session: Session) -> dict[str, int]:
    """Messages per status (every status present, 0 when none)."""
    rows = session.execute(select(MailOutboxRecord.status, func.count())
                           .group_by(MailOutboxRecord.status)).all()
    out = dict.fromkeys(STATUSES, 0)
    out.update({status: n for status, n in rows})
    return out


def messages_for_ids(session: Session, ids: Sequence[int]) -> list[OutboxMessage]:
    rows = session.scalars(select(MailOutboxRecord).where(MailOutboxRecord.id.in_(list(ids)))
                           .order_by(MailOutboxRecord.id)).all()
    return [_message(r) for r in rows]

