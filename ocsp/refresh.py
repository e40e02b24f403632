"""Delegated responders (key `ocsp-<CA>` in the HSM, short-lived certificate renewed before
expiry) and pre-signing: everything `kyso ocsp refresh` does, also used on demand."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from ca import audit, store
from ca.issuance import ApprovedRequest, spki_sha256
from ca.models import CARecord
from ocsp.protocol import GOOD, IssuerHashes, Signer, Status, cert_id_for, sign_response
from ocsp.protocol import single_response as make_single

log = logging.getLogger("kyso.ocsp")

ACTOR = "ocsp-responder"
PAGE = 500


@dataclass(frozen=True)
class Policy:
    """The validated [ocsp] settings, as the responder uses them."""

    response_validity: timedelta = timedelta(days=1)
    refresh_margin: timedelta = timedelta(hours=12)
    unknown_validity: timedelta = timedelta(minutes=5)
    responder_validity_days: int = 7
    responder_renew: timedelta = timedelta(days=2)
    nonce_echo: bool = True
    max_request_bytes: int = 8192
    max_request_certs: int = 16
    change_poll_seconds: float = 1.0
    cache_entries: int = 200000
    http_max_age: int = 300  # seconds; 0: up to nextUpdate

    @classmethod
    def from_settings(cls, s: Any) -> Policy:
        """From kyso.settings.OcspSettings (duck-typed: ocsp does not import kyso)."""
        return cls(
            response_validity=timedelta(seconds=s.response_validity_seconds),
            refresh_margin=timedelta(seconds=s.refresh_margin_seconds),
            unknown_validity=timedelta(seconds=s.unknown_validity_seconds),
            responder_validity_days=s.responder_validity_days,
            responder_renew=timedelta(days=s.responder_renew_days),
            nonce_echo=s.nonce == "echo",
            max_request_bytes=s.max_request_bytes,
            max_request_certs=s.max_request_certs,
            change_poll_seconds=s.change_poll_ms / 1000.0,
            cache_entries=s.cache_entries,
            http_max_age=s.http_max_age_seconds,
        )


def responder_label(ca_name: str) -> str:
    """The HSM label of CA X's delegated responder key (also what ceremonies use)."""
    return f"ocsp-{ca_name}"


def cert_state(status: str, revoked_at: datetime | None, reason: str | None) -> str:
    """The status a response states, as one comparable string (stored beside the response)."""
    if status == "valid":
        return "good"
    if status in ("revoked", "hold") and revoked_at is not None:
        return f"revoked:{reason or 'unspecified'}:{int(revoked_at.timestamp())}"
    return "unknown"


def status_of(status: str, revoked_at: datetime | None, reason: str | None) -> Status:
    if status == "valid":
        return GOOD
    if status in ("revoked", "hold") and revoked_at is not None:
        return Status("revoked", revoked_at, reason)
    return Status("unknown")


class Responders:
    """Finds, creates and renews the delegated responder of each CA (one per process)."""

    def __init__(self, authority: Any, policy: Policy) -> None:
        self.authority = authority
        self.policy = policy
        self._lock = threading.Lock()

    def current(self, ca: CARecord, now: datetime) -> Signer | None:
        """The responder certificate in force whose key `ocsp-<CA>` is on the online token."""
        label = responder_label(ca.name)
        token = self.authority.token
        with self.authority.readers() as s:
            candidates = store.ocsp_responder_certificates(s, ca.id, now)
        if not candidates or not token.has_key(label):
            return None
        key = token.find_key(label=label)
        key_spki = spki_sha256(key.public_key())
        for serial, der, spki, not_after in candidates:
            if spki == key_spki:
                return Signer(ca.id, key, der, serial, not_after)
        return None

    def ensure(self, ca: CARecord, now: datetime, *, renew: bool = True,
               actor: str = ACTOR) -> Signer | None:
        """The CA's responder, made or renewed first when the CA is online: the key if missing,
        a new certificate (same key) when none is in force or it expires within
        responder_renew_days (with `renew`). An offline CA only gets one from a ceremony."""
        with self._lock:
            signer = self.current(ca, now)
            if not self.authority.is_online(ca):
                return signer
            due = signer is None or (
                renew and signer.not_after - now <= self.policy.responder_renew)
            if not due:
                return signer
            key = self._key(ca, actor)
            self._issue(ca, key, renewing=signer, actor=actor)
            return self.current(ca, now)

    def _key(self, ca: CARecord, actor: str) -> Any:
        from hsm import KeySpec

        label = responder_label(ca.name)
        token = self.authority.token
        if token.has_key(label):
            return token.find_key(label=label)
        spec = "rsa-2048" if ca.key_spec.startswith("rsa") else "ec-p256"
        # Audited before the key exists: if the entry cannot be written, no key is made.
        with self.authority.sessions.begin() as s:
            audit.record(s, actor=actor, action="ocsp.responder.key.create",
                         obj=f"ca:{ca.name}", details={"label": label, "spec": spec,
                                                       "token": str(token.label)})
        return token.generate_key_pair(KeySpec.parse(spec), label)

    def _issue(self, ca: CARecord, key: Any, *, renewing: Signer | None, actor: str) -> None:
        profile = self.authority.profiles.get("ocsp-responder")
        ca_cert = x509.load_der_x509_certificate(ca.cert_der)
        org = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        cn = ca_cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        subject = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME,
                               f"OCSP Responder {cn[0].value if cn else ca.name}"[:64]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME,
                               str(org[0].value) if org else "kyso"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
        ])
        request = ApprovedRequest(
            profile=profile, subject=profile.build_subject(subject),
            public_key=key.public_key(), validity_days=self.policy.responder_validity_days,
            kind="server-key", requested_by=actor, approved_by=actor)
        issued = self.authority.issue(ca.name, request, actor=actor)
        with self.authority.sessions.begin() as s:
            audit.record(s, actor=actor, action="ocsp.responder.certificate",
                         obj=f"ca:{ca.name}", details={
                             "serial": issued.serial, "label": responder_label(ca.name),
                             "renews": renewing.serial if renewing else None,
                             "not_after": issued.not_after.isoformat()})
        log.info("OCSP responder certificate %s issued for CA %s", issued.serial, ca.name)


@dataclass
class RefreshReport:
    """What one refresh did, per CA."""

    signed: dict[str, int] = field(default_factory=dict)
    responders: dict[str, str | None] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def presign(authority: Any, ca: CARecord, signer: Signer, policy: Policy, now: datetime,
            *, actor: str = ACTOR) -> int:
    """Sign what is missing, stale (status changed) or due (less than refresh_margin before
    nextUpdate): SHA-1 CertIDs for every issued certificate, other algorithms for those
    already asked about. One audit entry per CA and run, not one per response."""
    issuer = IssuerHashes.of(ca.cert_der)
    next_update = min(now + policy.response_validity, signer.not_after)
    due_before = now + policy.refresh_margin
    total = 0
    with authority.readers() as s:
        algorithms = ["sha1", *store.ocsp_extra_algorithms(s.connection(), ca.id)]
    for algorithm in algorithms:
        after = 0
        while True:
            with authority.readers() as s:
                page = store.ocsp_certificates_page(s.connection(), ca.id, algorithm, after,
                                                    PAGE)
            if not page:
                break
            after = page[-1].cert_id
            rows = []
            for c in page:
                state = cert_state(c.status, c.revoked_at, c.revocation_reason)
                if algorithm != "sha1" and c.stored_der is None:
                    continue  # other algorithms only once a client used them
                if (c.stored_der is not None and c.stored_state == state
                        and c.stored_next_update is not None
                        and c.stored_next_update > due_before):
                    continue
                rows.append(response_row(ca.id, c.serial, algorithm, state, signer, make_single(
                    cert_id_for(algorithm, issuer, int(c.serial, 16)),
                    status_of(c.status, c.revoked_at, c.revocation_reason), now, next_update),
                    now, next_update))
            if rows:
                with authority.engine.begin() as conn:
                    store.ocsp_store_responses(conn, rows)
                total += len(rows)
    if total:
        with authority.sessions.begin() as s:
            audit.record(s, actor=actor, action="ocsp.presign", obj=f"ca:{ca.name}",
                         details={"responses": total, "responder": signer.serial,
                                  "next_update": next_update.isoformat()})
    return total


def response_row(ca_id: int, serial: str, algorithm: str, state: str, signer: Signer,
                 single: Any, now: datetime, next_update: datetime) -> dict[str, Any]:
    return {"ca_id": ca_id, "serial": serial, "hash_algorithm": algorithm,
            "cert_state": state, "responder_serial": signer.serial, "this_update": now,
            "next_update": next_update, "der": sign_response(signer, [single], now),
            "created_at": now}


def refresh_all(authority: Any, policy: Policy, now: datetime, *, actor: str = ACTOR,
                responders: Responders | None = None) -> RefreshReport:
    """Renew responder certificates that are due, pre-sign what is due, prune the change
    feed (entries older than a response's validity can no longer matter)."""
    responders = responders or Responders(authority, policy)
    report = RefreshReport()
    with authority.readers() as s:
        cas = [ca for ca in store.list_cas(s) if ca.status == "active"]
    for ca in cas:
        signer = responders.ensure(ca, now, actor=actor)
        report.responders[ca.name] = signer.serial if signer else None
        if signer is None:
            report.skipped[ca.name] = ("offline CA without a responder certificate from a "
                                       "ceremony" if not authority.is_online(ca)
                                       else "no responder")
            continue
        report.signed[ca.name] = presign(authority, ca, signer, policy, now, actor=actor)
    with authority.engine.begin() as conn:
        store.ocsp_prune_changes(conn, now - policy.response_validity - timedelta(days=1))
    return report
