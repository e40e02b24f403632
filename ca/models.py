"""Database models of the certificate authority (SQLAlchemy 2.0 typed; Alembic owns the schema)."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def search_fold(*parts: str | None) -> str:
    """Text as the console's search compares it: tones and other marks dropped, đ as d, case
    folded ("Nguyễn Văn Kiểm" -> "nguyen van kiem"), the parts joined by a space.

    Kept in *_folded columns at write time, so that a search typed with or without tones, in
    any case, is a plain LIKE on both databases (SQLite folds only ASCII; PostgreSQL's ILIKE
    only what the collation knows; folding per row in SQL cost 30-300 µs a row here).
    Changing it means folding the stored rows again, as migration 0012 did."""
    text = unicodedata.normalize("NFD", " ".join(p for p in parts if p))
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return text.replace("đ", "d").replace("Đ", "D").casefold()


def _folded(*columns: str) -> Callable[[Any], str]:
    """A column default: search_fold of these columns of the row being inserted (ORM or Core,
    one row or many)."""
    def default(context: Any) -> str:
        params = context.get_current_parameters()
        return search_fold(*(params.get(c) for c in columns))
    return default


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
    # The token holding the key; None: the online token of the settings. An offline root's
    # token is opened only in a key ceremony, with the quorum's activation PIN.
    token_label: Mapped[str | None] = mapped_column(String(64))
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
    # search_fold(name, email) and search_fold(organization): see search_fold.
    name_folded: Mapped[str] = mapped_column(Text, default=_folded("name", "email"))
    organization_folded: Mapped[str] = mapped_column(Text, default=_folded("organization"))
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
    # search_fold(subject), search_fold(organization); a certificate's subject never changes.
    subject_folded: Mapped[str] = mapped_column(Text, default=_folded("subject"))
    organization_folded: Mapped[str] = mapped_column(Text, default=_folded("organization"))
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
    # Last revoke / hold / release: what a delta CRL (and a CRL refresh) looks for.
    status_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_certificates_ca_status", "ca_id", "status"),)


@event.listens_for(OfficialRecord, "before_update")
def _refold_official(_mapper: Any, _connection: Any, target: OfficialRecord) -> None:
    # A reorganization or an approved change request renames an official or their agency.
    target.name_folded = search_fold(target.name, target.email)
    target.organization_folded = search_fold(target.organization)


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
    # The hash chain (ca/audit.py): position from 1, the previous entry's hash (64 zeros for
    # the first), and SHA-256 over this entry's canonical encoding including both.
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("seq", name="uq_audit_events_seq"),)


class AuditHeadRecord(Base):
    """The chain head: one row (id 1) with the seq and hash of the last entry (0 / 64 zeros
    before the first). Appends lock it, so entries get their places one writer at a time."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))


class AuditSealRecord(Base):
    """The chain head at `seq` (its `hash`), signed with the audit key in the HSM."""

    __tablename__ = "audit_seals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    seq: Mapped[int] = mapped_column(BigInteger, index=True)
    hash: Mapped[str] = mapped_column(String(64))
    key_label: Mapped[str] = mapped_column(String(128))
    algorithm: Mapped[str] = mapped_column(String(32))
    signature: Mapped[bytes] = mapped_column(LargeBinary)
    public_key_der: Mapped[bytes] = mapped_column(LargeBinary)
    reason: Mapped[str] = mapped_column(String(16))  # interval | ceremony | manual


class QuorumRecord(Base):
    """The k-of-n split of a token's activation secret: public checks only, never a share.

    `shares` is JSON: [{"index", "custodian", "commitment"}] where commitment is
    SHA-256(salt || index || share); `secret_check` is SHA-256(salt || secret).
    """

    __tablename__ = "quorums"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_label: Mapped[str] = mapped_column(String(64), unique=True)
    ceremony: Mapped[str] = mapped_column(String(128))
    threshold: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)
    salt: Mapped[str] = mapped_column(String(64))
    secret_check: Mapped[str] = mapped_column(String(64))
    shares: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CrlRecord(Base):
    """A signed CRL; a number is never used twice, except by the full CRL and the delta CRL
    issued together with it (RFC 5280 5.2.3): (ca_id, number, kind) is unique."""

    __tablename__ = "crls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    number: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(8))  # full | delta
    base_number: Mapped[int | None] = mapped_column(Integer)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())
    entries: Mapped[int] = mapped_column(Integer)
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("ca_id", "number", "kind", name="uq_crls_ca_number"),)


class OcspResponseRecord(Base):
    """A pre-signed OCSP response (one certificate, one CertID hash algorithm), shared by every
    responder process. `cert_state` is the certificate's status as signed, so a response made
    from a stale read is never served after the status changed."""

    __tablename__ = "ocsp_responses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    serial: Mapped[str] = mapped_column(String(64))
    hash_algorithm: Mapped[str] = mapped_column(String(16))  # sha1 | sha256 | ...
    cert_state: Mapped[str] = mapped_column(String(128))
    responder_serial: Mapped[str] = mapped_column(String(64))
    this_update: Mapped[datetime] = mapped_column(UTCDateTime())
    next_update: Mapped[datetime] = mapped_column(UTCDateTime())
    der: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("ca_id", "serial", "hash_algorithm", name="uq_ocsp_responses_cert"),
        Index("ix_ocsp_responses_next_update", "ca_id", "next_update"),
    )


class OcspChangeRecord(Base):
    """A certificate whose status changed (revoke, hold, release): responder processes read
    the rows after the last id they saw (about once a second) and drop those from memory."""

    __tablename__ = "ocsp_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ca_id: Mapped[int] = mapped_column(ForeignKey("cas.id"))
    serial: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class TsaTokenRecord(Base):
    """One RFC 3161 timestamp token, recorded before it is signed: the unique serial is what
    keeps serials unique across processes and servers, and the table is the TSA's record."""

    __tablename__ = "tsa_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    gen_time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    policy: Mapped[str] = mapped_column(String(128))
    hash_algorithm: Mapped[str] = mapped_column(String(16))
    message_imprint: Mapped[str] = mapped_column(String(128))  # hex
    tsa_certificate: Mapped[str] = mapped_column(String(64))  # serial of the signing cert
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AccountRecord(Base):
    """A person who logs in to the web app: argon2id password, TOTP second factor (its secret
    AES-GCM encrypted under a key derived from the web secret key), roles as a comma list
    (official, operator, auditor, admin), and the lock-out state."""

    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    password_hash: Mapped[str] = mapped_column(String(255))
    totp_secret: Mapped[bytes | None] = mapped_column(LargeBinary)  # nonce || AES-GCM sealed
    roles: Mapped[str] = mapped_column(String(128))
    official_id: Mapped[int | None] = mapped_column(ForeignKey("officials.id"))
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, default=False)
    last_totp_step: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ApiTokenRecord(Base):
    """A bearer token of the JSON API: made in the portal by an account with the official
    role, scoped to that account's official and to what it may do ("sign", "read"). Only the
    SHA-256 of the token is kept; `prefix` (the first characters of its random part) names it
    in lists."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    official_id: Mapped[int] = mapped_column(ForeignKey("officials.id"))
    name: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256, hex
    scope: Mapped[str] = mapped_column(String(64))  # comma list: sign,read
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OfficialRequestRecord(Base):
    """A request about an official's certificate, filed (by the official in the portal or
    through the API, or by an operator) and decided by an operator: `renewal` (same content),
    `change` (new content) or `new` (a first certificate). `content` is the requested subject
    content as JSON (name, title, organization, unit, locality, province, email). With
    key_choice `new`, `key_id` is the official's new key, made and sealed under their PIN when
    they filed, kept `pending` until the certificate for it is issued (retired otherwise).
    `issuing`: an operator approved it and the certificate is being made."""

    __tablename__ = "official_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # renewal | change | new
    official_id: Mapped[int] = mapped_column(ForeignKey("officials.id"), index=True)
    serial: Mapped[str | None] = mapped_column(String(64))  # the certificate it renews
    content: Mapped[str] = mapped_column(Text)
    key_choice: Mapped[str] = mapped_column(String(8))  # same | new
    key_id: Mapped[int | None] = mapped_column(ForeignKey("official_keys.id"))
    # pending | issuing | approved | rejected | cancelled
    status: Mapped[str] = mapped_column(String(16), index=True)
    filed_via: Mapped[str] = mapped_column(String(16))  # portal | operator | api
    requested_by: Mapped[str] = mapped_column(String(128))
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    new_serial: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        # At most one open request per certificate, whatever the races (NULL serials of `new`
        # requests never collide; those are checked per official in ca/requests.py).
        Index("uq_official_requests_open", "serial", unique=True,
              sqlite_where=text("status IN ('pending', 'issuing')"),
              postgresql_where=text("status IN ('pending', 'issuing')")),
    )


class MailOutboxRecord(Base):
    """One e-mail to send (ca/outbox.py queues, kyso/mailer.py delivers): kept until the mail
    server accepted it (`sent`) or refused it for good (`failed`, a 5xx for the recipient),
    so a mail server outage loses nothing. `dedupe_key` is unique: the same notice (e.g.
    `expiry:<serial>:7d`) is never queued twice. `ref` names what it is about
    (`cert:<serial>`, `request:<id>`, `batch:<id>`). `next_attempt_at` is also the claim of
    a delivering process (pushed ahead while it sends), so two workers never send it twice."""

    __tablename__ = "mail_outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    recipient: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)  # plain text, UTF-8
    kind: Mapped[str] = mapped_column(String(32))  # expiry-warning | renewal | batch | ...
    ref: Mapped[str | None] = mapped_column(String(128), index=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(16))  # queued | sent | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)


class JobLeaseRecord(Base):
    """Who runs a scheduled job right now (the daily lifecycle job, kyso/mailer.py): taken
    by one atomic UPDATE when free or run out, released when the job ends, so two web workers
    (or a worker and cron) never run it at once; a holder that died frees it at `until`."""

    __tablename__ = "job_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(128))  # host:pid:thread
    until: Mapped[datetime | None] = mapped_column(UTCDateTime())


# Successor lookups (renewals, reorganization batches resuming) go by predecessor_id.
Index("ix_certificates_predecessor_id", CertificateRecord.predecessor_id)


class ReorgBatchRecord(Base):
    """A bulk change after a reorganization (ca/reorg.py): the mapping as uploaded (its text
    and SHA-256: running the same mapping again resumes the unfinished batch), who started
    it, where it stands and its counts. `runner` (host:pid) and `heartbeat_at` say which
    process is running it, so two never run it at once and a dead one's is taken over."""

    __tablename__ = "reorg_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mapping_sha256: Mapped[str] = mapped_column(String(64), index=True)
    mapping_text: Mapped[str] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # planned | running | waiting (rekey: officials' PINs) | done | failed
    status: Mapped[str] = mapped_column(String(16), index=True)
    rekey: Mapped[bool] = mapped_column(Boolean, default=False)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    runner: Mapped[str | None] = mapped_column(String(128))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class ReorgItemRecord(Base):
    """One certificate of a reorganization batch: the old one, the planned new content
    (JSON: content and changes) and subject, the revocation reason, and where it stands:
    pending | waiting (rekey) | issued (new serial recorded, old not yet revoked) | done |
    failed | skipped."""

    __tablename__ = "reorg_items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("reorg_batches.id"))
    old_serial: Mapped[str] = mapped_column(String(64))
    old_certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    official_id: Mapped[int] = mapped_column(ForeignKey("officials.id"), index=True)
    row: Mapped[int] = mapped_column(Integer)
    old_subject: Mapped[str] = mapped_column(Text)
    new_subject: Mapped[str] = mapped_column(Text)
    content: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    new_serial: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint("batch_id", "old_serial", name="uq_reorg_items_batch_serial"),
        Index("ix_reorg_items_batch_status", "batch_id", "status"),
    )
