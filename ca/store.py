"""The one module that issues SQL for CA data: lookups and listings over the models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from ca import audit
from ca.errors import NotFound
from ca.models import (
    AuditEventRecord,
    CARecord,
    CertificateRecord,
    CertRequestRecord,
    OfficialKeyRecord,
    OfficialRecord,
    OfficialRequestRecord,
    search_fold,
)

_CERTS = CertificateRecord.__table__
_REQUESTS = CertRequestRecord.__table__
_AUDIT = AuditEventRecord.__table__


def insert_on_conflict(bind: Session | Connection) -> Any:
    """The `insert` of the database in use, the one with ON CONFLICT DO NOTHING / DO UPDATE
    (PostgreSQL's or SQLite's)."""
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    if dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
    return dialect_insert


@dataclass(frozen=True)
class Reservation:
    """Everything stored before the HSM signs: the request, the serial, the lint certificate."""

    serial: str
    ca_id: int
    kind: str
    profile: str
    subject: str
    organization: str | None
    csr_der: bytes | None
    public_key_der: bytes
    spki_sha256: str
    key_spec: str
    requested_by: str
    approved_by: str
    official_id: int | None
    official_key_id: int | None
    predecessor_id: int | None
    not_before: datetime
    not_after: datetime
    lint_der: bytes | None
    created_at: datetime


def reserve_certificates(
    conn: Connection, reservations: Sequence[Reservation], *, actor: str, ca_name: str
) -> None:
    """Insert requests, pending certificates and their audit entries (Core, one round each).

    The audit entry is written here, before the signature, so issuance fails closed: no
    certificate is signed unless its record and its audit entry are committed.
    """
    request_rows = [
        {"kind": r.kind, "ca_id": r.ca_id, "profile": r.profile, "subject": r.subject,
         "csr_der": r.csr_der, "public_key_der": r.public_key_der,
         "requested_by": r.requested_by, "approved_by": r.approved_by,
         "created_at": r.created_at}
        for r in reservations
    ]
    ids = conn.execute(
        insert(_REQUESTS).returning(_REQUESTS.c.id, sort_by_parameter_order=True), request_rows
    ).scalars().all()
    conn.execute(insert(_CERTS), [
        {"serial": r.serial, "ca_id": r.ca_id, "request_id": request_id,
         "official_id": r.official_id, "official_key_id": r.official_key_id,
         "predecessor_id": r.predecessor_id, "profile": r.profile, "subject": r.subject,
         "organization": r.organization, "key_spec": r.key_spec,
         "spki_sha256": r.spki_sha256, "status": "pending", "not_before": r.not_before,
         "not_after": r.not_after, "lint_der": r.lint_der, "created_at": r.created_at}
        for r, request_id in zip(reservations, ids, strict=True)
    ])
    audit.append(conn, [
        audit.entry(at=r.created_at, actor=actor, action="certificate.issue",
                    obj=f"cert:{r.serial}", outcome="approved",
                    details={"ca": ca_name, "profile": r.profile, "subject": r.subject,
                             "kind": r.kind, "predecessor_id": r.predecessor_id})
        for r in reservations
    ])


def finish_certificates(conn: Connection, signed: Sequence[tuple[str, bytes]],
                        now: datetime) -> None:
    """Store the signed certificates of pending reservations."""
    if not signed:
        return
    conn.execute(
        update(_CERTS).where(_CERTS.c.serial == bindparam("b_serial")).values(
            cert_der=bindparam("b_der"), status="valid", issued_at=now),
        [{"b_serial": serial, "b_der": der} for serial, der in signed],
    )


def fail_certificates(conn: Connection, serials: Sequence[str], *, actor: str, error: str,
                      now: datetime) -> None:
    """Mark reservations the HSM never signed, and say so in the audit log."""
    if not serials:
        return
    conn.execute(update(_CERTS).where(_CERTS.c.serial.in_(serials)).values(status="failed"))
    audit.append(conn, [
        audit.entry(at=now, actor=actor, action="certificate.issue", obj=f"cert:{serial}",
                    outcome="failure", details={"error": error})
        for serial in serials
    ])


def list_cas(session: Session) -> Sequence[CARecord]:
    return session.scalars(select(CARecord).order_by(CARecord.id)).all()


def find_ca(session: Session, name: str) -> CARecord | None:
    return session.scalars(select(CARecord).where(CARecord.name == name)).first()


def get_ca(session: Session, name: str) -> CARecord:
    record = find_ca(session, name)
    if record is None:
        known = ", ".join(c.name for c in list_cas(session)) or "none yet"
        raise NotFound(f"no CA named {name!r} (known: {known})")
    return record


def get_ca_by_id(session: Session, ca_id: int) -> CARecord:
    record = session.get(CARecord, ca_id)
    if record is None:
        raise NotFound(f"no CA with id {ca_id}")
    return record


def find_certificate(session: Session, serial: str, *, for_update: bool = False) -> (
    CertificateRecord | None
):
    stmt = select(CertificateRecord).where(CertificateRecord.serial == serial)
    if for_update:
        stmt = stmt.with_for_update()
    return session.scalars(stmt).first()


def get_certificate(session: Session, serial: str, *, for_update: bool = False) -> (
    CertificateRecord
):
    record = find_certificate(session, serial, for_update=for_update)
    if record is None:
        raise NotFound(f"no certificate with serial {serial}")
    return record


def serial_exists(session: Session | Connection, serial: str) -> bool:
    return session.scalar(
        select(func.count()).select_from(CertificateRecord).where(
            CertificateRecord.serial == serial
        )
    ) > 0


def list_certificates(
    session: Session,
    *,
    status: str | None = None,
    expiring_before: datetime | None = None,
    now: datetime | None = None,
    organization: str | None = None,
    ca_id: int | None = None,
    limit: int | None = None,
) -> Sequence[CertificateRecord]:
    stmt = select(CertificateRecord).order_by(CertificateRecord.id)
    if status is not None:
        stmt = stmt.where(CertificateRecord.status == status)
    if expiring_before is not None:
        stmt = stmt.where(CertificateRecord.not_after <= expiring_before)
        if now is not None:
            stmt = stmt.where(CertificateRecord.not_after > now)
    if organization is not None:
        stmt = stmt.where(CertificateRecord.organization == organization)
    if ca_id is not None:
        stmt = stmt.where(CertificateRecord.ca_id == ca_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def get_official(session: Session, official_id: int, *, for_update: bool = False) -> (
    OfficialRecord
):
    stmt = select(OfficialRecord).where(OfficialRecord.id == official_id)
    if for_update:
        stmt = stmt.with_for_update()
    record = session.scalars(stmt).first()
    if record is None:
        raise NotFound(f"no official with id {official_id}")
    return record


def active_official_key(session: Session, official_id: int) -> OfficialKeyRecord:
    record = session.scalars(
        select(OfficialKeyRecord)
        .where(OfficialKeyRecord.official_id == official_id)
        .where(OfficialKeyRecord.status == "active")
        .order_by(OfficialKeyRecord.id.desc())
    ).first()
    if record is None:
        raise NotFound(f"official {official_id} has no active signing key")
    return record


def official_certificates(session: Session, official_id: int) -> Sequence[CertificateRecord]:
    return session.scalars(
        select(CertificateRecord)
        .where(CertificateRecord.official_id == official_id)
        .order_by(CertificateRecord.id)
    ).all()


def lock_ca(session: Session, ca_id: int) -> None:
    """Row lock on the CA (FOR UPDATE; SQLite's write transactions are already exclusive):
    orders revocations and CRL generation of one CA."""
    session.execute(select(CARecord.id).where(CARecord.id == ca_id).with_for_update())


# -- OCSP: pre-signed responses and the status-change feed (read by ocsp/, written here) --

@dataclass(frozen=True)
class OcspCertStatus:
    """A certificate as the OCSP responder needs it, with its stored response if any."""

    cert_id: int
    serial: str
    status: str
    revoked_at: datetime | None
    revocation_reason: str | None
    issued: bool
    stored_der: bytes | None = None
    stored_state: str | None = None
    stored_next_update: datetime | None = None
    stored_this_update: datetime | None = None


def _ocsp_tables() -> tuple[Any, Any]:
    from ca.models import OcspChangeRecord, OcspResponseRecord

    return OcspResponseRecord.__table__, OcspChangeRecord.__table__


def ocsp_certificate_changed(session: Session | Connection, ca_id: int, serial: str,
                             now: datetime) -> None:
    """In the transaction that changes a certificate's status: drop its pre-signed responses
    and tell every responder process (they read ocsp_changes about once a second)."""
    responses, changes = _ocsp_tables()
    session.execute(responses.delete().where(responses.c.ca_id == ca_id)
                    .where(responses.c.serial == serial))
    session.execute(insert(changes).values(ca_id=ca_id, serial=serial, at=now))


def ocsp_last_change_id(conn: Connection) -> int:
    _, changes = _ocsp_tables()
    return int(conn.scalar(select(func.coalesce(func.max(changes.c.id), 0))) or 0)


def ocsp_changes_since(conn: Connection, last_id: int, limit: int = 10000) -> (
    list[tuple[int, int, str]]
):
    """(id, ca_id, serial) of the status changes after `last_id`, oldest first."""
    _, changes = _ocsp_tables()
    rows = conn.execute(
        select(changes.c.id, changes.c.ca_id, changes.c.serial)
        .where(changes.c.id > last_id).order_by(changes.c.id).limit(limit)
    ).all()
    return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]


def ocsp_changes_by_id(conn: Connection, ids: Sequence[int]) -> list[tuple[int, int, str]]:
    """(id, ca_id, serial) of the status changes among `ids`: a reader asks again for ids it
    skipped (on PostgreSQL ids come from a sequence, and concurrent transactions can commit
    out of id order)."""
    _, changes = _ocsp_tables()
    if not ids:
        return []
    rows = conn.execute(
        select(changes.c.id, changes.c.ca_id, changes.c.serial)
        .where(changes.c.id.in_(list(ids))).order_by(changes.c.id)
    ).all()
    return [(int(r[0]), int(r[1]), str(r[2])) for r in rows]


def ocsp_change_ids_after(conn: Connection, after_id: int) -> list[int]:
    """The ids of the status changes after `after_id` (a reader starting up: which ids below
    the newest are still missing)."""
    _, changes = _ocsp_tables()
    return [int(i) for i in conn.scalars(
        select(changes.c.id).where(changes.c.id > after_id).order_by(changes.c.id)).all()]


def ocsp_prune_changes(conn: Connection, before: datetime) -> int:
    _, changes = _ocsp_tables()
    return int(conn.execute(changes.delete().where(changes.c.at < before)).rowcount or 0)


def _ocsp_status_select(hash_algorithm: str) -> Any:
    responses, _ = _ocsp_tables()
    return (
        select(_CERTS.c.id, _CERTS.c.serial, _CERTS.c.status, _CERTS.c.revoked_at,
               _CERTS.c.revocation_reason, _CERTS.c.cert_der.is_not(None),
               responses.c.der, responses.c.cert_state, responses.c.next_update,
               responses.c.this_update)
        .select_from(_CERTS.outerjoin(responses, (responses.c.ca_id == _CERTS.c.ca_id)
                                      & (responses.c.serial == _CERTS.c.serial)
                                      & (responses.c.hash_algorithm == hash_algorithm)))
    )


def _ocsp_status_row(row: Any) -> OcspCertStatus:
    return OcspCertStatus(
        cert_id=row[0], serial=row[1], status=row[2], revoked_at=row[3],
        revocation_reason=row[4], issued=bool(row[5]), stored_der=row[6],
        stored_state=row[7], stored_next_update=row[8], stored_this_update=row[9])


def ocsp_lookup(conn: Connection, ca_id: int, serials: Sequence[str], hash_algorithm: str) -> (
    dict[str, OcspCertStatus]
):
    """The certificates of `ca_id` among `serials`, with their stored responses for
    `hash_algorithm` (one indexed query)."""
    rows = conn.execute(
        _ocsp_status_select(hash_algorithm)
        .where(_CERTS.c.serial.in_(list(serials))).where(_CERTS.c.ca_id == ca_id)
    ).all()
    return {row[1]: _ocsp_status_row(row) for row in rows}


_OCSP_STATUS_QUERY: Any = None


def ocsp_statuses(conn: Connection, ca_id: int, serials: Sequence[str]) -> (
    list[tuple[str, str, datetime | None, str | None, bool]]
):
    """(serial, status, revoked_at, revocation_reason, issued) of the certificates of `ca_id`
    among `serials`: what a live-signed answer needs, without the stored responses (one
    indexed query, built once: the responder asks it for every nonce request it has not
    cached)."""
    global _OCSP_STATUS_QUERY
    if _OCSP_STATUS_QUERY is None:
        _OCSP_STATUS_QUERY = (
            select(_CERTS.c.serial, _CERTS.c.status, _CERTS.c.revoked_at,
                   _CERTS.c.revocation_reason, _CERTS.c.cert_der.is_not(None))
            .where(_CERTS.c.ca_id == bindparam("ca_id"))
            .where(_CERTS.c.serial.in_(bindparam("serials", expanding=True))))
    rows = conn.execute(_OCSP_STATUS_QUERY, {"ca_id": ca_id, "serials": list(serials)})
    return [(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]


def ocsp_certificates_page(conn: Connection, ca_id: int, hash_algorithm: str, after_id: int,
                           limit: int) -> list[OcspCertStatus]:
    """Issued certificates of `ca_id` (by id, after `after_id`) with their stored responses:
    the pre-signer walks these pages and re-signs what is missing, stale or due."""
    rows = conn.execute(
        _ocsp_status_select(hash_algorithm)
        .where(_CERTS.c.ca_id == ca_id).where(_CERTS.c.id > after_id)
        .where(_CERTS.c.status.in_(("valid", "revoked", "hold")))
        .where(_CERTS.c.cert_der.is_not(None))
        .order_by(_CERTS.c.id).limit(limit)
    ).all()
    return [_ocsp_status_row(row) for row in rows]


def ocsp_extra_algorithms(conn: Connection, ca_id: int) -> list[str]:
    """CertID hash algorithms other than SHA-1 that clients asked about (stored lazily)."""
    responses, _ = _ocsp_tables()
    return sorted(conn.scalars(
        select(responses.c.hash_algorithm).where(responses.c.ca_id == ca_id)
        .where(responses.c.hash_algorithm != "sha1").distinct()).all())


def ocsp_store_responses(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert or replace pre-signed responses, keyed by (ca_id, serial, hash_algorithm)."""
    if not rows:
        return
    responses, _ = _ocsp_tables()
    dialect_insert = insert_on_conflict(conn)
    stmt = dialect_insert(responses)
    stmt = stmt.on_conflict_do_update(
        index_elements=["ca_id", "serial", "hash_algorithm"],
        set_={name: stmt.excluded[name] for name in (
            "cert_state", "responder_serial", "this_update", "next_update", "der",
            "created_at")},
    )
    conn.execute(stmt, list(rows))


def current_certificate_for_key(session: Session, profile: str, spki_sha256: str,
                                now: datetime, serial: str | None = None) -> (
    CertificateRecord | None
):
    """The newest valid certificate of `profile` for a key (by its SPKI SHA-256) that is in
    force at `now` -- a service's own certificate (the TSA's); `serial` pins one."""
    c = CertificateRecord
    query = (select(c).where(c.profile == profile, c.spki_sha256 == spki_sha256,
                             c.status == "valid", c.cert_der.is_not(None),
                             c.not_before <= now, c.not_after > now)
             .order_by(c.not_before.desc(), c.id.desc()).limit(1))
    if serial:
        query = query.where(c.serial == serial)
    return session.scalars(query).first()


def ocsp_responder_certificates(session: Session | Connection, ca_id: int,
                                now: datetime) -> list[tuple[str, bytes, str, datetime]]:
    """(serial, DER, spki_sha256, not_after) of the valid OCSP-responder certificates the CA
    issued that are in force at `now`, newest first."""
    rows = session.execute(
        select(_CERTS.c.serial, _CERTS.c.cert_der, _CERTS.c.spki_sha256, _CERTS.c.not_after)
        .where(_CERTS.c.ca_id == ca_id).where(_CERTS.c.profile == "ocsp-responder")
        .where(_CERTS.c.status == "valid").where(_CERTS.c.cert_der.is_not(None))
        .where(_CERTS.c.not_before <= now).where(_CERTS.c.not_after > now)
        .order_by(_CERTS.c.not_after.desc(), _CERTS.c.id.desc())
    ).all()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


# -- officials' certificate requests (ca/requests.py) ----------------------------------------

OPEN_REQUEST_STATUSES = ("pending", "issuing")


def get_official_request(session: Session, request_id: int, *, for_update: bool = False) -> (
    OfficialRequestRecord
):
    stmt = select(OfficialRequestRecord).where(OfficialRequestRecord.id == request_id)
    if for_update:
        stmt = stmt.with_for_update()
    record = session.scalars(stmt).first()
    if record is None:
        raise NotFound(f"no certificate request {request_id}")
    return record


def open_request_for(session: Session, serial: str) -> OfficialRequestRecord | None:
    """The pending (or being issued) request for the certificate `serial`, if any."""
    return session.scalars(
        select(OfficialRequestRecord)
        .where(OfficialRequestRecord.serial == serial)
        .where(OfficialRequestRecord.status.in_(OPEN_REQUEST_STATUSES))
    ).first()


def list_official_requests(
    session: Session,
    *,
    official_id: int | None = None,
    statuses: Sequence[str] | None = None,
    limit: int | None = None,
) -> Sequence[OfficialRequestRecord]:
    """Requests, newest first; of one official, in some statuses."""
    stmt = select(OfficialRequestRecord).order_by(OfficialRequestRecord.id.desc())
    if official_id is not None:
        stmt = stmt.where(OfficialRequestRecord.official_id == official_id)
    if statuses is not None:
        stmt = stmt.where(OfficialRequestRecord.status.in_(list(statuses)))
    if limit is not None:
        stmt = stmt.limit(limit)
    return session.scalars(stmt).all()


def get_official_key(session: Session, key_id: int) -> OfficialKeyRecord:
    record = session.get(OfficialKeyRecord, key_id)
    if record is None:
        raise NotFound(f"no official key {key_id}")
    return record


def activate_official_key(session: Session, official_id: int, key_id: int) -> None:
    """Make `key_id` the official's active key; their other active keys retire."""
    session.execute(
        update(OfficialKeyRecord)
        .where(OfficialKeyRecord.official_id == official_id)
        .where(OfficialKeyRecord.status == "active")
        .where(OfficialKeyRecord.id != key_id)
        .values(status="retired"))
    session.execute(update(OfficialKeyRecord).where(OfficialKeyRecord.id == key_id)
                    .values(status="active"))


# -- the operators' console: searching certificates and officials, dashboard counts --------
# Text search compares search_fold(query) with the *_folded columns kept at write time, so it
# ignores case and tones on both databases: "nguyen van kiem", "NGUYỄN VĂN KIỂM" and "Nguyễn
# Văn Kiểm" all find "Nguyễn Văn Kiểm". Substring search scans the table; beyond some hundred
# thousand rows it wants a trigram index (pg_trgm) on the folded columns on PostgreSQL.

CONSOLE_STATUSES = ("valid", "hold", "revoked", "expired")


@dataclass(frozen=True)
class CertificateListing:
    """One row of the console's certificate list (plain values, no ORM object)."""

    serial: str
    subject: str
    organization: str | None
    profile: str
    status: str  # as stored: pending | valid | hold | revoked | failed
    not_before: datetime
    not_after: datetime
    revoked_at: datetime | None
    revocation_reason: str | None
    ca_name: str
    official_id: int | None
    official_name: str | None


@dataclass(frozen=True)
class CertificateCounts:
    valid: int
    hold: int
    revoked: int
    expired: int
    expiring: int
    pending: int
    failed: int


@dataclass(frozen=True)
class OfficialListing:
    id: int
    name: str
    title: str | None
    organization: str
    unit: str | None
    email: str
    locked: bool
    certificates: int
    valid_certificates: int


def _text_match(columns: Sequence[Any], text: str) -> Any:
    """Any of these *_folded columns contains the folded text."""
    from sqlalchemy import or_

    folded = search_fold(text.strip())
    pattern = "%" + folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return or_(*(col.like(pattern, escape="\\") for col in columns))


def _serial_prefix(text: str) -> str | None:
    """The text as a serial prefix (lowercase hex, no leading zeros), if it can be one."""
    cleaned = text.strip().lower().replace(":", "").replace(" ", "").removeprefix("0x")
    cleaned = cleaned.lstrip("0")
    if not cleaned or len(cleaned) > 64 or any(c not in "0123456789abcdef" for c in cleaned):
        return None
    return cleaned


def search_certificates(
    session: Session,
    *,
    now: datetime,
    text: str | None = None,
    status: str | None = None,
    organization: str | None = None,
    expiring_before: datetime | None = None,
    official_id: int | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[CertificateListing], int]:
    """Certificates for the console, soonest expiry first, and how many match in all.

    `text`: serial prefix, or a substring of the subject or the official's name. `status`:
    one of CONSOLE_STATUSES (valid and expired are both stored as valid, told apart by
    `now`). `organization`: a substring. `expiring_before`: valid ones ending by then."""
    from sqlalchemy import and_, or_

    c = CertificateRecord
    conditions: list[Any] = []
    if text:
        matches = [_text_match([c.subject_folded, OfficialRecord.name_folded], text)]
        prefix = _serial_prefix(text)
        if prefix is not None:
            # A range, not LIKE: the unique index on serial serves it on both databases.
            matches.append(and_(c.serial >= prefix, c.serial < prefix + "g"))
        conditions.append(or_(*matches))
    if status == "valid":
        conditions += [c.status == "valid", c.not_after > now]
    elif status == "expired":
        conditions += [c.status == "valid", c.not_after <= now]
    elif status is not None:
        conditions.append(c.status == status)
    if organization:
        conditions.append(_text_match([c.organization_folded], organization))
    if expiring_before is not None:
        conditions += [c.status == "valid", c.not_after > now, c.not_after <= expiring_before]
    if official_id is not None:
        conditions.append(c.official_id == official_id)
    joined = (select(c.id).select_from(c)
              .outerjoin(OfficialRecord, OfficialRecord.id == c.official_id)
              .where(*conditions))
    total = int(session.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    rows = session.execute(
        select(c.serial, c.subject, c.organization, c.profile, c.status, c.not_before,
               c.not_after, c.revoked_at, c.revocation_reason, CARecord.name, c.official_id,
               OfficialRecord.name)
        .select_from(c)
        .join(CARecord, CARecord.id == c.ca_id)
        .outerjoin(OfficialRecord, OfficialRecord.id == c.official_id)
        .where(*conditions)
        .order_by(c.not_after, c.id)
        .offset(offset).limit(limit)
    ).all()
    return [CertificateListing(*row) for row in rows], total


def certificate_counts(session: Session, *, now: datetime, soon: datetime) -> CertificateCounts:
    """How many certificates are valid, on hold, revoked, expired, valid but ending by
    `soon`, pending and failed (one query)."""
    from sqlalchemy import and_, case

    c = CertificateRecord

    def count(*when: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*when), 1), else_=0)), 0)

    row = session.execute(select(
        count(c.status == "valid", c.not_after > now),
        count(c.status == "hold"),
        count(c.status == "revoked"),
        count(c.status == "valid", c.not_after <= now),
        count(c.status == "valid", c.not_after > now, c.not_after <= soon),
        count(c.status == "pending"),
        count(c.status == "failed"),
    )).one()
    return CertificateCounts(*(int(v) for v in row))


def find_certificate_by_id(session: Session, cert_id: int) -> CertificateRecord | None:
    return session.get(CertificateRecord, cert_id)


def certificate_successors(session: Session, cert_id: int) -> Sequence[CertificateRecord]:
    """The certificates that renewed this one (predecessor_id), oldest first."""
    return session.scalars(
        select(CertificateRecord).where(CertificateRecord.predecessor_id == cert_id)
        .order_by(CertificateRecord.id)).all()


def search_officials(
    session: Session,
    *,
    text: str | None = None,
    organization: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[list[OfficialListing], int]:
    """Officials by name order with their certificate counts, and how many match in all.
    `text`: a substring of the name or e-mail address; `organization`: a substring."""
    from sqlalchemy import case

    o, c = OfficialRecord, CertificateRecord
    conditions: list[Any] = []
    if text:
        conditions.append(_text_match([o.name_folded], text))
    if organization:
        conditions.append(_text_match([o.organization_folded], organization))
    total = int(session.scalar(select(func.count()).select_from(o).where(*conditions)) or 0)
    counts = (
        select(c.official_id.label("official_id"), func.count().label("n"),
               func.sum(case((c.status == "valid", 1), else_=0)).label("v"))
        .where(c.official_id.is_not(None)).group_by(c.official_id).subquery())
    rows = session.execute(
        select(o.id, o.name, o.title, o.organization, o.unit, o.email, o.locked,
               func.coalesce(counts.c.n, 0), func.coalesce(counts.c.v, 0))
        .outerjoin(counts, counts.c.official_id == o.id)
        .where(*conditions).order_by(o.name, o.id).offset(offset).limit(limit)
    ).all()
    return [OfficialListing(r[0], r[1], r[2], r[3], r[4], r[5], bool(r[6]), int(r[7]),
                            int(r[8])) for r in rows], total


def organizations(session: Session, limit: int = 500) -> list[str]:
    """The organizations of officials and certificates (for a form's suggestions)."""
    names = set(session.scalars(select(OfficialRecord.organization).distinct()
                                .limit(limit)).all())
    names.update(n for n in session.scalars(
        select(CertificateRecord.organization).where(CertificateRecord.organization.is_not(None))
        .distinct().limit(limit)).all() if n)
    return sorted(names)[:limit]


@dataclass(frozen=True)
class OcspResponseStats:
    """The pre-signed OCSP responses of a CA: how many, the oldest nextUpdate, how many of
    them are past it at `now`."""

    count: int
    oldest_next_update: datetime | None
    stale: int


def ocsp_response_stats(session: Session | Connection, ca_id: int, now: datetime) -> (
    OcspResponseStats
):
    from sqlalchemy import case

    responses, _ = _ocsp_tables()
    row = session.execute(
        select(func.count(), func.min(responses.c.next_update),
               func.coalesce(func.sum(case((responses.c.next_update <= now, 1), else_=0)), 0))
        .where(responses.c.ca_id == ca_id)).one()
    return OcspResponseStats(int(row[0]), row[1], int(row[2]))


# -- lifecycle: expiring certificates (ca/lifecycle.py) ------------------------------------

def expiring_certificates(session: Session, now: datetime, until: datetime, *,
                          organization: str | None = None) -> (
    list[tuple[CertificateRecord, OfficialRecord | None]]
):
    """Valid issued certificates whose notAfter is in (now, until], soonest first, with their
    official (None: a service's or a CSR-based certificate), leaving out the superseded ones:
    a valid renewal of it exists, or a valid certificate of the same profile that expires
    later exists for the same official (or, without an official, for the same key)."""
    c = CertificateRecord
    stmt = (select(c, OfficialRecord)
            .outerjoin(OfficialRecord, OfficialRecord.id == c.official_id)
            .where(c.status == "valid", c.cert_der.is_not(None),
                   c.not_after > now, c.not_after <= until)
            .order_by(c.not_after, c.id))
    if organization is not None:
        stmt = stmt.where(c.organization == organization)
    rows = [(cert, official) for cert, official in session.execute(stmt).all()]
    if not rows:
        return []
    # Three bulk lookups (not a correlated subquery per row: predecessor_id has no index).
    renewed: set[int] = set()
    by_official: dict[tuple[int, str], datetime] = {}
    by_key: dict[tuple[str, str], datetime] = {}
    live = (c.status == "valid", c.cert_der.is_not(None))
    for start in range(0, len(rows), 500):
        chunk = [cert for cert, _ in rows[start:start + 500]]
        renewed.update(session.scalars(
            select(c.predecessor_id).where(c.predecessor_id.in_([x.id for x in chunk]),
                                           *live)).all())
        official_ids = {x.official_id for x in chunk if x.official_id is not None}
        if official_ids:
            for official_id, profile, latest in session.execute(
                    select(c.official_id, c.profile, func.max(c.not_after))
                    .where(c.official_id.in_(official_ids), *live)
                    .group_by(c.official_id, c.profile)).all():
                by_official[(official_id, profile)] = latest
        spkis = {x.spki_sha256 for x in chunk if x.official_id is None}
        if spkis:
            for spki, profile, latest in session.execute(
                    select(c.spki_sha256, c.profile, func.max(c.not_after))
                    .where(c.spki_sha256.in_(spkis), c.official_id.is_(None), *live)
                    .group_by(c.spki_sha256, c.profile)).all():
                by_key[(spki, profile)] = latest
    out = []
    for cert, official in rows:
        if cert.id in renewed:
            continue
        latest = (by_official.get((cert.official_id, cert.profile)) if cert.official_id
                  is not None else by_key.get((cert.spki_sha256, cert.profile)))
        if latest is not None and latest > cert.not_after:
            continue
        out.append((cert, official))
    return out


def last_audit_event_at(session: Session, action: str) -> datetime | None:
    """When an event of `action` was last audited (e.g. `lifecycle.daily`), None if never."""
    return session.scalar(select(func.max(AuditEventRecord.at))
                          .where(AuditEventRecord.action == action))


# -- bulk lookups and status changes (reorganization batches, ca/reorg.py) -----------------

_IN_CHUNK = 500  # values per IN (...): well below SQLite's and PostgreSQL's parameter limits


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i:i + _IN_CHUNK] for i in range(0, len(values), _IN_CHUNK)]


def certificates_by_serial(session: Session, serials: Sequence[str], *,
                           for_update: bool = False) -> dict[str, CertificateRecord]:
    """The certificates among `serials` (missing ones are absent), by serial; locked with
    `for_update`, in serial order (two bulk revocations never deadlock on each other)."""
    out: dict[str, CertificateRecord] = {}
    for part in _chunks(sorted(set(serials))):
        stmt = (select(CertificateRecord).where(CertificateRecord.serial.in_(list(part)))
                .order_by(CertificateRecord.serial))
        if for_update:
            stmt = stmt.with_for_update()
        out.update((r.serial, r) for r in session.scalars(stmt).all())
    return out


def ocsp_certificates_changed(session: Session | Connection,
                              changes: Sequence[tuple[int, str]], now: datetime) -> None:
    """`ocsp_certificate_changed` for many (ca_id, serial) at once (bulk statements)."""
    if not changes:
        return
    responses, feed = _ocsp_tables()
    by_ca: dict[int, list[str]] = {}
    for ca_id, serial in changes:
        by_ca.setdefault(ca_id, []).append(serial)
    for ca_id, serials in by_ca.items():
        for part in _chunks(serials):
            session.execute(responses.delete().where(responses.c.ca_id == ca_id)
                            .where(responses.c.serial.in_(list(part))))
    session.execute(insert(feed), [{"ca_id": ca_id, "serial": serial, "at": now}
                                   for ca_id, serial in changes])


def reorg_known_organizations(session: Session) -> set[str]:
    """Organizations carried by a valid (or held) official certificate or by an official."""
    names = set(session.scalars(select(OfficialRecord.organization).distinct()).all())
    names.update(n for n in session.scalars(
        select(CertificateRecord.organization)
        .where(CertificateRecord.organization.is_not(None),
               CertificateRecord.official_id.is_not(None),
               CertificateRecord.status.in_(("valid", "hold"))).distinct()).all() if n)
    return names


@dataclass(frozen=True)
class ReorgCandidate:
    """An official's signed certificate (valid or on hold) a mapping may match."""

    id: int
    serial: str
    ca_id: int
    status: str
    profile: str
    official_id: int
    official_name: str
    official_email: str
    organization: str | None
    subject: str
    not_after: datetime
    cert_der: bytes


def reorg_candidates(session: Session, organizations: Sequence[str] | None) -> (
    list[ReorgCandidate]
):
    """Officials' signed certificates, valid or on hold, of `organizations` (None: all),
    with their officials, by id; and nothing else (no expired filter: the caller says)."""
    c, o = CertificateRecord, OfficialRecord
    base = (select(c.id, c.serial, c.ca_id, c.status, c.profile, c.official_id, o.name,
                   o.email, c.organization, c.subject, c.not_after, c.cert_der)
            .join(o, o.id == c.official_id)
            .where(c.status.in_(("valid", "hold")), c.cert_der.is_not(None))
            .order_by(c.id))
    rows: list[Any] = []
    if organizations is None:
        rows = list(session.execute(base).all())
    else:
        for part in _chunks(sorted(set(organizations))):
            rows += session.execute(base.where(c.organization.in_(list(part)))).all()
        rows.sort(key=lambda r: r[0])
    return [ReorgCandidate(*row) for row in rows]


def latest_valid_certificate_ids(session: Session, official_ids: Sequence[int]) -> (
    dict[tuple[int, str], int]
):
    """(official_id, profile) -> id of the newest valid signed certificate."""
    c = CertificateRecord
    out: dict[tuple[int, str], int] = {}
    for part in _chunks(sorted(set(official_ids))):
        for official_id, profile, newest in session.execute(
                select(c.official_id, c.profile, func.max(c.id))
                .where(c.official_id.in_(list(part)), c.status == "valid",
                       c.cert_der.is_not(None))
                .group_by(c.official_id, c.profile)).all():
            out[(official_id, profile)] = newest
    return out


@dataclass(frozen=True)
class Successor:
    """A certificate whose predecessor_id is set (a renewal or reissue), with who asked."""

    id: int
    serial: str
    predecessor_id: int
    status: str
    signed: bool
    requested_by: str | None
    official_key_id: int | None
    subject: str
    not_after: datetime


def successors_of(session: Session | Connection, cert_ids: Sequence[int]) -> list[Successor]:
    """Every certificate renewing one of `cert_ids`, oldest first."""
    c, r = _CERTS, _REQUESTS
    out: list[Successor] = []
    for part in _chunks(sorted(set(cert_ids))):
        out += [Successor(row[0], row[1], row[2], row[3], bool(row[4]), row[5], row[6],
                          row[7], row[8])
                for row in session.execute(
                    select(c.c.id, c.c.serial, c.c.predecessor_id, c.c.status,
                           c.c.cert_der.is_not(None), r.c.requested_by,
                           c.c.official_key_id, c.c.subject, c.c.not_after)
                    .select_from(c.outerjoin(r, r.c.id == c.c.request_id))
                    .where(c.c.predecessor_id.in_(list(part)))).all()]
    return sorted(out, key=lambda x: x.id)


def _reorg_models() -> tuple[Any, Any]:
    from ca.models import ReorgBatchRecord, ReorgItemRecord

    return ReorgBatchRecord, ReorgItemRecord


def get_reorg_batch(session: Session, batch_id: int, *, for_update: bool = False) -> Any:
    batch_model, _ = _reorg_models()
    stmt = select(batch_model).where(batch_model.id == batch_id)
    if for_update:
        stmt = stmt.with_for_update()
    record = session.scalars(stmt).first()
    if record is None:
        raise NotFound(f"no reorganization batch {batch_id}")
    return record


def reorg_batches_for_mapping(session: Session, mapping_sha256: str) -> list[Any]:
    """The batches of one mapping (by its SHA-256), newest first."""
    batch_model, _ = _reorg_models()
    return list(session.scalars(select(batch_model)
                                .where(batch_model.mapping_sha256 == mapping_sha256)
                                .order_by(batch_model.id.desc())).all())


def list_reorg_batches(session: Session, limit: int = 50) -> list[Any]:
    batch_model, _ = _reorg_models()
    return list(session.scalars(select(batch_model).order_by(batch_model.id.desc())
                                .limit(limit)).all())


def reorg_items(session: Session, batch_id: int, *, statuses: Sequence[str] | None = None,
                official_id: int | None = None, after_id: int = 0,
                limit: int | None = None) -> list[Any]:
    """Items of a batch by id (after `after_id`), in some statuses, of one official."""
    _, item_model = _reorg_models()
    stmt = (select(item_model).where(item_model.batch_id == batch_id,
                                     item_model.id > after_id)
            .order_by(item_model.id))
    if statuses is not None:
        stmt = stmt.where(item_model.status.in_(list(statuses)))
    if official_id is not None:
        stmt = stmt.where(item_model.official_id == official_id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt).all())


def insert_reorg_items(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    _, item_model = _reorg_models()
    if rows:
        session.execute(insert(item_model.__table__), list(rows))


def update_reorg_items(session: Session, changes: Sequence[dict[str, Any]]) -> None:
    """Bulk update of items: each dict has `id` and the columns to set (same keys in all)."""
    _, item_model = _reorg_models()
    if not changes:
        return
    table = item_model.__table__
    keys = [k for k in changes[0] if k != "id"]
    session.execute(
        update(table).where(table.c.id == bindparam("b_id"))
        .values({k: bindparam(f"b_{k}") for k in keys}),
        [{"b_id": ch["id"], **{f"b_{k}": ch[k] for k in keys}} for ch in changes])


def reorg_item_counts(session: Session, batch_id: int) -> dict[str, int]:
    """status -> number of items of the batch."""
    _, item_model = _reorg_models()
    return {status: int(n) for status, n in session.execute(
        select(item_model.status, func.count()).where(item_model.batch_id == batch_id)
        .group_by(item_model.status)).all()}


def open_reorg_items_for(session: Session, serials: Sequence[str], *,
                         except_batch: int | None = None) -> list[tuple[str, int]]:
    """(old serial, batch id) of unfinished items of unfinished batches among `serials`."""
    batch_model, item_model = _reorg_models()
    out: list[tuple[str, int]] = []
    for part in _chunks(sorted(set(serials))):
        stmt = (select(item_model.old_serial, item_model.batch_id)
                .join(batch_model, batch_model.id == item_model.batch_id)
                .where(item_model.old_serial.in_(list(part)),
                       item_model.status.in_(("pending", "waiting", "issued")),
                       batch_model.status != "done"))
        if except_batch is not None:
            stmt = stmt.where(item_model.batch_id != except_batch)
        out += [(r[0], int(r[1])) for r in session.execute(stmt).all()]
    return out


def queue_mails(session: Session, rows: Sequence[dict[str, Any]], now: datetime) -> (
    dict[str, int]
):
    """Insert outbox rows (recipient, subject, body, kind, ref, dedupe_key; checked by the
    caller as ca/outbox.py checks them) in one statement, skipping dedupe keys already
    queued: returns dedupe_key -> id of those queued now. For bulk notices (ca/reorg.py);
    the caller audits them."""
    from ca.models import MailOutboxRecord

    if not rows:
        return {}
    dialect_insert = insert_on_conflict(session)
    table = MailOutboxRecord.__table__
    out: dict[str, int] = {}
    for part in _chunks(list(rows)):
        stmt = (dialect_insert(table)
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
                .returning(table.c.id, table.c.dedupe_key))
        result = session.execute(stmt, [
            {**r, "status": "queued", "attempts": 0, "next_attempt_at": now,
             "created_at": now} for r in part])
        out.update((key, int(i)) for i, key in result.all())
    return out


def waiting_rekey_items(session: Session, official_id: int) -> list[Any]:
    """An official's certificates waiting in `--rekey` batches for their new key."""
    _, item_model = _reorg_models()
    return list(session.scalars(
        select(item_model).where(item_model.official_id == official_id,
                                 item_model.status == "waiting")
        .order_by(item_model.batch_id, item_model.id)).all())


# -- job leases -----------------------------------------------------------------------------

def take_lease(session: Session, name: str, holder: str, now: datetime,
               until: datetime) -> tuple[str, datetime] | None:
    """Take the lease `name` for `holder` until `until` if nobody holds it or its holder's
    time ran out (one atomic UPDATE: of two takers at once, one gets it). None when taken;
    else (holder, until) of whoever has it."""
    from sqlalchemy import or_

    from ca.models import JobLeaseRecord

    dialect_insert = insert_on_conflict(session)
    table = JobLeaseRecord.__table__
    session.execute(dialect_insert(table).values(name=name, holder=None, until=None)
                    .on_conflict_do_nothing(index_elements=["name"]))
    taken = session.execute(
        update(table).where(table.c.name == name,
                            or_(table.c.until.is_(None), table.c.until <= now))
        .values(holder=holder, until=until))
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return None
    row = session.execute(select(table.c.holder, table.c.until)
                          .where(table.c.name == name)).one()
    return str(row.holder), row.until


def release_lease(session: Session, name: str, holder: str) -> None:
    """Give the lease back (only if `holder` still has it)."""
    from ca.models import JobLeaseRecord

    table = JobLeaseRecord.__table__
    session.execute(update(table).where(table.c.name == name, table.c.holder == holder)
                    .values(holder=None, until=None))
