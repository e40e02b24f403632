"""Officials' certificate requests: filed (renewal, change of content), decided by operators."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from sqlalchemy.exc import IntegrityError

from ca import audit, lifecycle, store
from ca.authority import (
    CHANGEABLE_FIELDS,
    Authority,
    IssuedCertificate,
    Reissue,
    reissue_revocation_reason,
)
from ca.errors import (
    ApprovalUnderWay,
    CAError,
    InvalidRequest,
    NotFound,
    RequestDecided,
    RequestPending,
    StateConflict,
)
from ca.issuance import normalize_serial, spki_sha256
from ca.models import OfficialRecord, OfficialRequestRecord
from ca.profiles import format_subject

log = logging.getLogger("kyso.requests")

KINDS = ("renewal", "change", "new")
KEY_CHOICES = ("same", "new")
FILED_VIA = ("portal", "operator", "api")
STATUSES = ("pending", "issuing", "approved", "rejected", "cancelled")
MAX_REASON = 500
MAX_FIELD = 254  # the longest content value (an e-mail address); the profile limits the rest
# An approval claims its request (`issuing`, decided_at = when) while the certificate is made,
# which takes well under a second. One still `issuing` after this long was interrupted (its
# process died): approving it again resumes it.
STALE_CLAIM = timedelta(minutes=10)


@dataclass(frozen=True)
class RequestInfo:
    """A request as callers see it (no ORM object outside a transaction)."""

    id: int
    kind: str
    official_id: int
    serial: str | None
    content: dict[str, str | None]
    key_choice: str
    status: str
    filed_via: str
    requested_by: str
    requested_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    new_serial: str | None

    @property
    def pending(self) -> bool:
        return self.status == "pending"

    def interrupted(self, now: datetime) -> bool:
        """An approval that started and never finished: approving again resumes it."""
        return self.status == "issuing" and (
            self.decided_at is None or now - self.decided_at >= STALE_CLAIM)

    def as_json(self) -> dict[str, Any]:
        """The request for the JSON API (no internal key ids, no operator names)."""
        return {
            "id": self.id, "kind": self.kind, "status": self.status, "serial": self.serial,
            "content": dict(self.content), "key": self.key_choice, "filed_via": self.filed_via,
            "requested_at": self.requested_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "reason": self.reason, "new_serial": self.new_serial,
        }


def _info(rec: OfficialRequestRecord) -> RequestInfo:
    return RequestInfo(
        id=rec.id, kind=rec.kind, official_id=rec.official_id, serial=rec.serial,
        content=json.loads(rec.content), key_choice=rec.key_choice, status=rec.status,
        filed_via=rec.filed_via, requested_by=rec.requested_by, requested_at=rec.requested_at,
        decided_by=rec.decided_by, decided_at=rec.decided_at, reason=rec.reason,
        new_serial=rec.new_serial)


def _obj(request_id: int) -> str:
    return f"request:{request_id}"


# The official's mail says why the old certificate goes (the RFC 5280 name in brackets).
REVOCATION_TEXT = {"superseded": "được thay thế bằng chứng thư mới (superseded)",
                   "affiliationChanged": "thay đổi cơ quan, đơn vị công tác (affiliationChanged)"}


def _portal_url(authority: Authority) -> str:
    return f"{authority.urls.base_url.rstrip('/')}/portal"


def _queue_mail(official: OfficialRecord, queue: Callable[[], object]) -> None:
    """Queue an official's notice in the caller's transaction. An address the outbox
    refuses is logged, never a reason to undo the decision (checked before any SQL, so the
    transaction stays usable)."""
    try:
        queue()
    except InvalidRequest as exc:
        log.warning("no mail for official %s: %s", official.id, exc.message)


def _refused(authority: Authority, actor: str, action: str, obj: str, exc: CAError,
             request_id: str | None) -> None:
    """Audit a refusal in its own transaction (the refused act itself changed nothing)."""
    with authority.sessions.begin() as s:
        audit.record(s, actor=actor, action=action, obj=obj, outcome="refused",
                     details={"code": exc.code, "message": exc.message[:500]},
                     request_id=request_id, clock=authority.clock)


# -- filing ---------------------------------------------------------------------------------

def file_renewal(
    authority: Authority,
    serial: str,
    *,
    actor: str,
    official_id: int | None = None,
    key: str = "same",
    pin: str | None = None,
    filed_via: str = "portal",
    request_id: str | None = None,
) -> RequestInfo:
    """Ask for a new certificate with the same content as `serial` (the same key, or a new one
    made now and sealed under the official's `pin`). `official_id`: the filer's own official
    (the certificate must be theirs, NotFound otherwise); None when an operator files."""
    return _file(authority, "renewal", serial, None, actor=actor, official_id=official_id,
                 key=key, pin=pin, filed_via=filed_via, request_id=request_id)


def file_change(
    authority: Authority,
    serial: str,
    changes: Mapping[str, str | None],
    *,
    actor: str,
    official_id: int | None = None,
    key: str = "same",
    pin: str | None = None,
    filed_via: str = "portal",
    request_id: str | None = None,
) -> RequestInfo:
    """Ask for a new certificate replacing `serial` with `changes` to its content (name,
    title, organization, unit, locality, email; an empty value removes an optional one)."""
    return _file(authority, "change", serial, changes, actor=actor, official_id=official_id,
                 key=key, pin=pin, filed_via=filed_via, request_id=request_id)


def _check_changes(changes: Mapping[str, Any] | None) -> dict[str, str | None]:
    if changes is None:
        return {}
    if not isinstance(changes, Mapping):
        raise InvalidRequest("changes must be an object of field: value")
    out: dict[str, str | None] = {}
    for name, value in changes.items():
        if name not in CHANGEABLE_FIELDS:
            raise InvalidRequest(f"{name!r} cannot be changed; changeable: "
                                 f"{', '.join(CHANGEABLE_FIELDS)}")
        if value is not None and not isinstance(value, str):
            raise InvalidRequest(f"{name}: a text value is expected")
        if value is not None and len(value) > MAX_FIELD:
            raise InvalidRequest(f"{name} is longer than {MAX_FIELD} characters")
        if value is not None and not value.isprintable():
            raise InvalidRequest(f"{name} contains control characters")
        out[name] = value
    return out


def _file(
    authority: Authority,
    kind: str,
    serial: str,
    changes: Mapping[str, str | None] | None,
    *,
    actor: str,
    official_id: int | None,
    key: str,
    pin: str | None,
    filed_via: str,
    request_id: str | None,
) -> RequestInfo:
    if key not in KEY_CHOICES:
        raise InvalidRequest(f"key must be one of {', '.join(KEY_CHOICES)}")
    if filed_via not in FILED_VIA:
        raise InvalidRequest(f"filed_via must be one of {', '.join(FILED_VIA)}")
    serial = normalize_serial(serial)
    with authority.readers() as s:
        cert = store.find_certificate(s, serial)
        if cert is None or cert.official_id is None or (
                official_id is not None and cert.official_id != official_id):
            # Someone else's certificate looks like no certificate at all: no probing.
            raise NotFound(f"no official's certificate with serial {serial}")
        owner = cert.official_id
    try:
        wanted = _check_changes(changes)
        if kind == "change" and not wanted:
            raise InvalidRequest("a change of content needs at least one changed field")
        with authority.readers() as s:
            if store.open_request_for(s, serial) is not None:
                raise RequestPending(f"certificate {serial} already has a pending request")
        # The whole new certificate is checked now (state, subject, e-mail, validity), so the
        # official learns at once what the operator would have to refuse.
        plan = authority.prepare_reissue(serial, wanted, actor=actor)
        if kind == "change" and plan.request.kind == "renewal":
            raise InvalidRequest("the requested content is the certificate's current "
                                 "content; ask for a renewal instead")
        if key == "new" and not pin:
            raise InvalidRequest("a new key is sealed under the official's signing PIN: "
                                 "give the PIN")
    except CAError as exc:
        _refused(authority, actor, "request.file", f"cert:{serial}", exc, request_id)
        raise
    new_key = authority.new_official_key(owner, pin, actor=actor) if key == "new" else None
    try:
        with authority.sessions.begin() as s:
            if store.open_request_for(s, serial) is not None:
                raise RequestPending(f"certificate {serial} already has a pending request")
            key_id = None
            if new_key is not None:
                assert pin is not None
                key_id = authority.store_official_key(s, owner, *new_key, pin).id
            rec = OfficialRequestRecord(
                kind=kind, official_id=owner, serial=serial,
                content=json.dumps(plan.content, ensure_ascii=False, sort_keys=True),
                key_choice=key, key_id=key_id, status="pending", filed_via=filed_via,
                requested_by=actor, requested_at=authority.clock())
            s.add(rec)
            s.flush()
            audit.record(s, actor=actor, action="request.file", obj=_obj(rec.id),
                         details={"kind": kind, "serial": serial, "official_id": owner,
                                  "key": key, "filed_via": filed_via, "changes": wanted},
                         request_id=request_id, clock=authority.clock)
            return _info(rec)
    except IntegrityError:  # another request for the same certificate won the race
        raise RequestPending(f"certificate {serial} already has a pending request") from None


# -- reading --------------------------------------------------------------------------------

def get(authority: Authority, request_id: int, *, official_id: int | None = None) -> (
    RequestInfo
):
    """One request; with `official_id`, only that official's (NotFound otherwise)."""
    with authority.readers() as s:
        rec = store.get_official_request(s, request_id)
        if official_id is not None and rec.official_id != official_id:
            raise NotFound(f"no certificate request {request_id}")
        return _info(rec)


def list_requests(
    authority: Authority,
    *,
    official_id: int | None = None,
    statuses: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[RequestInfo]:
    """Requests, newest first."""
    with authority.readers() as s:
        return [_info(r) for r in store.list_official_requests(
            s, official_id=official_id, statuses=statuses, limit=limit)]


# -- deciding -------------------------------------------------------------------------------

def _decidable(rec: OfficialRequestRecord) -> None:
    if rec.status != "pending":
        raise RequestDecided(f"request {rec.id} is {rec.status}, not pending")


def approve(authority: Authority, request_id: int, *, actor: str,
            audit_request_id: str | None = None) -> RequestInfo:
    """Issue the requested certificate, then -- only once it is issued -- revoke the old one
    (superseded; affiliationChanged when the organization changes), and record the new
    serial. The new content is checked by the profile before anything is issued; a refusal
    leaves the request pending.

    An approval interrupted by a crash (`RequestInfo.interrupted`) is resumed by approving
    again: the certificate it issued is adopted (never a second one), a reservation the HSM
    never signed is marked failed and the certificate issued now; an approval recorded whose
    old certificate was not revoked yet gets that revocation."""
    now = authority.clock()
    interrupted_since: datetime | None = None
    with authority.sessions.begin() as s:
        rec = store.get_official_request(s, request_id, for_update=True)
        reason: x509.ReasonFlags | None = None
        if rec.status == "approved" and rec.serial is not None and rec.new_serial is not None:
            old = store.get_certificate(s, rec.serial)
            if old.status in ("valid", "hold"):
                reason = reissue_revocation_reason(
                    store.get_certificate(s, rec.new_serial).organization == old.organization)
        elif rec.status == "issuing":
            if not _info(rec).interrupted(now):
                assert rec.decided_at is not None
                raise ApprovalUnderWay(
                    f"request {rec.id} is being approved (since {rec.decided_at:%H:%M:%S} UTC); "
                    "if that approval was interrupted, approve it again from "
                    f"{rec.decided_at + STALE_CLAIM:%H:%M} UTC")
            interrupted_since = rec.decided_at or rec.requested_at
        else:
            _decidable(rec)
        if rec.status != "approved":
            if rec.kind == "new" or rec.serial is None:
                raise InvalidRequest("requests for a first certificate are not supported yet")
            rec.status = "issuing"  # claimed: a second approval now gets RequestDecided
            rec.decided_by, rec.decided_at = actor, now  # who claimed it, and since when
        serial, key_id, kind = rec.serial, rec.key_id, rec.kind
        official_id, requested_by, status = rec.official_id, rec.requested_by, rec.status
        content = json.loads(rec.content)
    if status == "approved":
        if reason is None:
            raise RequestDecided(f"request {request_id} is approved, not pending")
        _revoke_old(authority, serial, reason, actor)  # the step an interruption skipped
        return get(authority, request_id)
    changes = {k: content.get(k) for k in CHANGEABLE_FIELDS}
    try:
        plan = authority.prepare_reissue(serial, changes, key_id=key_id, actor=actor,
                                         requested_by=requested_by)
        issued = None
        if interrupted_since is not None:
            issued = _left_by_interruption(authority, plan, since=interrupted_since,
                                           actor=actor, now=now)
        if issued is None:
            issued = authority.issue(plan.ca_name, plan.request, actor=actor)
    except Exception as exc:
        with authority.sessions.begin() as s:
            rec = store.get_official_request(s, request_id, for_update=True)
            rec.status, rec.decided_by, rec.decided_at = "pending", None, None
            error = exc if isinstance(exc, CAError) else None
            audit.record(s, actor=actor, action="request.approve", obj=_obj(request_id),
                         outcome="failure",
                         details={"code": error.code if error else type(exc).__name__,
                                  "message": error.message[:500] if error else ""},
                         request_id=audit_request_id, clock=authority.clock)
        raise
    reason = plan.revocation_reason
    with authority.sessions.begin() as s:
        rec = store.get_official_request(s, request_id, for_update=True)
        rec.status, rec.new_serial = "approved", issued.serial
        rec.decided_by, rec.decided_at = actor, authority.clock()
        if key_id is not None:  # the new key signs from now on, with its certificate
            store.activate_official_key(s, official_id, key_id)
        official = store.get_official(s, official_id, for_update=kind == "change")
        if kind == "change":
            official.name = str(plan.content["name"])
            official.title = plan.content.get("title")
            official.organization = str(plan.content["organization"])
            official.unit = plan.content.get("unit")
            official.locality = plan.content.get("locality")
            official.email = str(plan.content["email"])
        why = (f"{'Gia hạn' if kind == 'renewal' else 'Thay đổi nội dung'} theo yêu cầu số "
               f"{request_id}; chứng thư cũ bị thu hồi, lý do: "
               f"{REVOCATION_TEXT.get(reason.value, reason.value)}")
        # In the transaction that records the approval: the notice exists iff the decision.
        _queue_mail(official, lambda: lifecycle.notify_reissued(
            s, to=official.email, official_name=official.name, new_serial=issued.serial,
            not_after=issued.not_after, subject_dn=issued.subject, old_serial=serial,
            reason=why, ref=_obj(request_id), portal_url=_portal_url(authority),
            actor=actor))
        audit.record(s, actor=actor, action="request.approve", obj=_obj(request_id),
                     details={"serial": serial, "new_serial": issued.serial,
                              "revocation_reason": reason.value, "key": rec.key_choice},
                     request_id=audit_request_id, clock=authority.clock)
    _revoke_old(authority, serial, reason, actor)
    return get(authority, request_id)


def _revoke_old(authority: Authority, serial: str, reason: x509.ReasonFlags,
                actor: str) -> None:
    try:
        authority.revoke(serial, reason, actor=actor)
    except StateConflict:
        pass  # revoked meanwhile by someone else: the old certificate is out of use anyway


def _left_by_interruption(authority: Authority, plan: Reissue, *, since: datetime,
                          actor: str, now: datetime) -> IssuedCertificate | None:
    """What an interrupted approval of `plan` left since `since`: the certificate it issued
    (same subject and key, renewing the same one), or None once the reservations the HSM
    never signed are marked failed."""
    subject = format_subject(plan.request.subject)
    spki = spki_sha256(plan.request.public_key)
    with authority.readers() as s:
        old = store.get_certificate(s, plan.serial)
        ours = [c for c in store.certificate_successors(s, old.id)
                if c.created_at >= since and c.subject == subject and c.spki_sha256 == spki]
        ca_name = store.get_ca_by_id(s, old.ca_id).name
    # In use (a certificate someone revoked meanwhile is not adopted: a new one is issued).
    signed = [c for c in ours if c.status in ("valid", "hold") and c.cert_der is not None]
    if signed:
        c = signed[-1]
        return IssuedCertificate(
            serial=c.serial, ca_name=ca_name, profile=c.profile, subject=c.subject,
            not_before=c.not_before, not_after=c.not_after,
            certificate=x509.load_der_x509_certificate(bytes(c.cert_der)))
    # Made by the dead approval: the claim (held by whoever resumes it now) kept any other
    # approval of this request away, and nothing else reissues to the same subject and key.
    reserved = [c for c in ours if c.status == "pending"]
    if reserved:
        with authority.engine.begin() as conn:
            store.fail_certificates(conn, [c.serial for c in reserved], actor=actor, now=now,
                                    error="interrupted approval (never signed)")
    return None


def _close(authority: Authority, request_id: int, status: str, *, actor: str,
           action: str, reason: str | None, official_id: int | None,
           audit_request_id: str | None) -> RequestInfo:
    with authority.sessions.begin() as s:
        rec = store.get_official_request(s, request_id, for_update=True)
        if official_id is not None and rec.official_id != official_id:
            raise NotFound(f"no certificate request {request_id}")
        _decidable(rec)
        rec.status, rec.reason = status, reason
        rec.decided_by, rec.decided_at = actor, authority.clock()
        if rec.key_id is not None:  # the key made for it is never used
            store.get_official_key(s, rec.key_id).status = "retired"
        if status == "rejected" and reason:
            official = store.get_official(s, rec.official_id)
            _queue_mail(official, lambda: lifecycle.notify_rejected(
                s, to=official.email, official_name=official.name, request_id=request_id,
                kind=rec.kind, serial=rec.serial, reason=reason,
                portal_url=_portal_url(authority), actor=actor))
        audit.record(s, actor=actor, action=action, obj=_obj(request_id),
                     details={"serial": rec.serial, "reason": reason},
                     request_id=audit_request_id, clock=authority.clock)
        return _info(rec)


def reject(authority: Authority, request_id: int, reason: str, *, actor: str,
           audit_request_id: str | None = None) -> RequestInfo:
    """Refuse a pending request, saying why (required); a new key made for it retires."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidRequest("give the reason for the rejection")
    if len(reason) > MAX_REASON:
        raise InvalidRequest(f"the reason is longer than {MAX_REASON} characters")
    return _close(authority, request_id, "rejected", actor=actor, action="request.reject",
                  reason=reason, official_id=None, audit_request_id=audit_request_id)


def cancel(authority: Authority, request_id: int, *, official_id: int, actor: str,
           audit_request_id: str | None = None) -> RequestInfo:
    """The official withdraws their own pending request; a new key made for it retires."""
    return _close(authority, request_id, "cancelled", actor=actor, action="request.cancel",
                  reason=None, official_id=official_id, audit_request_id=audit_request_id)


__all__ = ["FILED_VIA", "KEY_CHOICES", "KINDS", "STATUSES", "RequestInfo", "approve",
           "cancel", "file_change", "file_renewal", "get", "list_requests", "reject"]
