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
)

_CERTS = CertificateRecord.__table__
_REQUESTS = CertRequestRecord.__table__
_AUDIT = AuditEventRecord.__table__


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
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    else:
        from sqlalchemy.dialects.sqlite import insert as dialect_insert
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
