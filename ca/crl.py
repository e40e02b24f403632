"""Certificate revocation lists: numbered, linted, signed by the CA's HSM key, stored.

- A CRL number is reserved in its own committed transaction, under the CA's row lock, before
  the HSM signs: a number is never used twice -- not by two generators at once, nor after a
  crash between signing and storing (the reserved row stays, empty). Full and delta CRLs share
  the sequence (RFC 5280 5.2.4).
- Revocations lock the same CA row before they take their time stamp, so a CRL either sees a
  change or was made before it: nothing falls between two CRLs.
- Entries are streamed from the database as plain rows and DER-encoded straight into one
  buffer; cryptography's builder would need a Python object per entry (and adding them one by
  one is quadratic). The small parts (name, extensions) come from cryptography; the result is
  parsed and its signature checked with cryptography before it is stored.
- Lint (pkilint) before and after signing. Above LINT_FULL_LIMIT entries, pkilint (pure
  Python) would take minutes: the CRL's structure is linted on a copy with its first
  LINT_SAMPLE entries, signed with a probe key; the real CRL is then checked with cryptography.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import Row, func, select, type_coerce, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import NullType

from ca import audit, store
from ca.errors import InvalidRequest, LintFailed
from ca.issuance import Issuer, signature_hash, throwaway_key
from ca.models import CertificateRecord, CrlRecord

PENDING = b""  # der of a reserved, not yet signed CRL number
LINT_FULL_LIMIT = 1_000
LINT_SAMPLE = 100

# CRLReason codes (RFC 5280 5.3.1) by cryptography's ReasonFlags values.
_REASON_CODES = {
    "unspecified": 0, "keyCompromise": 1, "cACompromise": 2, "affiliationChanged": 3,
    "superseded": 4, "cessationOfOperation": 5, "certificateHold": 6, "removeFromCRL": 8,
    "privilegeWithdrawn": 9, "aACompromise": 10,
}
_OID_REASON = bytes.fromhex("0603551d15")
_OID_INVALIDITY = bytes.fromhex("0603551d18")
_ALGORITHMS = {
    ("ec", "sha256"): bytes.fromhex("300a06082a8648ce3d040302"),
    ("ec", "sha384"): bytes.fromhex("300a06082a8648ce3d040303"),
    ("rsa", "sha256"): bytes.fromhex("300d06092a864886f70d01010b0500"),
    ("rsa", "sha384"): bytes.fromhex("300d06092a864886f70d01010c0500"),
}


# -- DER ------------------------------------------------------------------------------------

def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _len(len(content)) + content


def _integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)
    return _tlv(0x02, body)


def _time(at: datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime after."""
    at = at.astimezone(UTC)
    if 1950 <= at.year < 2050:
        return _tlv(0x17, at.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(0x18, at.strftime("%Y%m%d%H%M%SZ").encode())


def _extension(oid_der: bytes, value_der: bytes, critical: bool = False) -> bytes:
    return _tlv(0x30, oid_der + (b"\x01\x01\xff" if critical else b"")
                + _tlv(0x04, value_der))


def _x509_extension(ext: x509.ExtensionType, critical: bool = False) -> bytes:
    oid = x509.ObjectIdentifier(ext.oid.dotted_string)
    return _extension(_oid_der(oid), ext.public_bytes(), critical)


def _oid_der(oid: x509.ObjectIdentifier) -> bytes:
    parts = [int(p) for p in oid.dotted_string.split(".")]
    body = bytearray([parts[0] * 40 + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _tlv(0x06, bytes(body))


_REASON_EXT = {name: _extension(_OID_REASON, _tlv(0x0A, bytes([code])))
               for name, code in _REASON_CODES.items()}
_REASON_SEQ = {name: _tlv(0x30, ext) for name, ext in _REASON_EXT.items()}  # crlEntryExtensions


def _raw_time(value: datetime | str) -> bytes:
    """A revocation time as DER: from a datetime, or straight from SQLite's stored text
    ("YYYY-MM-DD HH:MM:SS[.ffffff]", UTC) without building a datetime per row."""
    if isinstance(value, str):
        if "1950" <= value < "2050":
            return b"\x17\x0d" + (value[2:4] + value[5:7] + value[8:10] + value[11:13]
                                  + value[14:16] + value[17:19] + "Z").encode()
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return _time(value)


def _raw_datetime(value: datetime | str) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


def encode_entry(serial_hex: str, revoked_at: datetime | str, reason: str | None,
                 invalidity: datetime | str | None) -> bytes:
    """One revokedCertificates entry. `unspecified` is omitted (RFC 5280 5.3.1)."""
    serial = bytes.fromhex(serial_hex if len(serial_hex) % 2 == 0 else "0" + serial_hex)
    if serial[0] & 0x80:
        serial = b"\x00" + serial
    body = b"\x02" + bytes((len(serial),)) + serial + _raw_time(revoked_at)
    if invalidity is not None:
        exts = _REASON_EXT[reason] if reason and reason != "unspecified" else b""
        exts += _extension(_OID_INVALIDITY, _tlv(0x18, _raw_datetime(invalidity).astimezone(
            UTC).strftime("%Y%m%d%H%M%SZ").encode()))
        body += _tlv(0x30, exts)
    elif reason and reason != "unspecified":
        body += _REASON_SEQ[reason]
    return _tlv(0x30, body) if len(body) > 127 else b"\x30" + bytes((len(body),)) + body


def _algorithm(key: Any) -> bytes:
    public = key.public_key() if hasattr(key, "public_key") else key
    family = "ec" if isinstance(public, ec.EllipticCurvePublicKey) else "rsa"
    return _ALGORITHMS[(family, signature_hash(key).name)]


def _sign(key: Any, data: bytes) -> bytes:
    algorithm = signature_hash(key)
    public = key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        return bytes(key.sign(data, ec.ECDSA(algorithm)))
    if isinstance(public, rsa.RSAPublicKey):
        return bytes(key.sign(data, padding.PKCS1v15(), algorithm))
    raise InvalidRequest(f"unsupported CA key type {type(public).__name__}")


def assemble(issuer: x509.Certificate, key: Any, *, number: int, this_update: datetime,
             next_update: datetime, entries: bytes | bytearray, entry_count: int,
             delta_base: int | None = None) -> bytes:
    """A signed CertificateList from pre-encoded entries (key: HSM or software key)."""
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    exts = _x509_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski))
    exts += _x509_extension(x509.CRLNumber(number))
    if delta_base is not None:
        exts += _x509_extension(x509.DeltaCRLIndicator(delta_base), critical=True)
    algorithm = _algorithm(key)
    tbs = bytearray(_integer(1))  # v2
    tbs += algorithm
    tbs += issuer.subject.public_bytes()
    tbs += _time(this_update) + _time(next_update)
    if entry_count:
        tbs += b"\x30" + _len(len(entries))
        tbs += entries
    tbs += _tlv(0xA0, _tlv(0x30, exts))
    tbs_der = b"\x30" + _len(len(tbs)) + bytes(tbs)
    del tbs
    signature = _sign(key, tbs_der)
    body = tbs_der + algorithm + _tlv(0x03, b"\x00" + signature)
    return b"\x30" + _len(len(body)) + body


# -- generation -----------------------------------------------------------------------------

@dataclass(frozen=True)
class SignedCrl:
    ca_name: str
    number: int
    kind: str  # full | delta
    base_number: int | None
    this_update: datetime
    next_update: datetime
    entries: int
    der: bytes

    @property
    def pem(self) -> bytes:
        return x509.load_der_x509_crl(self.der).public_bytes(serialization.Encoding.PEM)


def _raw(column: Any) -> Any:
    """The column as the driver returns it: SQLite's stored text, PostgreSQL's datetime --
    no per-row conversion (encode_entry takes both)."""
    return type_coerce(column, NullType())


def _full_rows(session: Session, ca_id: int) -> Iterable[Row[Any]]:
    # Core on the session's connection: no ORM row processing for a million rows.
    return session.connection().execute(
        select(CertificateRecord.serial, _raw(CertificateRecord.revoked_at),
               CertificateRecord.revocation_reason, _raw(CertificateRecord.invalidity_date))
        .where(CertificateRecord.ca_id == ca_id,
               CertificateRecord.status.in_(("revoked", "hold")))
        .order_by(CertificateRecord.id)
        .execution_options(yield_per=20_000, stream_results=True)
    )


def _delta_rows(session: Session, ca_id: int, since: datetime) -> Iterable[Row[Any]]:
    """Changes since the base: revoked/held entries, and removeFromCRL for released ones."""
    return session.connection().execute(
        select(CertificateRecord.serial,
               _raw(func.coalesce(CertificateRecord.revoked_at,
                                  CertificateRecord.status_changed_at)),
               CertificateRecord.revocation_reason, _raw(CertificateRecord.invalidity_date),
               CertificateRecord.status)
        .where(CertificateRecord.ca_id == ca_id,
               CertificateRecord.status_changed_at >= since,
               CertificateRecord.status.in_(("revoked", "hold", "valid")))
        .order_by(CertificateRecord.id)
        .execution_options(yield_per=20_000, stream_results=True)
    )


def _encode(rows: Iterable[Row[Any]], *, delta: bool) -> tuple[bytearray, int, bytearray, int]:
    """All entries, and the first LINT_SAMPLE of them (for linting a large CRL's structure)."""
    out = bytearray()
    count = 0
    sample = bytearray()
    for row in rows:
        serial, when, reason, invalidity = row[0], row[1], row[2], row[3]
        if delta and row[4] == "valid":
            reason, invalidity = "removeFromCRL", None
        der = encode_entry(serial, when, reason, invalidity)
        out += der
        count += 1
        if count <= LINT_SAMPLE:
            sample += der
    return out, count, sample, min(count, LINT_SAMPLE)


def latest(session: Session, ca_id: int, kind: str | None = None) -> CrlRecord | None:
    """The newest signed CRL of the CA (of a kind), if any."""
    query = select(CrlRecord).where(CrlRecord.ca_id == ca_id, CrlRecord.der != PENDING)
    if kind is not None:
        query = query.where(CrlRecord.kind == kind)
    return session.scalars(query.order_by(CrlRecord.number.desc()).limit(1)).first()


def changed_since(session: Session, ca_id: int, since: datetime) -> datetime | None:
    """The first revoke/hold/release at or after `since`, if any."""
    return session.scalar(
        select(func.min(CertificateRecord.status_changed_at))
        .where(CertificateRecord.ca_id == ca_id, CertificateRecord.status_changed_at >= since))


def generate(
    sessions: sessionmaker[Session],
    issuer: Issuer,
    *,
    now: datetime | Callable[[], datetime],
    next_update: timedelta,
    actor: str,
    with_delta: bool = False,
    lint: bool = True,
    audit_details: dict[str, Any] | None = None,
    only_if: Any = None,
) -> list[SignedCrl] | None:
    """Reserve the next CRL number, encode, lint, sign with the CA's key, check, store.

    Returns the full CRL and, with `with_delta` once a previous full CRL exists, the delta CRL
    issued with it: same number and thisUpdate (RFC 5280 5.2.3: issued at the same time, they
    share the number and give the same information), base = the previous full CRL. Issuing
    deltas only beside a full CRL is deliberate: OpenSSL's default CRL lookup (as in
    `openssl verify -crl_download`, which also fetches the Freshest CRL of a certificate)
    scores a delta like a complete CRL and keeps the newest, so a delta newer than its full
    CRL would hide older revocations from it. With equal thisUpdate, it keeps the full CRL.

    `only_if(session)`, called under the CA's lock, lets a scheduler skip when another process
    just did the work (returns None). `now` may be a clock, read once the lock is held: every
    change not in this CRL is then stamped later than its `created_at`.
    """
    if next_update <= timedelta(0):
        raise InvalidRequest("nextUpdate must be after thisUpdate")
    with sessions.begin() as s:
        # The CA row lock orders generators and revocations; unique (ca_id, number, kind).
        store.lock_ca(s, issuer.record_id)
        if only_if is not None and not only_if(s):
            return None
        if callable(now):
            now = now()
        this_update = now.replace(microsecond=0)
        until = this_update + next_update
        base = latest(s, issuer.record_id, "full") if with_delta else None
        number = (s.scalar(select(func.max(CrlRecord.number))
                           .where(CrlRecord.ca_id == issuer.record_id)) or 0) + 1
        parts = [("full", None, _encode(_full_rows(s, issuer.record_id), delta=False))]
        if base is not None:
            parts.append(("delta", base.number, _encode(
                _delta_rows(s, issuer.record_id, base.created_at), delta=True)))
        reserved = []
        for kind, base_number, (_, count, _, _) in parts:
            row = CrlRecord(ca_id=issuer.record_id, number=number, kind=kind,
                            base_number=base_number, this_update=this_update, next_update=until,
                            entries=count, der=PENDING, created_at=now)
            s.add(row)
            s.flush()
            reserved.append(row.id)
            audit.record(s, actor=actor, action="crl.sign",
                         obj=f"crl:{issuer.name}#{number}" + ("d" if kind == "delta" else ""),
                         details={"kind": kind, "entries": count, "base": base_number,
                                  "next_update": until.isoformat(), **(audit_details or {})})
    signed = []
    for crl_id, (kind, base_number, (entries, count, sample, sample_count)) in zip(
            reserved, parts, strict=True):
        common = {"number": number, "this_update": this_update, "next_update": until,
                  "delta_base": base_number}
        if lint:
            from ca.lint import lint_crl

            probe = throwaway_key(issuer.key_spec)
            draft = assemble(issuer.certificate, probe, entries=sample,
                             entry_count=sample_count, **common)
            _check_lint(draft, lint_crl(draft))
        der = assemble(issuer.certificate, issuer.key, entries=entries, entry_count=count,
                       **common)
        del entries
        if not _verifies(der, issuer.certificate):
            raise LintFailed(f"the signed CRL of {issuer.name} does not verify")
        if lint and count <= LINT_FULL_LIMIT:
            from ca.lint import lint_crl

            _check_lint(der, lint_crl(der))
        signed.append((crl_id, SignedCrl(issuer.name, number, kind, base_number, this_update,
                                         until, count, der)))
    # Both in one transaction: a reader never sees the delta without its full CRL.
    with sessions.begin() as s:
        for crl_id, crl in signed:
            s.execute(update(CrlRecord).where(CrlRecord.id == crl_id).values(der=crl.der))
    return [crl for _, crl in signed]


def generate_full_crl(sessions: sessionmaker[Session], issuer: Issuer, *, now: datetime,
                      next_update: timedelta, actor: str, lint: bool = True,
                      audit_details: dict[str, Any] | None = None) -> SignedCrl:
    """A full CRL alone (an offline CA's, in a ceremony)."""
    crls = generate(sessions, issuer, now=now, next_update=next_update, actor=actor,
                    lint=lint, audit_details=audit_details)
    assert crls
    return crls[0]


def _verifies(der: bytes, issuer: x509.Certificate) -> bool:
    """The HSM's signature checks out against the CA certificate (and the DER parses)."""
    from cryptography.exceptions import InvalidSignature

    crl = x509.load_der_x509_crl(der)
    public = issuer.public_key()
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            public.verify(crl.signature, crl.tbs_certlist_bytes,
                          ec.ECDSA(crl.signature_hash_algorithm))  # type: ignore[arg-type]
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(crl.signature, crl.tbs_certlist_bytes, padding.PKCS1v15(),
                          crl.signature_hash_algorithm)  # type: ignore[arg-type]
        else:
            return False
    except InvalidSignature:
        return False
    return True


def _check_lint(der: bytes, report: Any) -> None:
    if not report.ok:
        raise LintFailed("the CRL would not pass linting:\n" + report.summary())


# -- the service: what is due, generation by hand, what the distribution point serves ----------

@dataclass(frozen=True)
class CrlPolicy:
    """How often CRLs are made (kyso.settings.CrlSettings gives the values)."""

    next_update: timedelta = timedelta(hours=48)
    refresh_before: timedelta = timedelta(hours=24)
    delta: bool = True  # a delta CRL beside each full one (against the previous full CRL)
    after_change: timedelta = timedelta(seconds=30)


@dataclass(frozen=True)
class PublishedCrl:
    ca_name: str
    kind: str
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes


class CrlService:
    """CRLs of the online CAs: generated when due (schedule, or shortly after a change) by
    whichever process looks first, served from the database, also written under
    publish_dir/crl/ for a static web server."""

    def __init__(self, authority: Any, sessions: sessionmaker[Session],
                 readers: sessionmaker[Session], policy: CrlPolicy, publish_dir: Any,
                 clock: Any = None) -> None:
        self.authority = authority
        self.sessions = sessions
        self.readers = readers
        self.policy = policy
        self.publish_dir = publish_dir
        self.clock = clock or authority.clock

    def generate(self, ca_name: str, *, actor: str = "operator",
                 issuer_token: Any = None) -> list[SignedCrl]:
        """A full CRL (and its delta) now, by hand (`kyso crl generate`); an offline CA needs
        its token opened."""
        issuer = self.authority.issuer(ca_name, issuer_token)
        crls = generate(self.sessions, issuer, now=self.clock, actor=actor,
                        next_update=self.policy.next_update, with_delta=self.policy.delta,
                        lint=self.authority.lint)
        assert crls
        for crl in crls:
            self._publish(crl)
        return crls

    def online_cas(self) -> list[str]:
        with self.readers() as s:
            return [r.name for r in store.list_cas(s)
                    if r.status == "active" and self.authority.is_online(r)]

    def run_due(self, actor: str = "crl-scheduler") -> list[SignedCrl]:
        """Generate every CRL that is due; safe to call from many processes at once."""
        made: list[SignedCrl] = []
        for name in self.online_cas():
            issuer = self.authority.issuer(name)
            crls = generate(
                self.sessions, issuer, now=self.clock, actor=actor,
                next_update=self.policy.next_update, with_delta=self.policy.delta,
                lint=self.authority.lint,
                only_if=lambda s, i=issuer.record_id: self._due(s, i),
            )
            for crl in crls or ():
                self._publish(crl)
                made.append(crl)
        return made

    def _due(self, s: Session, ca_id: int) -> bool:
        """No full CRL yet, nextUpdate close, or a revoke/hold/release since the last one
        (after `after_change`, so a burst of revocations makes one CRL)."""
        now = self.clock()
        full = latest(s, ca_id, "full")
        if full is None or now >= full.next_update - self.policy.refresh_before:
            return True
        change = changed_since(s, ca_id, full.created_at)
        return change is not None and now - change >= self.policy.after_change

    def current(self, ca_name: str, kind: str = "full") -> PublishedCrl | None:
        """The newest signed CRL of that kind (served even after its nextUpdate: it is still
        the newest there is)."""
        with self.readers() as s:
            ca = store.find_ca(s, ca_name)
            if ca is None:
                return None
            row = latest(s, ca.id, kind)
            if row is None:
                return None
            return PublishedCrl(ca_name, kind, row.number, row.this_update, row.next_update,
                                bytes(row.der))

    def _publish(self, crl: SignedCrl) -> None:
        import os
        from pathlib import Path

        directory = Path(self.publish_dir) / "crl" / ("delta" if crl.kind == "delta" else "")
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{crl.ca_name}.crl"
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(crl.der)
        os.replace(tmp, target)


__all__ = ["CrlPolicy", "CrlService", "PublishedCrl", "SignedCrl", "assemble",
           "changed_since", "encode_entry", "generate", "generate_full_crl", "latest"]
