"""Database models of the certificate authority (SQLAlchemy 2.0 typed; Alembic owns the schema)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on SQLite (which drops tzinfo) and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use timezone-aware UTC")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class CARecord(Base):
    """A CA of the hierarchy; its private key lives in the HSM under key_label."""

    __tablename__ = "cas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("cas.id"))
    kind: Mapped[str] = mapped_column(String(16))  # root | issuing
    key_label: Mapped[str] = mapped_column(String(128))
    key_spec: Mapped[str] = mapped_column(String(16))
    subject: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(64))
    cert_der: Mapped[bytes] = mapped_column(LargeBinary)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CertRequestRecord(Base):
    """An approved request: what was asked for (CSR or server-side key) and by whom."""

    __tablename__ = "cert_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # csr | server-key | renewal
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    profile: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    csr_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    requested_by: Mapped[str] = mapped_column(String(128))
    approved_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OfficialRecord(Base):
    """An official (subscriber) whose signing keys are held wrapped and sealed under their PIN."""

    __tablename__ = "officials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    title: Mapped[str | None] = mapped_column(String(128))
    organization: Mapped[str] = mapped_column(String(128), index=True)
    unit: Mapped[str | None] = mapped_column(String(128))
    locality: Mapped[str | None] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(254))
    failed_pin_attempts: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OfficialKeyRecord(Base):
    """One signing key of an official: HSM-wrapped blob, sealed again under an argon2id(PIN) key."""

    __tablename__ = "official_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    official_id: Mapped[int] = mapped_column(ForeignKey("officials.id"), index=True)
    key_spec: Mapped[str] = mapped_column(String(16))
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key: Mapped[bytes] = mapped_column(LargeBinary)
    kdf_salt: Mapped[bytes] = mapped_column(LargeBinary)
    kdf_params: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | retired
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CertificateRecord(Base):
    """An issued (or reserved, before the HSM signature) certificate, keyed by its serial."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    request_id: Mapped[int | None] = mapped_column(ForeignKey("cert_requests.id"))
    official_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"), index=True)
    official_key_id: Mapped[int | None] = mapped_column(ForeignKey("official_keys.id"))
    predecessor_id: Mapped[int | None] = mapped_column(ForeignKey("certificates.id"))
    profile: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(Text)
    organization: Mapped[str | None] = mapped_column(String(128), index=True)
    key_spec: Mapped[str] = mapped_column(String(16))
    spki_sha256: Mapped[str] = mapped_column(String(64), index=True)
    # pending: serial reserved and lint certificate stored, real signature not yet made.
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|valid|revoked|hold
    not_before: Mapped[datetime] = mapped_column(UTCDateTime())
    not_after: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    lint_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    cert_der: Mapped[bytes | None] = mapped_column(LargeBinary)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revocation_reason: Mapped[str | None] = mapped_column(String(32))
    invalidity_date: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_certificates_ca_status", "ca_id", "status"),)


class AuditEventRecord(Base):
    """One security-relevant event: who did what to which object, and how it ended."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    object: Mapped[str] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str | None] = mapped_column(Text)
