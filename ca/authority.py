"""The certificate authority service: hierarchy, issuance, renewal, revocation, officials' keys."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from ca import audit, store
from ca.db import make_session_factory
from ca.errors import (
    AlreadyExists,
    CAError,
    InvalidRequest,
    KeyLocked,
    LintFailed,
    NotFound,
    PinIncorrect,
    StateConflict,
    SubjectRejected,
)
from ca.issuance import (
    ApprovedRequest,
    Issuer,
    PublicationUrls,
    build_certificate,
    check_lint,
    check_request,
    lint_only_key,
    load_csr,
    new_serial,
    normalize_serial,
    serial_hex,
    signature_hash,
    spki_sha256,
    throwaway_key,
    utcnow,
    validity_window,
)
from ca.keyseal import KdfParams, WrongPin, check_pin_policy, seal, unseal
from ca.lintpool import LintPool
from ca.models import (
    CARecord,
    CertificateRecord,
    OfficialKeyRecord,
    OfficialRecord,
)
from ca.profiles import ProfileRegistry, format_subject

# RFC 5280 5.3.1 reason codes by the names people type (removeFromCRL is not a reason to revoke).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keycompromise": x509.ReasonFlags.key_compromise,
    "cacompromise": x509.ReasonFlags.ca_compromise,
    "affiliationchanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationofoperation": x509.ReasonFlags.cessation_of_operation,
    "certificatehold": x509.ReasonFlags.certificate_hold,
    "privilegewithdrawn": x509.ReasonFlags.privilege_withdrawn,
    "aacompromise": x509.ReasonFlags.aa_compromise,
}


LINT_AHEAD = 2


def parse_reason(text: str) -> x509.ReasonFlags:
    key = text.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in REASONS:
        raise InvalidRequest(
            f"unknown revocation reason {text!r}; use one of: "
            + ", ".join(r.value for r in REASONS.values())
        )
    return REASONS[key]


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str
    ca_name: str
    profile: str
    subject: str
    not_before: datetime
    not_after: datetime
    certificate: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class NewOfficial:
    official_id: int
    certificate: IssuedCertificate


class Authority:
    """One object per process: holds the profile registry, the issuer cache and the wiring."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        token: Callable[[], Any],
        *,
        readers: sessionmaker[Session] | None = None,
        urls: PublicationUrls,
        publish_dir: Path,
        profiles: ProfileRegistry | None = None,
        lint: bool = True,
        backdate: timedelta = timedelta(minutes=2),
        clock: Callable[[], datetime] = utcnow,
        official_key_spec: str = "ec-p256",
        official_validity_days: int = 730,
        wrapping_key_label: str = "kyso-official-wrap",
        trusted_wrapping_key: bool = False,
        pin_max_attempts: int = 5,
        kdf: KdfParams | None = None,
        lint_workers: int = 2,
        online_token_label: str | None = None,
    ) -> None:
        if backdate > timedelta(minutes=10) or backdate < timedelta(0):
            raise ValueError("backdate must be between 0 and 10 minutes")
        self.sessions = sessions
        self._token_provider = token
        self._online_label = online_token_label
        self.urls = urls
        self.publish_dir = publish_dir
        self.profiles = profiles or ProfileRegistry()
        self.lint = lint
        self.backdate = backdate
        self.clock = clock
        self.official_key_spec = official_key_spec
        self.official_validity_days = official_validity_days
        self.wrapping_key_label = wrapping_key_label
        self.trusted_wrapping_key = trusted_wrapping_key
        self.pin_max_attempts = pin_max_attempts
        self.kdf = kdf or KdfParams()
        self.engine = sessions.kw["bind"]
        self.readers = readers or make_session_factory(self.engine, read_only=True)
        self.lint_pool = LintPool(lint_workers)
        self._issuers: dict[str, Issuer] = {}
        self._issuers_lock = threading.Lock()

    # -- wiring ---------------------------------------------------------------------------

    @property
    def token(self) -> Any:
        return self._token_provider()

    def issuer(self, ca_name: str, token: Any | None = None) -> Issuer:
        """The CA's certificate and HSM key, looked up once per process.

        A CA whose key lives on another token than the online one (an offline root) is only
        usable with that token opened by the caller -- a key ceremony, with the quorum's PIN.
        """
        if token is None:
            with self._issuers_lock:
                cached = self._issuers.get(ca_name)
            if cached is not None:
                return cached
        with self.readers() as s:
            record = store.get_ca(s, ca_name)
            if record.status != "active":
                raise StateConflict(f"CA {ca_name} is {record.status} and cannot issue")
            parent = store.get_ca_by_id(s, record.parent_id).name if record.parent_id else None
            if token is None and not self.is_online(record):
                raise StateConflict(
                    f"CA {ca_name} is offline (its key is on token {record.token_label!r}); "
                    "it signs only in a key ceremony (kyso ceremony run)"
                )
            found = Issuer(
                name=record.name,
                record_id=record.id,
                certificate=x509.load_der_x509_certificate(record.cert_der),
                key=(token or self.token).find_key(label=record.key_label),
                key_spec=record.key_spec,
                parent_name=parent,
                online=self.is_online(record),
            )
        if token is None:
            with self._issuers_lock:
                self._issuers[ca_name] = found
        return found

    def is_online(self, record: CARecord) -> bool:
        """Whether the CA's key is on the online token (the one of the settings)."""
        return record.token_label is None or record.token_label == self.online_token_label

    @property
    def online_token_label(self) -> str:
        """The online token's label (from the settings; else asks the opened token)."""
        return self._online_label or str(self.token.label)

    # -- hierarchy ------------------------------------------------------------------------

    def create_root(
        self,
        name: str,
        subject: str,
        *,
        key_spec: str = "ec-p384",
        validity_days: int | None = None,
        actor: str = "operator",
        token: Any | None = None,
        profile: str = "root-ca",
        dry_run: bool = False,
    ) -> CARecord | None:
        """A self-signed root whose key is made on `token` (default: the online token).

        `dry_run` checks everything (name, profile, key spec, subject, lint with a probe key)
        without touching the HSM or the database, and returns None.
        """
        return self._create_ca(name, subject, None, key_spec, validity_days, None, actor,
                               token=token, profile_name=profile, dry_run=dry_run)

    def create_issuing(
        self,
        name: str,
        subject: str,
        *,
        parent: str,
        key_spec: str = "ec-p256",
        validity_days: int | None = None,
        path_length: int | None = None,
        actor: str = "operator",
        token: Any | None = None,
        parent_token: Any | None = None,
        profile: str = "issuing-ca",
        dry_run: bool = False,
    ) -> CARecord | None:
        """An issuing CA: key made on `token`, certificate signed by `parent` (whose key is on
        `parent_token` when the parent is offline). `dry_run` as for `create_root`."""
        return self._create_ca(name, subject, parent, key_spec, validity_days, path_length, actor,
                               token=token, parent_token=parent_token, profile_name=profile,
                               dry_run=dry_run)

    def _create_ca(
        self,
        name: str,
        subject_text: str,
        parent: str | None,
        key_spec: str,
        validity_days: int | None,
        path_length: int | None,
        actor: str,
        *,
        token: Any | None = None,
        parent_token: Any | None = None,
        profile_name: str | None = None,
        dry_run: bool = False,
    ) -> CARecord | None:
        from hsm import KeySpec

        if not name or not all(c.isalnum() or c in "-_" for c in name) or len(name) > 64:
            raise InvalidRequest("a CA name uses letters, digits, '-' and '_' (at most 64)")
        profile = self.profiles.get(profile_name or ("issuing-ca" if parent else "root-ca"))
        if profile.kind != ("ca" if parent else "root"):
            raise InvalidRequest(
                f"profile {profile.name} is for {profile.kind} certificates, not for "
                + ("an issuing CA" if parent else "a root CA"))
        subject = profile.build_subject(subject_text)
        if key_spec not in profile.allowed_keys:
            raise InvalidRequest(
                f"profile {profile.name} does not accept a {key_spec} key; "
                f"accepted: {', '.join(profile.allowed_keys)}"
            )
        with self.readers() as s:
            if store.find_ca(s, name) is not None:
                raise AlreadyExists(f"a CA named {name!r} already exists")
        if parent is None:
            issuer = None
        elif dry_run:
            issuer = self.issuer_preview(parent)
        else:
            issuer = self.issuer(parent, parent_token)
        label = f"ca-{name}"
        now = self.clock()
        request = ApprovedRequest(profile=profile, subject=subject,
                                  public_key=_probe_key(key_spec), validity_days=validity_days,
                                  kind="ca", path_length=path_length)
        not_before, not_after = validity_window(profile, validity_days, now, self.backdate,
                                                issuer)

        def build(req: ApprovedRequest) -> x509.CertificateBuilder:
            return build_certificate(req, serial=new_serial(), not_before=not_before,
                                     not_after=not_after, issuer=issuer, urls=self.urls)

        if self.lint:
            from ca.lint import lint_certificate

            # Lint before the HSM makes a key: with a probe key of the same spec in its place.
            if issuer is not None:
                self._lint(issuer, [build(request)], actor, issuer.name)
            else:
                probe = throwaway_key(key_spec)
                der = build(request).sign(probe, signature_hash(probe)).public_bytes(
                    serialization.Encoding.DER)
                check_lint(der, lint_certificate(der))
        if dry_run:
            return None
        key_token = token or self.token
        key = key_token.generate_key_pair(KeySpec.parse(key_spec), label)
        signer = issuer.key if issuer else key
        cert = build(replace(request, public_key=key.public_key())).sign(
            signer, signature_hash(signer))
        if self.lint:  # and after signing, as a key ceremony does
            check_lint(cert.public_bytes(serialization.Encoding.DER),
                       lint_certificate(cert.public_bytes(serialization.Encoding.DER)))
        with self.sessions.begin() as s:
            record = CARecord(
                name=name,
                parent_id=issuer.record_id if issuer else None,
                kind="issuing" if parent else "root",
                key_label=label,
                token_label=str(key_token.label),
                key_spec=key_spec,
                subject=format_subject(subject),
                serial=serial_hex(cert.serial_number),
                cert_der=cert.public_bytes(serialization.Encoding.DER),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                status="active",
                created_at=now,
            )
            s.add(record)
            audit.record(s, actor=actor, action="ca.create", obj=f"ca:{name}",
                         details={"serial": record.serial, "parent": parent,
                                  "key_spec": key_spec, "subject": record.subject},
                         clock=self.clock)
        self.publish_ca(record)
        return record

    def issuer_preview(self, ca_name: str) -> Issuer:
        """The CA as issuance sees it, with only its public key: for checks and lint drafts
        that must not touch the HSM (an offline CA included)."""
        with self.readers() as s:
            record = store.get_ca(s, ca_name)
            if record.status != "active":
                raise StateConflict(f"CA {ca_name} is {record.status} and cannot issue")
            cert = x509.load_der_x509_certificate(record.cert_der)
            return Issuer(name=record.name, record_id=record.id, certificate=cert,
                          key=_PublicOnly(cert.public_key()),  # type: ignore[arg-type]
                          key_spec=record.key_spec, online=self.is_online(record))

    def check_issue(self, ca_name: str, request: ApprovedRequest) -> None:
        """Everything `issue` checks before its reservation (profile, subject, key, validity,
        lint of a draft), without the HSM or the database changing."""
        issuer = self.issuer_preview(ca_name)
        prepared = self._prepare(issuer, request, self.clock())
        if self.lint:
            self._lint(issuer, [self._builder(issuer, prepared, new_serial())], "check",
                       ca_name)

    def cross_sign(
        self,
        signer_ca: str,
        certificate: x509.Certificate,
        *,
        profile: str = "issuing-ca",
        validity_days: int | None = None,
        path_length: int | None = None,
        signer_token: Any | None = None,
        actor: str = "operator",
        dry_run: bool = False,
    ) -> x509.Certificate | None:
        """A certificate for another CA's subject and key, signed by `signer_ca`: recorded
        (pending, with its lint draft) before the HSM signs, then stored as valid."""
        prof = self.profiles.get(profile)
        if prof.kind != "ca":
            raise InvalidRequest(f"profile {prof.name} is not a CA profile")
        try:
            constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.value.ca:
            raise InvalidRequest("the certificate to cross-sign is not a CA certificate")
        issuer = self.issuer_preview(signer_ca) if dry_run else self.issuer(signer_ca,
                                                                            signer_token)
        request = ApprovedRequest(profile=prof, subject=prof.build_subject(certificate.subject),
                                  public_key=certificate.public_key(),  # type: ignore[arg-type]
                                  validity_days=validity_days, kind="ca",
                                  path_length=path_length)
        key_spec = prof.check_public_key(request.public_key)
        now = self.clock()
        not_before, not_after = validity_window(prof, validity_days, now, self.backdate, issuer)
        serial_number = new_serial()
        builder = build_certificate(request, serial=serial_number, not_before=not_before,
                                    not_after=not_after, issuer=issuer, urls=self.urls)
        lint_der = self._lint(issuer, [builder], actor, signer_ca)[0]
        if dry_run:
            return None
        serial = serial_hex(serial_number)
        with self.sessions.begin() as s:
            s.add(CertificateRecord(
                serial=serial, ca_id=issuer.record_id, profile=prof.name,
                subject=format_subject(request.subject), organization=None, key_spec=key_spec,
                spki_sha256=spki_sha256(request.public_key), status="pending",
                not_before=not_before, not_after=not_after, lint_der=lint_der,
                created_at=now))
            audit.record(s, actor=actor, action="certificate.cross-sign", obj=f"cert:{serial}",
                         details={"signer": signer_ca, "subject": format_subject(
                             request.subject)}, clock=self.clock)
        cert = builder.sign(issuer.key, signature_hash(issuer.key))
        der = cert.public_bytes(serialization.Encoding.DER)
        if self.lint:
            from ca.lint import lint_certificate

            check_lint(der, lint_certificate(der))
        with self.sessions.begin() as s:
            rec = store.get_certificate(s, serial, for_update=True)
            rec.status, rec.cert_der, rec.issued_at = "valid", der, self.clock()
        return cert

    def publish_ca(self, record: CARecord) -> Path:
        """Write the CA certificate as DER (.crt) and PEM (.pem) under publish_dir/ca/."""
        out = self.publish_dir / "ca"
        out.mkdir(parents=True, exist_ok=True)
        cert = x509.load_der_x509_certificate(record.cert_der)
        (out / f"{record.name}.crt").write_bytes(record.cert_der)
        (out / f"{record.name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return out / f"{record.name}.crt"

    def chain(self, ca_name: str) -> list[x509.Certificate]:
        """The CA's certificate followed by its parents up to the root (leaf-most first)."""
        certs: list[x509.Certificate] = []
        with self.readers() as s:
            record: CARecord | None = store.get_ca(s, ca_name)
            while record is not None:
                certs.append(x509.load_der_x509_certificate(record.cert_der))
                record = store.get_ca_by_id(s, record.parent_id) if record.parent_id else None
        return certs

    # -- issuance -------------------------------------------------------------------------

    def request_from_csr(
        self,
        profile_name: str,
        csr_data: bytes,
        subject: str,
        *,
        emails: tuple[str, ...] = (),
        dns_names: tuple[str, ...] = (),
        validity_days: int | None = None,
        actor: str = "operator",
    ) -> ApprovedRequest:
        """Vet a CSR: its signature must verify; its subject and extensions are NOT used."""
        profile = self.profiles.get(profile_name)
        csr = load_csr(csr_data)
        public_key = csr.public_key()
        profile.check_public_key(public_key)
        return ApprovedRequest(
            profile=profile,
            subject=profile.build_subject(subject),
            public_key=public_key,  # type: ignore[arg-type]
            emails=emails,
            dns_names=dns_names,
            validity_days=validity_days,
            kind="csr",
            csr_der=csr.public_bytes(serialization.Encoding.DER),
            requested_by=actor,
            approved_by=actor,
        )

    def issue(self, ca_name: str, request: ApprovedRequest, *, actor: str = "operator",
              issuer_token: Any | None = None) -> IssuedCertificate:
        """Boulder's two steps: lint and store the reservation, then sign once with the HSM."""
        return self.issue_batch(ca_name, [request], actor=actor, issuer_token=issuer_token)[0]

    def issue_batch(
        self,
        ca_name: str,
        requests: Sequence[ApprovedRequest],
        *,
        actor: str = "operator",
        chunk_size: int = 100,
        issuer_token: Any | None = None,
    ) -> list[IssuedCertificate]:
        """Issue several certificates, Boulder's way.

        Every request is checked (profile, subject, key, validity) before anything is stored.
        Then chunk by chunk: the chunk is linted -- in worker processes, ahead of the chunks
        being reserved, signed and stored -- and only then its reservations (serial, request, lint
        certificate, audit entry) commit in one transaction, the HSM signs, and the
        certificates commit in a second one; a crash after a signature always leaves a record
        to revoke. A lint refusal issues nothing of its chunk or later ones; `LintFailed.issued`
        lists what earlier chunks issued.
        """
        issuer = self.issuer(ca_name, issuer_token)
        now = self.clock()
        prepared = [self._prepare(issuer, request, now) for request in requests]
        serials = [new_serial() for _ in prepared]
        builders = [self._builder(issuer, p, serial) for p, serial in zip(prepared, serials,
                                                                           strict=True)]
        parts = [slice(i, i + chunk_size) for i in range(0, len(prepared), chunk_size)]
        issued: list[IssuedCertificate] = []
        # Lint runs LINT_AHEAD chunks ahead, so the lint workers never wait for this thread.
        linting = [self._start_lint(issuer, builders[part]) for part in parts[:LINT_AHEAD]]
        # One signing thread: the HSM signs chunk k (C_Sign releases the GIL) while this
        # thread lints, reserves and stores around it. Still one signature at a time.
        signer = ThreadPoolExecutor(1, thread_name_prefix="kyso-sign") if len(parts) > 1 \
            else None
        in_flight: list[_Chunk] = []
        try:
            for k, part in enumerate(parts):
                try:
                    lint_ders = self._finish_lint(linting[k], len(prepared[part]), actor,
                                                  ca_name)
                except LintFailed as exc:
                    for chunk in in_flight:
                        issued += self._store(chunk, actor)
                    in_flight.clear()
                    exc.issued = tuple(issued)
                    if issued:
                        exc.message += (f"\n{len(issued)} certificate(s) of this batch were "
                                        "issued before the refusal")
                        exc.args = (exc.message,)
                    raise
                if k + LINT_AHEAD < len(parts):
                    linting.append(self._start_lint(issuer, builders[parts[k + LINT_AHEAD]]))
                chunk = _Chunk(issuer, prepared[part], serials[part], builders[part], lint_ders)
                self._reserve(chunk, now, actor)
                chunk.signing = (signer.submit(self._sign, chunk) if signer is not None
                                 else _done(self._sign(chunk)))
                in_flight.append(chunk)
                while len(in_flight) > 1:
                    issued += self._store(in_flight.pop(0), actor)
            while in_flight:
                issued += self._store(in_flight.pop(0), actor)
        finally:
            for chunk in in_flight:  # an error above: still record what the HSM signed
                with contextlib.suppress(Exception):
                    self._store(chunk, actor)
            if signer is not None:
                signer.shutdown(wait=True)
        return issued

    def _builder(self, issuer: Issuer, p: _Prepared, serial: int) -> x509.CertificateBuilder:
        return build_certificate(p.request, serial=serial, not_before=p.not_before,
                                 not_after=p.not_after, issuer=issuer, urls=self.urls)

    def _start_lint(self, issuer: Issuer, builders: Sequence[x509.CertificateBuilder]) -> (
        tuple[list[bytes], Callable[[], list[Any]]] | None
    ):
        """Sign lint certificates with the stand-in key and hand them to the lint pool
        (None when linting is off)."""
        if not self.lint:
            return None
        stand_in = lint_only_key(issuer.key)
        algorithm = signature_hash(issuer.key)
        ders = [b.sign(stand_in, algorithm).public_bytes(serialization.Encoding.DER)
                for b in builders]
        return ders, self.lint_pool.submit(ders)

    def _finish_lint(self, pending: tuple[list[bytes], Callable[[], list[Any]]] | None,
                     count: int, actor: str, ca_name: str) -> list[bytes | None]:
        """Wait for the lint results; refuse (audited) on any error."""
        if pending is None:
            return [None] * count
        ders, result = pending
        try:
            for der, report in zip(ders, result(), strict=True):
                check_lint(der, report)
        except CAError as exc:
            self._audit_failure(actor, "certificate.issue", f"ca:{ca_name}", exc)
            raise
        return list(ders)

    def _lint(self, issuer: Issuer, builders: Sequence[x509.CertificateBuilder], actor: str,
              ca_name: str) -> list[bytes | None]:
        return self._finish_lint(self._start_lint(issuer, builders), len(builders), actor,
                                 ca_name)

    def _reserve(self, chunk: _Chunk, now: datetime, actor: str) -> None:
        """Commit the chunk's reservations; on a serial collision draw those serials again."""
        issuer = chunk.issuer
        for _attempt in range(5):
            try:
                with self.engine.begin() as conn:
                    store.reserve_certificates(conn, [
                        p.reservation(issuer.record_id, serial_hex(serial), lint_der, now)
                        for p, serial, lint_der in zip(chunk.prepared, chunk.serials,
                                                       chunk.lint_ders, strict=True)
                    ], actor=actor, ca_name=issuer.name)
                return
            except IntegrityError:
                # Only a serial collision can violate a constraint here: draw those again.
                with self.readers() as conn:
                    taken = [i for i, x in enumerate(chunk.serials)
                             if store.serial_exists(conn, serial_hex(x))]
                if not taken:
                    raise
                for i in taken:
                    chunk.serials[i] = new_serial()
                    chunk.builders[i] = self._builder(issuer, chunk.prepared[i],
                                                      chunk.serials[i])
                    chunk.lint_ders[i] = self._lint(issuer, [chunk.builders[i]], actor,
                                                    issuer.name)[0]
        raise CAError("could not reserve unique serials")  # pragma: no cover - 2^-127 odds

    @staticmethod
    def _sign(chunk: _Chunk) -> tuple[list[x509.Certificate], BaseException | None]:
        """The only place issuance touches the issuer's key. Returns what it signed, and the
        error that stopped it, if any."""
        algorithm = signature_hash(chunk.issuer.key)
        certs: list[x509.Certificate] = []
        try:
            for builder in chunk.builders:
                certs.append(builder.sign(chunk.issuer.key, algorithm))
        except Exception as exc:  # noqa: BLE001 - handed to _store, which records and raises
            return certs, exc
        return certs, None

    def _store(self, chunk: _Chunk, actor: str) -> list[IssuedCertificate]:
        """Commit what the HSM signed; mark the rest failed (audited) and re-raise the error."""
        if chunk.signing is None:
            return []
        certs, error = chunk.signing.result()
        chunk.signing = None
        signed = [(serial_hex(serial), cert.public_bytes(serialization.Encoding.DER))
                  for serial, cert in zip(chunk.serials, certs, strict=False)]
        with self.engine.begin() as conn:
            store.finish_certificates(conn, signed, self.clock())
            if error is not None:
                store.fail_certificates(conn, [serial_hex(x) for x in chunk.serials[len(certs):]],
                                        actor=actor, error=type(error).__name__,
                                        now=self.clock())
        if error is not None:
            raise error
        return [
            IssuedCertificate(serial=serial_hex(serial), ca_name=chunk.issuer.name,
                              profile=p.request.profile.name, subject=p.subject_text,
                              not_before=p.not_before, not_after=p.not_after, certificate=cert)
            for p, serial, cert in zip(chunk.prepared, chunk.serials, certs, strict=True)
        ]

    def _prepare(self, issuer: Issuer, request: ApprovedRequest, now: datetime) -> _Prepared:
        if request.profile.is_ca:
            raise InvalidRequest("CA certificates are made in a key ceremony, not by `issue`")
        key_spec = check_request(request)
        not_before, not_after = validity_window(
            request.profile, request.validity_days, now, self.backdate, issuer
        )
        return _Prepared(request, key_spec, not_before, not_after,
                         format_subject(request.subject))

    def _audit_failure(self, actor: str, action: str, obj: str, exc: CAError) -> None:
        with self.sessions.begin() as s:
            audit.record(s, actor=actor, action=action, obj=obj, outcome="failure",
                         details={"code": exc.code, "message": exc.message[:500]},
                         clock=self.clock)

    # -- officials ------------------------------------------------------------------------

    def add_official(
        self,
        *,
        name: str,
        organization: str,
        email: str,
        pin: str,
        ca_name: str,
        unit: str | None = None,
        locality: str | None = None,
        province: str | None = None,
        title: str | None = None,
        key_spec: str | None = None,
        validity_days: int | None = None,
        actor: str = "operator",
    ) -> NewOfficial:
        """HSM key (kept only wrapped, sealed under the official's PIN) + signing certificate."""
        from hsm import KeySpec

        check_pin_policy(pin)
        profile = self.profiles.get("official-signing")
        parts = [("CN", name), ("T", title), ("O", organization), ("OU", unit),
                 ("L", locality), ("ST", province), ("C", "VN")]
        subject = profile.build_subject(
            x509.Name([x509.NameAttribute(_OID[k], v) for k, v in parts if v is not None])
        )
        spec = key_spec or self.official_key_spec
        if spec not in profile.allowed_keys:
            raise InvalidRequest(f"key spec {spec} is not allowed for officials")
        # Validate the whole request before the HSM is touched.
        probe = ApprovedRequest(profile=profile, subject=subject, public_key=_probe_key(spec),
                                emails=(email,), validity_days=validity_days)
        check_request(probe)
        self.issuer(ca_name)
        validity_window(profile, validity_days or self.official_validity_days, self.clock(),
                        self.backdate, None)
        token = self.token
        token.ensure_wrapping_key(self.wrapping_key_label, trusted=self.trusted_wrapping_key)
        blob, public_key = token.generate_wrapped_key_pair(
            KeySpec.parse(spec), self.wrapping_key_label
        )
        now = self.clock()
        with self.sessions.begin() as s:
            official = OfficialRecord(
                name=name, title=title, organization=organization, unit=unit,
                locality=locality, email=email, failed_pin_attempts=0, locked=False,
                created_at=now,
            )
            s.add(official)
            s.flush()
            key_rec = self._new_key_record(s, official.id, spec, public_key, blob, pin, now)
            audit.record(s, actor=actor, action="official.create", obj=f"official:{official.id}",
                         details={"name": name, "organization": organization,
                                  "key_spec": spec}, clock=self.clock)
            official_id, key_id = official.id, key_rec.id
        request = replace(
            probe, public_key=public_key, kind="server-key", official_id=official_id,
            official_key_id=key_id, requested_by=actor, approved_by=actor,
            validity_days=validity_days or self.official_validity_days,
        )
        issued = self.issue(ca_name, request, actor=actor)
        return NewOfficial(official_id=official_id, certificate=issued)

    def _new_key_record(
        self, s: Session, official_id: int, spec: str, public_key: CertificatePublicKeyTypes,
        blob: bytes, pin: str, now: datetime,
    ) -> OfficialKeyRecord:
        key_rec = OfficialKeyRecord(
            official_id=official_id, key_spec=spec,
            public_key_der=public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            sealed_key=b"", kdf_salt=b"", kdf_params=self.kdf.encode(), status="active",
            created_at=now,
        )
        s.add(key_rec)
        s.flush()
        salt, sealed = seal(pin, blob, _seal_aad(official_id, key_rec.id), self.kdf)
        key_rec.sealed_key, key_rec.kdf_salt = sealed, salt
        return key_rec

    def _open_official_key(self, official_id: int, pin: str, actor: str) -> (
        tuple[OfficialKeyRecord, bytes]
    ):
        """Check the PIN against the sealed key; count failures and lock after the limit."""
        failure: CAError | None = None
        with self.sessions.begin() as s:
            official = store.get_official(s, official_id, for_update=True)
            if official.locked:
                failure = KeyLocked(
                    f"official {official_id}'s signing key is locked after "
                    f"{self.pin_max_attempts} wrong PINs; an operator must unlock it"
                )
                audit.record(s, actor=actor, action="official.key.open",
                             obj=f"official:{official_id}", outcome="refused",
                             details={"why": "locked"}, clock=self.clock)
            else:
                key_rec = store.active_official_key(s, official_id)
                try:
                    blob = unseal(pin, key_rec.kdf_salt, key_rec.sealed_key,
                                  _seal_aad(official_id, key_rec.id),
                                  KdfParams.decode(key_rec.kdf_params))
                except WrongPin:
                    official.failed_pin_attempts += 1
                    left = self.pin_max_attempts - official.failed_pin_attempts
                    if left <= 0:
                        official.locked = True
                        failure = KeyLocked(
                            f"wrong signing PIN; official {official_id}'s key is now locked "
                            f"after {self.pin_max_attempts} wrong PINs"
                        )
                        audit.record(s, actor=actor, action="official.key.lock",
                                     obj=f"official:{official_id}", clock=self.clock)
                    else:
                        failure = PinIncorrect(
                            f"wrong signing PIN for official {official_id}; {left} "
                            f"attempt(s) left before the key locks"
                        )
                audit.record(s, actor=actor, action="official.key.open",
                             obj=f"official:{official_id}",
                             outcome="failure" if failure else "success", clock=self.clock)
                if failure is None:
                    official.failed_pin_attempts = 0
                    return key_rec, blob
        assert failure is not None
        raise failure

    @contextlib.contextmanager
    def official_signing_key(self, official_id: int, pin: str, *, actor: str = "official") -> (
        Iterator[Any]
    ):
        """The official's private key, unwrapped in the HSM for this operation only."""
        from hsm import KeySpec

        key_rec, blob = self._open_official_key(official_id, pin, actor)
        public_key = serialization.load_der_public_key(key_rec.public_key_der)
        with self.token.unwrapped_key(blob, KeySpec.parse(key_rec.key_spec),
                                      self.wrapping_key_label, public_key=public_key) as key:
            yield key

    def unlock_official(self, official_id: int, *, actor: str = "operator") -> None:
        with self.sessions.begin() as s:
            official = store.get_official(s, official_id, for_update=True)
            if not official.locked:
                raise StateConflict(f"official {official_id}'s key is not locked")
            official.locked = False
            official.failed_pin_attempts = 0
            audit.record(s, actor=actor, action="official.key.unlock",
                         obj=f"official:{official_id}", clock=self.clock)

    # -- renewal and revocation -----------------------------------------------------------

    def renew(
        self,
        serial: str,
        *,
        rekey: bool = False,
        csr: bytes | None = None,
        pin: str | None = None,
        validity_days: int | None = None,
        actor: str = "operator",
    ) -> IssuedCertificate:
        """A new certificate with the same content and a fresh validity, linked to the old one."""
        serial = normalize_serial(serial)
        with self.readers() as s:
            old = store.get_certificate(s, serial)
            if old.status not in ("valid", "hold") or old.cert_der is None:
                raise StateConflict(f"certificate {serial} is {old.status} and cannot be renewed")
            ca_name = store.get_ca_by_id(s, old.ca_id).name
            official_id, official_key_id = old.official_id, old.official_key_id
            old_id = old.id
        old_cert = x509.load_der_x509_certificate(old.cert_der)
        profile = self.profiles.get(old.profile)
        try:
            san = old_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            emails = tuple(san.get_values_for_type(x509.RFC822Name))
            dns = tuple(san.get_values_for_type(x509.DNSName))
        except x509.ExtensionNotFound:
            emails, dns = (), ()
        public_key = old_cert.public_key()
        csr_der = None
        if rekey and official_id is not None:
            if pin is None:
                raise InvalidRequest("rekeying an official's certificate needs their signing PIN")
            public_key, official_key_id = self._rekey_official(official_id, pin, actor)
        elif rekey:
            if csr is None:
                raise InvalidRequest("rekey needs a new CSR (--csr) with the new public key")
            parsed = load_csr(csr)
            public_key = parsed.public_key()
            csr_der = parsed.public_bytes(serialization.Encoding.DER)
            if spki_sha256(public_key) == old.spki_sha256:  # type: ignore[arg-type]
                raise InvalidRequest("rekey needs a new key; the CSR has the old public key")
        request = ApprovedRequest(
            profile=profile, subject=old_cert.subject, public_key=public_key,  # type: ignore[arg-type]
            emails=emails, dns_names=dns, validity_days=validity_days, kind="renewal",
            csr_der=csr_der, requested_by=actor, approved_by=actor, official_id=official_id,
            official_key_id=official_key_id, predecessor_id=old_id,
        )
        return self.issue(ca_name, request, actor=actor)

    def _rekey_official(self, official_id: int, pin: str, actor: str) -> (
        tuple[CertificatePublicKeyTypes, int]
    ):
        from hsm import KeySpec

        old_key, _ = self._open_official_key(official_id, pin, actor)
        spec = old_key.key_spec
        blob, public_key = self.token.generate_wrapped_key_pair(
            KeySpec.parse(spec), self.wrapping_key_label
        )
        with self.sessions.begin() as s:
            for rec in s.query(OfficialKeyRecord).filter_by(official_id=official_id,
                                                            status="active"):
                rec.status = "retired"
            key_rec = self._new_key_record(s, official_id, spec, public_key, blob, pin,
                                           self.clock())
            audit.record(s, actor=actor, action="official.key.rekey",
                         obj=f"official:{official_id}", clock=self.clock)
            return public_key, key_rec.id

    # -- reissue: renewal or change of content of an official's certificate ---------------

    def official_content(self, serial: str) -> dict[str, str | None]:
        """The content of an official's certificate as people edit it (CONTENT_FIELDS):
        subject attributes by name, and the e-mail address of its SAN."""
        serial = normalize_serial(serial)
        with self.readers() as s:
            rec = store.get_certificate(s, serial)
            if rec.cert_der is None:
                raise StateConflict(f"certificate {serial} was never signed")
            cert = x509.load_der_x509_certificate(rec.cert_der)
        return _content_of(cert)

    def prepare_reissue(
        self,
        serial: str,
        changes: Mapping[str, str | None] | None = None,
        *,
        key_id: int | None = None,
        validity_days: int | None = None,
        actor: str = "operator",
        requested_by: str | None = None,
        now: datetime | None = None,
    ) -> Reissue:
        """Check a reissue of an official's certificate without touching the HSM or the
        database: the certificate must be valid (or on hold) and not expired, the new content
        (the old one with `changes` applied) must pass the profile like `add_official`'s, the
        e-mail goes in the SAN, and the key is the certificate's (`key_id` None) or the
        official's key record `key_id` (a pending new key)."""
        serial = normalize_serial(serial)
        unknown = set(changes or {}) - set(CHANGEABLE_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}; "
                                 f"changeable: {', '.join(CHANGEABLE_FIELDS)}")
        now = now or self.clock()
        with self.readers() as s:
            old = store.get_certificate(s, serial)
            ca_name = store.get_ca_by_id(s, old.ca_id).name
            public_key: CertificatePublicKeyTypes | None = None
            official_key_id = old.official_key_id
            if key_id is not None:
                key_rec = s.get(OfficialKeyRecord, key_id)
                if key_rec is None or key_rec.official_id != old.official_id \
                        or key_rec.status == "retired":
                    raise InvalidRequest(f"key {key_id} is not a usable key of official "
                                         f"{old.official_id}")
                public_key = serialization.load_der_public_key(  # type: ignore[assignment]
                    key_rec.public_key_der)
                official_key_id = key_id
        return self._build_reissue(old, ca_name, changes, public_key, official_key_id,
                                   validity_days=validity_days, actor=actor,
                                   requested_by=requested_by, now=now, windows={})

    def prepare_reissues(
        self,
        wanted: Sequence[tuple[str, Mapping[str, str | None] | None]],
        *,
        validity_days: int | None = None,
        actor: str = "operator",
        requested_by: str | None = None,
        now: datetime | None = None,
    ) -> list[Reissue | CAError]:
        """`prepare_reissue` for many (serial, changes) with the same key each, in one read:
        a Reissue, or the CAError refusing it, per entry, in order (for bulk changes)."""
        now = now or self.clock()
        serials = [normalize_serial(serial) for serial, _ in wanted]
        with self.readers() as s:
            records = store.certificates_by_serial(s, serials)
            ca_names = {ca.id: ca.name for ca in store.list_cas(s)}
        windows: dict[tuple[str, str, int], None] = {}
        out: list[Reissue | CAError] = []
        for serial, (_, changes) in zip(serials, wanted, strict=True):
            try:
                old = records.get(serial)
                if old is None:
                    raise NotFound(f"no certificate with serial {serial}")
                out.append(self._build_reissue(
                    old, ca_names[old.ca_id], changes, None, old.official_key_id,
                    validity_days=validity_days, actor=actor, requested_by=requested_by,
                    now=now, windows=windows))
            except CAError as exc:
                out.append(exc)
        return out

    def _build_reissue(
        self,
        old: CertificateRecord,
        ca_name: str,
        changes: Mapping[str, str | None] | None,
        public_key: CertificatePublicKeyTypes | None,
        official_key_id: int | None,
        *,
        validity_days: int | None,
        actor: str,
        requested_by: str | None,
        now: datetime,
        windows: dict[tuple[str, str, int], None],
    ) -> Reissue:
        """The checks of `prepare_reissue` on a loaded certificate record (no database)."""
        serial = old.serial
        unknown = set(changes or {}) - set(CHANGEABLE_FIELDS)
        if unknown:
            raise InvalidRequest(f"unknown field(s) {', '.join(sorted(unknown))}; "
                                 f"changeable: {', '.join(CHANGEABLE_FIELDS)}")
        if old.official_id is None:
            raise InvalidRequest(f"certificate {serial} is not an official's certificate")
        if old.status not in ("valid", "hold") or old.cert_der is None:
            raise StateConflict(f"certificate {serial} is {old.status} and cannot be "
                                "renewed")
        if old.not_after <= now:
            raise StateConflict(f"certificate {serial} expired on "
                                f"{old.not_after:%Y-%m-%d}; it cannot be renewed")
        official_id, old_id, old_profile = old.official_id, old.id, old.profile
        old_cert = x509.load_der_x509_certificate(old.cert_der)
        old_content = _content_of(old_cert)
        content = dict(old_content)
        for name, value in (changes or {}).items():
            content[name] = value.strip() if isinstance(value, str) and value.strip() else None
        profile = self.profiles.get(old_profile)
        subject = official_subject(profile, content)
        validity_days = validity_days or self.official_validity_days  # as add_official
        if not content.get("email"):
            raise InvalidRequest("an official's certificate needs an e-mail address")
        request = ApprovedRequest(
            profile=profile, subject=subject,
            public_key=public_key or old_cert.public_key(),  # type: ignore[arg-type]
            emails=(str(content["email"]),), validity_days=validity_days,
            kind="change" if content != old_content else "renewal",
            requested_by=requested_by or actor, approved_by=actor, official_id=official_id,
            official_key_id=official_key_id, predecessor_id=old_id,
        )
        check_request(request)
        # The issuing CA must still be active, and in force long enough (checked once per
        # CA, profile and validity in a bulk run).
        window_key = (ca_name, profile.name, validity_days)
        if window_key not in windows:
            validity_window(profile, validity_days, now, self.backdate,
                            self.issuer_preview(ca_name))
            windows[window_key] = None
        old_org = old_cert.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        same_org = bool(old_org) and str(old_org[0].value) == content.get("organization")
        return Reissue(ca_name=ca_name, serial=serial, request=request, content=content,
                       same_organization=same_org)

    def reissue(
        self,
        serial: str,
        changes: Mapping[str, str | None] | None = None,
        *,
        key_id: int | None = None,
        validity_days: int | None = None,
        actor: str = "operator",
        requested_by: str | None = None,
    ) -> IssuedCertificate:
        """A new certificate for an official's certificate `serial`, with `changes` to its
        content (name, title, organization, unit, locality, email) and the same key, or the
        official's key record `key_id`; linked to the old one. Everything is checked
        (`prepare_reissue`) before anything is issued. The old certificate is left as it is:
        the caller revokes it (superseded / affiliationChanged) once this one is issued."""
        plan = self.prepare_reissue(serial, changes, key_id=key_id,
                                    validity_days=validity_days, actor=actor,
                                    requested_by=requested_by)
        return self.issue(plan.ca_name, plan.request, actor=actor)

    def new_official_key(self, official_id: int, pin: str, *, actor: str = "official") -> (
        tuple[str, bytes, CertificatePublicKeyTypes]
    ):
        """A new key for the official, made in the HSM and returned wrapped (spec, blob,
        public key), after their PIN opened the current key (wrong PINs count as for
        signing): only the official can give their key a successor. Store it with
        `store_official_key`."""
        from hsm import KeySpec

        old_key, _ = self._open_official_key(official_id, pin, actor)
        spec = old_key.key_spec
        blob, public_key = self.token.generate_wrapped_key_pair(
            KeySpec.parse(spec), self.wrapping_key_label)
        return spec, blob, public_key

    def store_official_key(
        self, s: Session, official_id: int, spec: str, blob: bytes,
        public_key: CertificatePublicKeyTypes, pin: str, *, status: str = "pending",
    ) -> OfficialKeyRecord:
        """Record a key from `new_official_key`, sealed under `pin`, in `s`'s transaction; a
        `pending` key is never used to sign (only the active one is)."""
        key_rec = self._new_key_record(s, official_id, spec, public_key, blob, pin,
                                       self.clock())
        key_rec.status = status
        return key_rec

    def revoke(
        self,
        serial: str,
        reason: str | x509.ReasonFlags,
        *,
        invalidity_date: datetime | None = None,
        actor: str = "operator",
    ) -> CertificateRecord:
        flag = reason if isinstance(reason, x509.ReasonFlags) else parse_reason(reason)
        if flag is x509.ReasonFlags.certificate_hold:
            return self.hold(serial, actor=actor)
        if flag is x509.ReasonFlags.remove_from_crl:
            raise InvalidRequest("removeFromCRL is not a revocation reason; use `release`")
        serial = normalize_serial(serial)
        now = self.clock()
        if invalidity_date is not None and invalidity_date > now:
            raise InvalidRequest("the invalidity date cannot be in the future")
        with self.sessions.begin() as s:
            rec = store.get_certificate(s, serial, for_update=True)
            if rec.status == "revoked":
                raise StateConflict(
                    f"certificate {serial} is already revoked "
                    f"({rec.revocation_reason}, {rec.revoked_at:%Y-%m-%d %H:%M:%S} UTC)"
                )
            if rec.status == "failed":
                raise StateConflict(f"certificate {serial} was never signed")
            rec.status = "revoked"
            rec.status_changed_at = self._status_change_time(s, rec.ca_id)
            # A certificate on hold keeps its original revocation time (RFC 5280 5.3.2 / X.509).
            if rec.revoked_at is None or rec.revocation_reason != "certificateHold":
                rec.revoked_at = now
            rec.revocation_reason = flag.value
            rec.invalidity_date = invalidity_date
            audit.record(s, actor=actor, action="certificate.revoke", obj=f"cert:{serial}",
                         details={"reason": flag.value}, clock=self.clock)
            store.ocsp_certificate_changed(s, rec.ca_id, serial, self.clock())  # OCSP
            return rec

    def revoke_many(
        self,
        revocations: Sequence[tuple[str, str | x509.ReasonFlags]],
        *,
        actor: str = "operator",
        session: Session | None = None,
        skip_revoked: bool = False,
    ) -> list[str]:
        """Revoke several certificates (serial, reason) in one transaction -- `session`'s,
        else a new one: what `revoke` does for each (audit entry, OCSP change feed, the CA
        row locked before the status-change time is read), with one lock per CA and bulk
        statements. A certificate already revoked is a StateConflict, or is left out with
        `skip_revoked`. Returns the serials revoked now."""
        flags: list[tuple[str, x509.ReasonFlags]] = []
        for serial, reason in revocations:
            flag = reason if isinstance(reason, x509.ReasonFlags) else parse_reason(reason)
            if flag in (x509.ReasonFlags.certificate_hold, x509.ReasonFlags.remove_from_crl):
                raise InvalidRequest(f"{flag.value} is not a reason for a bulk revocation")
            flags.append((normalize_serial(serial), flag))
        if not flags:
            return []
        if session is None:
            with self.sessions.begin() as s:
                return self.revoke_many(flags, actor=actor, session=s,
                                        skip_revoked=skip_revoked)
        s = session
        now = self.clock()
        records = store.certificates_by_serial(s, [serial for serial, _ in flags],
                                               for_update=True)
        change_times: dict[int, datetime] = {}
        done: list[str] = []
        entries = []
        changed: list[tuple[int, str]] = []
        for serial, flag in flags:
            rec = records.get(serial)
            if rec is None:
                raise NotFound(f"no certificate with serial {serial}")
            if rec.status == "revoked":
                if skip_revoked:
                    continue
                raise StateConflict(f"certificate {serial} is already revoked "
                                    f"({rec.revocation_reason}, "
                                    f"{rec.revoked_at:%Y-%m-%d %H:%M:%S} UTC)")
            if rec.status == "failed":
                raise StateConflict(f"certificate {serial} was never signed")
            if rec.ca_id not in change_times:
                change_times[rec.ca_id] = self._status_change_time(s, rec.ca_id)
            rec.status = "revoked"
            rec.status_changed_at = change_times[rec.ca_id]
            if rec.revoked_at is None or rec.revocation_reason != "certificateHold":
                rec.revoked_at = now
            rec.revocation_reason = flag.value
            rec.invalidity_date = None
            entries.append(audit.entry(at=self.clock(), actor=actor,
                                       action="certificate.revoke", obj=f"cert:{serial}",
                                       details={"reason": flag.value}))
            changed.append((rec.ca_id, serial))
            done.append(serial)
        s.flush()
        audit.append(s, entries)
        store.ocsp_certificates_changed(s, changed, self.clock())  # OCSP
        return done

    def _status_change_time(self, s: Session, ca_id: int) -> datetime:
        """Lock the CA row, then read the clock: a CRL made under the same lock either sees
        this change or has an earlier thisUpdate, so no change falls between two CRLs."""
        store.lock_ca(s, ca_id)
        return self.clock()

    def hold(self, serial: str, *, actor: str = "operator") -> CertificateRecord:
        serial = normalize_serial(serial)
        with self.sessions.begin() as s:
            rec = store.get_certificate(s, serial, for_update=True)
            if rec.status != "valid":
                raise StateConflict(
                    f"certificate {serial} is {rec.status}; only a valid certificate can be held"
                )
            rec.status = "hold"
            rec.revoked_at = rec.status_changed_at = self._status_change_time(s, rec.ca_id)
            rec.revocation_reason = x509.ReasonFlags.certificate_hold.value
            audit.record(s, actor=actor, action="certificate.hold", obj=f"cert:{serial}",
                         clock=self.clock)
            store.ocsp_certificate_changed(s, rec.ca_id, serial, self.clock())  # OCSP
            return rec

    def release(self, serial: str, *, actor: str = "operator") -> CertificateRecord:
        serial = normalize_serial(serial)
        with self.sessions.begin() as s:
            rec = store.get_certificate(s, serial, for_update=True)
            if rec.status != "hold":
                raise StateConflict(f"certificate {serial} is {rec.status}, not on hold")
            rec.status = "valid"
            rec.revoked_at = None
            rec.revocation_reason = None
            rec.status_changed_at = self._status_change_time(s, rec.ca_id)
            audit.record(s, actor=actor, action="certificate.release", obj=f"cert:{serial}",
                         clock=self.clock)
            store.ocsp_certificate_changed(s, rec.ca_id, serial, self.clock())  # OCSP
            return rec

    def certificate(self, serial: str) -> CertificateRecord:
        with self.readers() as s:
            return store.get_certificate(s, normalize_serial(serial))


@dataclass
class _Chunk:
    """Part of a batch on its way through reserve -> sign -> store."""

    issuer: Issuer
    prepared: Sequence[_Prepared]
    serials: list[int]
    builders: list[x509.CertificateBuilder]
    lint_ders: list[bytes | None]
    signing: Future[tuple[list[x509.Certificate], BaseException | None]] | None = None


def _done(value: Any) -> Future[Any]:
    future: Future[Any] = Future()
    future.set_result(value)
    return future


@dataclass
class _Prepared:
    """An approved request checked and placed in time, ready to be reserved and signed."""

    request: ApprovedRequest
    key_spec: str
    not_before: datetime
    not_after: datetime
    subject_text: str

    def reservation(self, ca_id: int, serial: str, lint_der: bytes | None, now: datetime) -> (
        store.Reservation
    ):
        r = self.request
        org = r.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
        return store.Reservation(
            serial=serial, ca_id=ca_id, kind=r.kind, profile=r.profile.name,
            subject=self.subject_text, organization=str(org[0].value) if org else None,
            csr_der=r.csr_der,
            public_key_der=r.public_key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
            spki_sha256=spki_sha256(r.public_key), key_spec=self.key_spec,
            requested_by=r.requested_by, approved_by=r.approved_by,
            official_id=r.official_id, official_key_id=r.official_key_id,
            predecessor_id=r.predecessor_id, not_before=self.not_before,
            not_after=self.not_after, lint_der=lint_der, created_at=now,
        )


_OID = {
    "CN": x509.NameOID.COMMON_NAME,
    "T": x509.NameOID.TITLE,
    "O": x509.NameOID.ORGANIZATION_NAME,
    "OU": x509.NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": x509.NameOID.LOCALITY_NAME,
    "ST": x509.NameOID.STATE_OR_PROVINCE_NAME,
    "C": x509.NameOID.COUNTRY_NAME,
}


# The content of an official's certificate, as people edit it: field -> subject attribute.
CONTENT_FIELDS: dict[str, str] = {"name": "CN", "title": "T", "organization": "O", "unit": "OU",
                                  "locality": "L", "province": "ST", "email": ""}
# What a request may change (the province follows the locality's certificate as it was).
CHANGEABLE_FIELDS = ("name", "title", "organization", "unit", "locality", "email")


@dataclass(frozen=True)
class Reissue:
    """A checked reissue, ready for `Authority.issue`: the CA, the old serial, the request, the
    new content, and whether the organization stays (superseded) or not (affiliationChanged)."""

    ca_name: str
    serial: str
    request: ApprovedRequest
    content: dict[str, str | None]
    same_organization: bool

    @property
    def revocation_reason(self) -> x509.ReasonFlags:
        return reissue_revocation_reason(self.same_organization)


def reissue_revocation_reason(same_organization: bool) -> x509.ReasonFlags:
    """Why a reissued certificate's predecessor is revoked: superseded while the organization
    stays, affiliationChanged when it changes."""
    return (x509.ReasonFlags.superseded if same_organization
            else x509.ReasonFlags.affiliation_changed)


def _content_of(cert: x509.Certificate) -> dict[str, str | None]:
    content: dict[str, str | None] = {}
    for field_name, short in CONTENT_FIELDS.items():
        if not short:
            continue
        values = cert.subject.get_attributes_for_oid(_OID[short])
        content[field_name] = str(values[0].value) if values else None
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        emails = san.get_values_for_type(x509.RFC822Name)
    except x509.ExtensionNotFound:
        emails = []
    content["email"] = emails[0] if emails else None
    return content


def certificate_content(cert: x509.Certificate) -> dict[str, str | None]:
    """The content of an official's certificate as people edit it (CONTENT_FIELDS)."""
    return _content_of(cert)


def official_subject(profile: Any, content: Mapping[str, str | None]) -> x509.Name:
    """An official's subject from content fields, checked by the profile (as add_official)."""
    attributes = []
    for field_name, short in CONTENT_FIELDS.items():
        value = content.get(field_name)
        if short and value:
            try:
                attributes.append(x509.NameAttribute(_OID[short], value))
            except ValueError as exc:
                raise SubjectRejected(f"{field_name}: {exc}") from None
    attributes.append(x509.NameAttribute(_OID["C"], "VN"))
    return profile.build_subject(x509.Name(attributes))  # type: ignore[no-any-return]


def _seal_aad(official_id: int, key_id: int) -> bytes:
    # Binds a sealed key to its row: swapping blobs between officials fails to open.
    return f"kyso-official-key:{official_id}:{key_id}".encode()


class _PublicOnly:
    """Stands in for a CA key in drafts: knows its public half, refuses to sign."""

    def __init__(self, public: Any) -> None:
        self._public = public

    def public_key(self) -> Any:
        return self._public

    def sign(self, *args: Any, **kwargs: Any) -> bytes:
        raise StateConflict("this CA key is not available here (drafts only)")


def _probe_key(spec: str) -> CertificatePublicKeyTypes:
    """A public key of the given spec, to validate a request before the HSM makes the real one."""
    return throwaway_key(spec).public_key()  # type: ignore[return-value]


__all__ = ["CHANGEABLE_FIELDS", "CONTENT_FIELDS", "Authority", "IssuedCertificate", "NewOfficial",
           "Reissue", "certificate_content", "official_subject", "parse_reason"]
