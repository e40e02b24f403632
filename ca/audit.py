"""The audit trail: every security-relevant event, written in the same transaction as the act.

Tamper evidence. Entries form a hash chain: entry `seq` (from 1) stores the hash of entry
`seq - 1` (64 zeros for the first) and its own hash, SHA-256 over a canonical encoding of
(seq, prev_hash, at, actor, action, object, outcome, request_id, details). The one row of
`audit_head` holds the seq and hash of the last entry; `append` locks it, so entries get their
places one writer at a time. From time to time the head is signed ("sealed") with the audit key
in the HSM (`seal`, table audit_seals). `verify` recomputes everything and names the first
entry that was edited, deleted, inserted or moved, and any seal that no longer matches.

A seal is itself an audit event (action "audit.seal", object "audit:chain"), appended first;
the seal signs the head *including* that event, so every seal row sits at the seq of its own
event and a deleted seal row shows up as an "audit.seal" event without its seal. Creating the
audit key is audited too ("audit.key.create").

Fail closed: `append` raises `AuditError` (and the caller's transaction rolls back) when the
entry cannot be written, so the act it records does not happen either.

What the chain cannot show on its own: someone able to write the database *and* knowing this
encoding can append well-formed entries after the last seal, or rewrite the whole chain and
delete all seals. Seals bound what can be rewritten unnoticed to the entries after the last
seal; keep the seal policy tight and copy `kyso audit verify`'s summary (last sealed entry and
hash) somewhere the database administrator cannot write.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from ca.errors import CAError
from ca.models import AuditEventRecord, AuditHeadRecord, AuditSealRecord

GENESIS_HASH = "0" * 64
DEFAULT_KEY_LABEL = "kyso-audit"
KEY_SPEC = "ec-p256"
SEAL_ALGORITHM = "ecdsa-with-SHA256"
SEAL_ACTION = "audit.seal"
SEAL_OBJECT = "audit:chain"
SEAL_REASONS = ("interval", "ceremony", "manual")

_AUDIT = AuditEventRecord.__table__
_HEAD = AuditHeadRecord.__table__
_SEALS = AuditSealRecord.__table__
_FIELDS = ("at", "actor", "action", "object", "outcome", "request_id", "details")
# How far from its place verify looks for the seq a moved entry was written with.
_MOVE_WINDOW = 64

log = logging.getLogger("kyso.audit")

Executor = Session | Connection


class AuditError(CAError):
    """The audit log cannot be written (so nothing was done) or cannot be sealed."""

    code = "audit_failed"
    http_status = 500


@dataclass(frozen=True)
class Head:
    """A place in the chain: the seq of an entry and its hash (0 and 64 zeros: empty chain)."""

    seq: int
    hash: str


def _now() -> datetime:
    return datetime.now(UTC)


# -- canonical encoding --------------------------------------------------------------------

def iso_utc(at: datetime) -> str:
    """`at` as ISO 8601 UTC with microseconds, the form hashed and signed."""
    if at.tzinfo is None:
        raise ValueError("naive datetime in the audit log; use timezone-aware UTC")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def canonical_entry(seq: int, prev_hash: str, row: Mapping[str, Any]) -> bytes:
    """The bytes an entry's hash is computed over (compact JSON, sorted keys, ASCII)."""
    return _canonical({
        "v": 1,
        "seq": seq,
        "prev_hash": prev_hash,
        "at": iso_utc(row["at"]),
        "actor": row["actor"],
        "action": row["action"],
        "object": row["object"],
        "outcome": row["outcome"],
        "request_id": row.get("request_id"),
        "details": row.get("details"),
    })


def chain_hash(seq: int, prev_hash: str, row: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the entry at `seq` after `prev_hash` with the columns of `row`."""
    return hashlib.sha256(canonical_entry(seq, prev_hash, row)).hexdigest()


def seal_message(*, seq: int, hash: str, at: datetime, key_label: str, reason: str) -> bytes:
    """The bytes a seal signs: the head (seq, hash), when, with which key and why."""
    return _canonical({"v": 1, "type": "kyso-audit-seal", "seq": seq, "hash": hash,
                       "at": iso_utc(at), "key_label": key_label, "reason": reason})


# -- writing -------------------------------------------------------------------------------

def entry(
    *,
    at: datetime,
    actor: str,
    action: str,
    obj: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One audit row as column values, without its chain fields (for `append`)."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "object": obj,
        "outcome": outcome,
        "request_id": request_id,
        "details": json.dumps(details, ensure_ascii=False, sort_keys=True) if details else None,
    }


def _db_detail(exc: DBAPIError) -> str:
    text = str(exc.orig).strip() if exc.orig is not None else type(exc).__name__
    return text.splitlines()[0] if text else type(exc).__name__


def current_head(session: Executor, *, for_update: bool = False) -> Head:
    """The head row (locked until the transaction ends with `for_update`)."""
    stmt = select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
    if for_update:
        stmt = stmt.with_for_update()
    try:
        row = session.execute(stmt).first()
    except DBAPIError as exc:
        raise AuditError(f"cannot read the audit log head ({_db_detail(exc)}); "
                         "nothing was done") from exc
    if row is None:
        raise AuditError("the audit log has no head row (schema not migrated, or tampered "
                         "with); nothing was done")
    return Head(row.seq, row.hash)


def _append(session: Executor, rows: Sequence[Mapping[str, Any]]) -> Head:
    """Chain and insert `rows` in order; no automatic sealing."""
    head = current_head(session, for_update=True)
    if not rows:
        return head
    seq, prev = head.seq, head.hash
    chained: list[dict[str, Any]] = []
    for row in rows:
        values = {name: row.get(name) for name in _FIELDS}
        seq += 1
        digest = chain_hash(seq, prev, values)
        chained.append({**values, "seq": seq, "prev_hash": prev, "hash": digest})
        prev = digest
    try:
        session.execute(insert(_AUDIT), chained)
        moved = session.execute(
            update(_HEAD).where(_HEAD.c.id == 1, _HEAD.c.seq == head.seq)
            .values(seq=seq, hash=prev)
        ).rowcount
    except DBAPIError as exc:
        raise AuditError(f"cannot write the audit log ({_db_detail(exc)}); the operation "
                         "was not performed") from exc
    if moved != 1:
        raise AuditError("the audit log head changed during an append; the operation was "
                         "not performed")
    return Head(seq, prev)


def append(session: Executor, rows: Sequence[Mapping[str, Any]]) -> Head:
    """Append `rows` (from `entry`) to the chain in `session`'s transaction, in order.

    Locks the head row (SELECT ... FOR UPDATE; SQLite write transactions already hold the
    write lock), gives each row its seq, prev_hash and hash, bulk-inserts them through Core and
    moves the head. Returns the place of the last of `rows`. Raises `AuditError` if anything
    cannot be written: the caller's transaction must then roll back (fail closed).

    When a seal policy is set for the engine (`set_seal_policy`), a seal that is due is made
    right after, in a savepoint of the same transaction; a failed seal only logs a warning.
    """
    head = _append(session, rows)
    if rows:
        policy = _policy_for(session)
        if policy is not None:
            _auto_seal(session, policy)
    return head


def record(
    session: Executor,
    *,
    actor: str,
    action: str,
    obj: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> Head:
    """Append one event in `session`'s transaction; it commits (or rolls back) with the act it
    records. Returns its place in the chain."""
    return append(session, [entry(
        at=(clock or _now)(), actor=actor, action=action, obj=obj, outcome=outcome,
        details=details, request_id=request_id,
    )])


# -- sealing -------------------------------------------------------------------------------

class AuditSigner:
    """The audit key in the HSM: an EC P-256 key pair whose private half never leaves it.

    `token` is an `hsm.Token` or a callable returning one (opened on first use). `sessions`
    lets `ensure_key()` audit a key creation in a transaction of its own when no session is
    given.
    """

    def __init__(self, token: Any, label: str = DEFAULT_KEY_LABEL, *,
                 sessions: sessionmaker[Session] | None = None) -> None:
        if not label:
            raise ValueError("the audit key needs a label")
        if callable(token) and not hasattr(token, "find_key"):
            self._provider: Callable[[], Any] = token
        else:
            self._provider = lambda: token
        self.label = label
        self.sessions = sessions
        self._key: Any = None
        self._lock = threading.RLock()

    @property
    def token(self) -> Any:
        return self._provider()

    def ensure_key(self, session: Executor | None = None, *, actor: str = "system",
                   clock: Callable[[], datetime] | None = None) -> bool:
        """Find the audit key, or create it (audited as "audit.key.create" in `session`, else
        in a transaction of `sessions`). True if it was created now."""
        with self._lock:
            if self._key is not None:
                return False
            token = self.token
            if token.has_key(self.label):
                self._key = token.find_key(label=self.label)
                return False
            if session is not None:
                self._create(session, actor, clock)
            elif self.sessions is not None:
                with self.sessions.begin() as s:
                    self._create(s, actor, clock)
            else:
                raise AuditError("the audit key is missing and creating it must be audited: "
                                 "give a database session")
            return True

    def _create(self, session: Executor, actor: str,
                clock: Callable[[], datetime] | None) -> None:
        from hsm import KeySpec

        # The entry first: if it cannot be written, no key is made.
        _append(session, [entry(at=(clock or _now)(), actor=actor, action="audit.key.create",
                                obj=f"key:{self.label}", details={"key_spec": KEY_SPEC})])
        self._key = self.token.generate_key_pair(KeySpec.parse(KEY_SPEC), self.label)

    @property
    def key(self) -> Any:
        with self._lock:
            if self._key is None:
                self._key = self.token.find_key(label=self.label)
            return self._key

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.key.public_key()  # type: ignore[no-any-return]

    def public_key_der(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, data: bytes) -> bytes:
        """ECDSA-SHA256 (DER) over `data`, made in the HSM."""
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))  # type: ignore[no-any-return]

    def public_key_for_label(self, label: str) -> Any | None:
        """The public key of the HSM key `label` (None if the token has no such key); what
        `verify` checks seals with."""
        from hsm import KeyNotFound

        if label == self.label and self._key is not None:
            return self._key.public_key()
        try:
            return self.token.find_key(label=label).public_key()
        except KeyNotFound:
            return None


def seal(session: Executor, signer: AuditSigner, reason: str = "manual", *,
         actor: str = "system", clock: Callable[[], datetime] | None = None) -> AuditSealRecord:
    """Sign the chain head with the audit key and store the seal, in `session`'s transaction.

    Appends an "audit.seal" event first, so the seal covers its own event. Creates the audit key
    if missing (audited). Raises on any failure; the caller's transaction should roll back.
    """
    if not reason or len(reason) > 16:
        raise ValueError("a seal reason is 1 to 16 characters (interval, ceremony, manual)")
    now = (clock or _now)()
    signer.ensure_key(session, actor=actor, clock=clock)
    head = _append(session, [entry(at=now, actor=actor, action=SEAL_ACTION, obj=SEAL_OBJECT,
                                   details={"reason": reason, "key_label": signer.label})])
    signature = signer.sign(seal_message(seq=head.seq, hash=head.hash, at=now,
                                         key_label=signer.label, reason=reason))
    values = {"at": now, "seq": head.seq, "hash": head.hash, "key_label": signer.label,
              "algorithm": SEAL_ALGORITHM, "signature": signature,
              "public_key_der": signer.public_key_der(), "reason": reason}
    try:
        seal_id = session.execute(insert(_SEALS).returning(_SEALS.c.id), [values]).scalar_one()
    except DBAPIError as exc:
        raise AuditError(f"cannot store the audit seal ({_db_detail(exc)})") from exc
    return AuditSealRecord(id=seal_id, **values)


def last_seal(session: Executor) -> Any | None:
    """The newest seal row (seq, at, ...) or None."""
    return session.execute(
        select(_SEALS).order_by(_SEALS.c.seq.desc(), _SEALS.c.id.desc()).limit(1)
    ).first()


def maybe_seal(session: Executor, signer: AuditSigner, every_entries: int, every_seconds: int,
               *, clock: Callable[[], datetime] | None = None) -> AuditSealRecord | None:
    """Seal (reason "interval") if at least `every_entries` entries or `every_seconds` seconds
    went by since the last seal (since the first entry when there is none yet) and something
    was appended since. 0 turns a trigger off. Returns the new seal, or None."""
    head = current_head(session)
    last = last_seal(session)
    since = last.seq if last is not None else 0
    pending = head.seq - since
    if pending <= 0:
        return None
    due = every_entries > 0 and pending >= every_entries
    if not due and every_seconds > 0:
        start = last.at if last is not None else session.execute(
            select(_AUDIT.c.at).where(_AUDIT.c.seq == since + 1)).scalar()
        if start is not None:
            if start.tzinfo is None:  # a raw Connection on SQLite
                start = start.replace(tzinfo=UTC)
            due = (clock or _now)() - start >= timedelta(seconds=every_seconds)
    if not due:
        return None
    return seal(session, signer, "interval", clock=clock)


@dataclass(frozen=True)
class SealPolicy:
    """Automatic sealing for every `append` on an engine (see `set_seal_policy`)."""

    signer: AuditSigner
    every_entries: int = 500
    every_seconds: int = 3600


_POLICIES: weakref.WeakKeyDictionary[Engine, SealPolicy] = weakref.WeakKeyDictionary()


def set_seal_policy(engine: Engine, policy: SealPolicy | None) -> None:
    """Seal automatically after appends through `engine` (None: stop)."""
    if policy is None:
        _POLICIES.pop(engine, None)
    else:
        _POLICIES[engine] = policy


def _policy_for(session: Executor) -> SealPolicy | None:
    if not _POLICIES:
        return None
    bind = session.engine if isinstance(session, Connection) else session.get_bind()
    return _POLICIES.get(bind) if isinstance(bind, Engine) else None


def _auto_seal(session: Executor, policy: SealPolicy) -> None:
    if isinstance(session, Session):
        session.flush()  # the caller's own changes fail loudly, not inside the savepoint
    try:
        with session.begin_nested():
            maybe_seal(session, policy.signer, policy.every_entries, policy.every_seconds)
    except Exception as exc:  # noqa: BLE001 - a seal that fails must not stop the act
        log.warning("audit log not sealed this time (%s: %s); the next write or "
                    "`kyso audit seal` tries again", type(exc).__name__, exc)


# -- reading and verifying -----------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    """One finding of `verify`: where (seq), what kind, and a sentence for people."""

    seq: int
    kind: str  # edited | deleted | inserted | reordered | rewritten | seal | head
    message: str
    action: str | None = None
    object: str | None = None


@dataclass
class VerifyReport:
    entries: int = 0
    head: Head | None = None
    seals: int = 0  # seals checked
    last_sealed_seq: int = 0  # newest seal that verified
    problems: list[Problem] = field(default_factory=list)
    truncated: bool = False  # more problems than were kept
    seal_keys: list[str] = field(default_factory=list)  # key labels of the seals checked

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def unsealed(self) -> int:
        """Entries after the newest valid seal."""
        return max(0, (self.head.seq if self.head else 0) - self.last_sealed_seq)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "entries": self.entries,
                "head": asdict(self.head) if self.head else None, "seals": self.seals,
                "last_sealed_seq": self.last_sealed_seq, "unsealed": self.unsealed,
                "problems": [asdict(p) for p in self.problems], "truncated": self.truncated,
                "seal_keys": self.seal_keys}


def _name(seq: int, action: str | None, obj: str | None) -> str:
    return f"#{seq} ({action} {obj})" if action else f"#{seq}"


def _written_as(row: Mapping[str, Any]) -> int | None:
    """The seq a moved entry was written with: its hash matches its content there."""
    for seq in range(max(1, row["seq"] - _MOVE_WINDOW), row["seq"] + _MOVE_WINDOW + 1):
        if seq != row["seq"] and chain_hash(seq, row["prev_hash"], row) == row["hash"]:
            return seq
    return None


def verify(session: Executor, public_key_for_label: Callable[[str], Any | None], *,
           max_problems: int = 100, batch: int = 1000) -> VerifyReport:
    """Recompute the chain and check the seals; problems come sorted by seq.

    Entries are streamed in seq order (`batch` rows at a time). `public_key_for_label` gives
    the HSM's public key for a seal's key label (None: no such key); it is asked only when
    there are seals, once per label.
    """
    report = VerifyReport()
    problems: list[Problem] = []

    def add(p: Problem) -> None:
        if len(problems) < max_problems:
            problems.append(p)
        else:
            report.truncated = True

    head_row = session.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)).first()
    head = Head(head_row.seq, head_row.hash) if head_row else None
    report.head = head
    if head is None:
        add(Problem(0, "head", "the audit head row is missing (deleted)"))

    seals = session.execute(select(_SEALS).order_by(_SEALS.c.seq, _SEALS.c.id)).all()
    seals_at: dict[int, list[Any]] = {}
    keys: dict[str, Any | None] = {}
    valid_seals: set[int] = set()
    sealed_seqs = {s.seq for s in seals}
    for s in seals:
        report.seals += 1
        if s.key_label not in report.seal_keys:
            report.seal_keys.append(s.key_label)
        seals_at.setdefault(s.seq, []).append(s)
        problem = _check_seal(s, keys, public_key_for_label)
        if problem:
            add(Problem(s.seq, "seal", problem))
        else:
            valid_seals.add(s.id)

    columns = [_AUDIT.c[name] for name in ("seq", "prev_hash", "hash", *_FIELDS)]
    rows: Iterable[Any] = session.execute(
        select(*columns).order_by(_AUDIT.c.seq).execution_options(yield_per=batch))
    prev: Mapping[str, Any] | None = None
    prev_bad = False
    prevprev_hash: str | None = None
    last_good_seal = 0
    reported_beyond_head = False
    for r in rows:
        row = dict(r._mapping)
        if row["at"].tzinfo is None:  # a raw Connection on SQLite
            row["at"] = row["at"].replace(tzinfo=UTC)
        report.entries += 1
        seq = row["seq"]
        name = _name(seq, row["action"], row["object"])
        expected = prev["seq"] + 1 if prev is not None else 1
        intact = chain_hash(seq, row["prev_hash"], row) == row["hash"]
        bad = False
        if head is not None and seq > head.seq and not reported_beyond_head:
            reported_beyond_head = True
            add(Problem(seq, "inserted", f"entry {name} was inserted: it lies beyond the head "
                                         f"of the log (#{head.seq})", row["action"],
                        row["object"]))
        if seq > expected:
            gap = f"#{expected}" if seq - 1 == expected else f"#{expected} to #{seq - 1}"
            after = (f"after {_name(prev['seq'], prev['action'], prev['object'])}"
                     if prev is not None else "at the start of the log")
            add(Problem(expected, "deleted", f"entry {gap} was deleted: missing {after}, "
                                             f"before {name}"))
        elif (prev is not None and not prev_bad and row["prev_hash"] != prev["hash"]
              and row["prev_hash"] == prevprev_hash):
            # This entry was chained right after the one before the previous: the previous
            # one was slipped in between.
            add(Problem(prev["seq"], "inserted",
                        f"entry {_name(prev['seq'], prev['action'], prev['object'])} was "
                        f"inserted: entry #{prev['seq'] + 1} was written right after "
                        f"#{prev['seq'] - 1}", prev["action"], prev["object"]))
            bad = True
        if not intact:
            bad = True
            moved_from = _written_as(row)
            if moved_from is None:
                add(Problem(seq, "edited", f"entry {name} was edited: its content no longer "
                                           "matches its hash", row["action"], row["object"]))
            elif not (problems and problems[-1].kind == "inserted"
                      and moved_from == seq - 1):
                add(Problem(seq, "reordered", f"entry {name} is out of place: it was written "
                                              f"as entry #{moved_from}", row["action"],
                            row["object"]))
        elif (seq == expected and not bad and not prev_bad
              and row["prev_hash"] != (prev["hash"] if prev is not None else GENESIS_HASH)):
            # Self-consistent but chained to something else: the previous entry was changed
            # and its hash recomputed (or this one forged).
            if prev is None:
                add(Problem(seq, "edited", f"entry {name} was rewritten: the first entry does "
                                           "not start the chain", row["action"], row["object"]))
            else:
                add(Problem(prev["seq"], "edited",
                            f"entry {_name(prev['seq'], prev['action'], prev['object'])} was "
                            f"edited and its hash recomputed: entry #{seq} was chained to a "
                            "different entry", prev["action"], prev["object"]))
            bad = True
        for s in seals_at.pop(seq, []):
            if s.hash != row["hash"]:
                add(Problem(seq, "rewritten",
                            f"entries #{last_good_seal + 1} to #{seq} were rewritten: the chain "
                            f"at #{seq} no longer matches the seal of {iso_utc(_aware(s.at))}",
                            row["action"], row["object"]))
            elif s.id in valid_seals:
                last_good_seal = seq
        if row["action"] == SEAL_ACTION and seq not in sealed_seqs:
            add(Problem(seq, "seal", f"the seal made at entry {name} was deleted from "
                                     "audit_seals", row["action"], row["object"]))
        prevprev_hash = prev["hash"] if prev is not None else GENESIS_HASH
        prev, prev_bad = row, bad

    for seq, leftover in sorted(seals_at.items()):
        add(Problem(seq, "deleted", f"entry #{seq}, sealed on "
                                    f"{iso_utc(_aware(leftover[0].at))}, is missing "
                                    "(deleted)"))
    if head is not None:
        last_seq = prev["seq"] if prev is not None else 0
        if head.seq > last_seq:
            gap = f"#{head.seq}" if head.seq == last_seq + 1 else f"#{last_seq + 1} to #{head.seq}"
            add(Problem(last_seq + 1, "deleted",
                        f"entry {gap} was deleted from the end of the log (the head is "
                        f"#{head.seq})"))
        elif prev is not None and head.seq == last_seq and head.hash != prev["hash"] \
                and not prev_bad:
            add(Problem(last_seq, "edited",
                        f"entry {_name(last_seq, prev['action'], prev['object'])} was replaced: "
                        "the head records a different hash", prev["action"], prev["object"]))
    report.last_sealed_seq = last_good_seal
    # Sorted by seq; at one seq, what names an entry before what a seal says about it.
    report.problems = sorted(problems, key=lambda p: (p.seq, p.kind in ("rewritten", "seal")))
    return report


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _check_seal(s: Any, keys: dict[str, Any | None],
                public_key_for_label: Callable[[str], Any | None]) -> str | None:
    """Why seal `s` does not verify, or None."""
    when = iso_utc(_aware(s.at))
    if s.algorithm != SEAL_ALGORITHM:
        return f"the seal of entry #{s.seq} ({when}) names an unknown algorithm {s.algorithm!r}"
    if s.key_label not in keys:
        keys[s.key_label] = public_key_for_label(s.key_label)
    key = keys[s.key_label]
    if key is None:
        return (f"the seal of entry #{s.seq} ({when}) was made with key {s.key_label!r}, "
                "which the HSM does not hold")
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    if der != bytes(s.public_key_der):
        return (f"the seal of entry #{s.seq} ({when}) carries a public key that is not the "
                f"HSM's key {s.key_label!r}")
    message = seal_message(seq=s.seq, hash=s.hash, at=_aware(s.at), key_label=s.key_label,
                           reason=s.reason)
    try:
        key.verify(bytes(s.signature), message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return f"the seal of entry #{s.seq} ({when}) has a bad signature (seal altered)"
    return None


def _filtered(stmt: Any, since: datetime | None, until: datetime | None, actor: str | None,
              action: str | None, obj: str | None, outcome: str | None) -> Any:
    if since is not None:
        stmt = stmt.where(_AUDIT.c.at >= since)
    if until is not None:
        stmt = stmt.where(_AUDIT.c.at < until)
    for column, value in (("actor", actor), ("action", action), ("object", obj),
                          ("outcome", outcome)):
        if value:
            col = _AUDIT.c[column]
            if value.endswith("*"):
                prefix = value[:-1]
                stmt = stmt.where(col.startswith(prefix, autoescape=True))
            else:
                stmt = stmt.where(col == value)
    return stmt


def events(
    session: Executor,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    obj: str | None = None,
    outcome: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Entries in seq order, filtered: `since` <= at < `until`; actor, action, object and
    outcome exact, or a prefix when they end with '*'. `limit` keeps the newest ones, after
    skipping the `offset` newest (pages of a list shown newest first)."""
    stmt = _filtered(select(*[_AUDIT.c[n] for n in ("seq", *_FIELDS, "hash")]),
                     since, until, actor, action, obj, outcome)
    stmt = stmt.order_by(_AUDIT.c.seq.desc())
    if limit is not None:
        stmt = stmt.limit(limit)
    if offset:
        stmt = stmt.offset(offset)
    out = []
    for r in session.execute(stmt):
        item = dict(r._mapping)
        item["at"] = iso_utc(_aware(item["at"]))
        item["details"] = json.loads(item["details"]) if item["details"] else None
        out.append(item)
    out.reverse()
    return out


def count_events(
    session: Executor,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str | None = None,
    action: str | None = None,
    obj: str | None = None,
    outcome: str | None = None,
) -> int:
    """How many entries `events` would give with the same filters and no limit."""
    stmt = _filtered(select(func.count()).select_from(_AUDIT), since, until, actor, action,
                     obj, outcome)
    return int(session.execute(stmt).scalar_one())


__all__ = [
    "GENESIS_HASH",
    "AuditError",
    "AuditSigner",
    "Head",
    "Problem",
    "SealPolicy",
    "VerifyReport",
    "append",
    "chain_hash",
    "count_events",
    "current_head",
    "entry",
    "events",
    "maybe_seal",
    "record",
    "seal",
    "set_seal_policy",
    "verify",
]
