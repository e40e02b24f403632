"""The one module that issues SQL for CA data: lookups and listings over the models."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca.errors import NotFound
from ca.models import (
    CARecord,
    CertificateRecord,
    OfficialKeyRecord,
    OfficialRecord,
)


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


def count_cas(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(CARecord)) or 0


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


def serial_exists(session: Session, serial: str) -> bool:
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


def get_official_key(session: Session, key_id: int) -> OfficialKeyRecord:
    record = session.get(OfficialKeyRecord, key_id)
    if record is None:
        raise NotFound(f"no official key with id {key_id}")
    return record


def official_certificates(session: Session, official_id: int) -> Sequence[CertificateRecord]:
    return session.scalars(
        select(CertificateRecord)
        .where(CertificateRecord.official_id == official_id)
        .order_by(CertificateRecord.id)
    ).all()
