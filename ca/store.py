"""The one module that issues SQL for CA data: lookups and listings over the models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

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
    conn.execute(insert(_AUDIT), [
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
    conn.execute(insert(_AUDIT), [
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
