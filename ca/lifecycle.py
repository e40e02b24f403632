"""Certificate lifecycle: which certificates expire soon, the officials' expiry warnings (queued
in the mail outbox, each threshold once), and the renewal of the TSA's own certificate.

`daily` is the whole daily job minus what lives above `ca` (the OCSP responders are renewed by
ocsp/, handed in as a callable; mail is delivered by kyso/mailer.py): kyso/mailer.py
`run_daily` wires all of it for `kyso lifecycle daily` and the web workers.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509
from sqlalchemy.orm import Session

from ca import audit, outbox, store
from ca.errors import InvalidRequest
from ca.models import CertificateRecord, OfficialRecord

log = logging.getLogger("kyso.lifecycle")

VN = ZoneInfo("Asia/Ho_Chi_Minh")
ACTOR = "lifecycle"
SERVICE_PROFILES = ("ocsp-responder", "timestamping")
OFFICIAL_PROFILES = ("official-signing",)
EXPIRY_KIND = "expiry-warning"
REISSUE_KIND = "certificate-reissued"
REJECTED_KIND = "request-rejected"


# -- what expires -----------------------------------------------------------------------

@dataclass(frozen=True)
class ExpiringCertificate:
    """A valid certificate expiring soon, as lists and mails show it."""

    serial: str
    ca: str
    profile: str
    subject: str
    organization: str | None
    not_after: datetime
    days_left: int  # whole days left (0: less than a day)
    kind: str  # official | service | other
    official_id: int | None
    official_name: str | None
    email: str | None  # whom to warn: the official's address, else the certificate's SAN

    @property
    def not_after_vn(self) -> datetime:
        return self.not_after.astimezone(VN)

    def as_dict(self) -> dict[str, Any]:
        return {"serial": self.serial, "ca": self.ca, "profile": self.profile,
                "subject": self.subject, "organization": self.organization,
                "kind": self.kind, "not_after": self.not_after.isoformat(),
                "not_after_vn": self.not_after_vn.isoformat(), "days_left": self.days_left,
                "official_id": self.official_id, "official_name": self.official_name,
                "email": self.email}


def _kind(cert: CertificateRecord) -> str:
    if cert.official_id is not None or cert.profile in OFFICIAL_PROFILES:
        return "official"
    return "service" if cert.profile in SERVICE_PROFILES else "other"


def _san_email(cert: CertificateRecord) -> str | None:
    if cert.cert_der is None:
        return None
    try:
        san = x509.load_der_x509_certificate(cert.cert_der).extensions \
            .get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    emails = san.get_values_for_type(x509.RFC822Name)
    return emails[0] if emails else None


def _item(cert: CertificateRecord, official: OfficialRecord | None, ca_names: dict[int, str],
          now: datetime) -> ExpiringCertificate:
    kind = _kind(cert)
    email = official.email if official is not None else (
        _san_email(cert) if kind == "official" else None)
    return ExpiringCertificate(
        serial=cert.serial, ca=ca_names.get(cert.ca_id, "?"), profile=cert.profile,
        subject=cert.subject, organization=cert.organization, not_after=cert.not_after,
        days_left=max(0, (cert.not_after - now) // timedelta(days=1)), kind=kind,
        official_id=cert.official_id, official_name=official.name if official else None,
        email=email)


def expiring(session: Session, now: datetime, days: float, *,
             organization: str | None = None) -> list[ExpiringCertificate]:
    """Valid certificates (officials' and services'; CA certificates are not in this table)
    expiring within `days` of `now`, soonest first; superseded ones (already renewed) are
    left out."""
    if days < 0:
        raise ValueError("days must be 0 or more")
    ca_names = {ca.id: ca.name for ca in store.list_cas(session)}
    rows = store.expiring_certificates(session, now, now + timedelta(days=days),
                                       organization=organization)
    return [_item(cert, official, ca_names, now) for cert, official in rows]


NO_ORGANIZATION = "(không có tổ chức)"


def by_organization(items: Iterable[ExpiringCertificate]) -> dict[str, list[ExpiringCertificate]]:
    """Grouped by organization (name order; no organization last), each soonest first."""
    groups: dict[str, list[ExpiringCertificate]] = {}
    for item in sorted(items, key=lambda i: (i.not_after, i.serial)):
        groups.setdefault(item.organization or NO_ORGANIZATION, []).append(item)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0] == NO_ORGANIZATION, kv[0])))


def official_expiry_warnings(session: Session, official_id: int, now: datetime,
                             warn_days: Iterable[int]) -> list[ExpiringCertificate]:
    """For the portal's banner: the official's current certificates that expire within the
    largest warning threshold, soonest first (empty: nothing to warn about)."""
    within = max(warn_days, default=0)
    if within <= 0:
        return []
    return [i for i in expiring(session, now, within) if i.official_id == official_id]


# -- mail texts (Vietnamese, plain text) -------------------------------------------------

def _vn_time(at: datetime) -> str:
    return at.astimezone(VN).strftime("%H:%M ngày %d/%m/%Y")


def expiry_mail(item: ExpiringCertificate, portal_url: str) -> tuple[str, str]:
    """(subject, body) of the warning that `item` expires soon (Vietnamese, plain text)."""
    left = "dưới 1 ngày" if item.days_left < 1 else f"{item.days_left} ngày"
    subject = f"Chứng thư số của ông/bà sắp hết hạn (còn {left})"
    name = item.official_name or "ông/bà"
    body = (
        f"Kính gửi {name},\n\n"
        f"Chứng thư số của ông/bà sẽ hết hạn lúc {_vn_time(item.not_after)} (giờ Việt Nam), "
        f"còn {left}.\n\n"
        f"  Chủ thể:       {item.subject}\n"
        f"  Số hiệu:       {item.serial}\n"
        f"  Tổ chức:       {item.organization or '-'}\n"
        f"  CA phát hành:  {item.ca}\n\n"
        "Sau thời điểm này, ông/bà không thể ký số văn bản bằng chứng thư này. Đề nghị "
        "ông/bà gửi yêu cầu gia hạn trên Cổng ký số"
        f"{' (' + portal_url + ')' if portal_url else ''} hoặc liên hệ bộ phận quản trị "
        "chứng thư số của đơn vị.\n\n"
        "Thư này được gửi tự động từ hệ thống ký số kyso; vui lòng không trả lời thư này.\n"
    )
    return subject, body


def reissue_mail(*, official_name: str | None, new_serial: str, not_after: datetime,
                 subject_dn: str, old_serial: str | None = None, reason: str | None = None,
                 portal_url: str = "") -> tuple[str, str]:
    """(subject, body) telling an official that a new certificate was issued for them (a
    renewal, an approved request, a reorganization batch)."""
    name = official_name or "ông/bà"
    lines = [f"Kính gửi {name},", "",
             "Hệ thống ký số đã cấp cho ông/bà một chứng thư số mới.", "",
             f"  Chủ thể:       {subject_dn}",
             f"  Số hiệu mới:   {new_serial}",
             f"  Hiệu lực đến:  {_vn_time(not_after)} (giờ Việt Nam)"]
    if old_serial:
        lines.append(f"  Thay thế cho:  {old_serial}")
    if reason:
        lines.append(f"  Lý do:         {reason}")
    lines += ["", "Từ nay, các văn bản ông/bà ký số sẽ dùng chứng thư mới này."
              + (f" Chi tiết trên Cổng ký số: {portal_url}" if portal_url else ""), "",
              "Thư này được gửi tự động từ hệ thống ký số kyso; vui lòng không trả lời thư này.",
              ""]
    return "Chứng thư số mới đã được cấp cho ông/bà", "\n".join(lines)


def notify_reissued(session: Session, *, to: str, official_name: str | None, new_serial: str,
                    not_after: datetime, subject_dn: str, old_serial: str | None = None,
                    reason: str | None = None, ref: str | None = None,
                    portal_url: str = "", actor: str = "kyso") -> int | None:
    """Queue the standard "new certificate" mail in `session`'s transaction, once per new
    certificate (dedupe key `reissued:<serial>`). For ca/requests.py and the reorganization
    batches; `ref` e.g. `request:12` or `batch:3` (default `cert:<new serial>`)."""
    subject, body = reissue_mail(official_name=official_name, new_serial=new_serial,
                                 not_after=not_after, subject_dn=subject_dn,
                                 old_serial=old_serial, reason=reason, portal_url=portal_url)
    return outbox.enqueue(session, to=to, subject=subject, body=body, kind=REISSUE_KIND,
                          ref=ref or f"cert:{new_serial}", dedupe_key=f"reissued:{new_serial}",
                          actor=actor)


REQUEST_KIND_TEXT = {"renewal": "gia hạn chứng thư số",
                     "change": "thay đổi nội dung chứng thư số",
                     "new": "cấp chứng thư số"}


def rejection_mail(*, official_name: str | None, request_id: int, kind: str,
                   serial: str | None, reason: str, portal_url: str = "") -> tuple[str, str]:
    """(subject, body) telling an official that their certificate request was refused, and
    why (the operator's words)."""
    name = official_name or "ông/bà"
    what = REQUEST_KIND_TEXT.get(kind, "về chứng thư số")
    lines = [f"Kính gửi {name},", "",
             f"Yêu cầu {what} số {request_id} của ông/bà đã bị từ chối.", "",
             f"  Lý do từ chối: {reason}"]
    if serial:
        lines.append(f"  Chứng thư:     {serial}")
    lines += ["", "Chứng thư số hiện tại của ông/bà không thay đổi. Ông/bà có thể gửi lại "
              "yêu cầu sau khi đã bổ sung theo lý do nêu trên"
              + (f" trên Cổng ký số ({portal_url})" if portal_url else "")
              + " hoặc liên hệ bộ phận quản trị chứng thư số của đơn vị.", "",
              "Thư này được gửi tự động từ hệ thống ký số kyso; vui lòng không trả lời thư này.",
              ""]
    return f"Yêu cầu {what} số {request_id} đã bị từ chối", "\n".join(lines)


def notify_rejected(session: Session, *, to: str, official_name: str | None, request_id: int,
                    kind: str, serial: str | None, reason: str, portal_url: str = "",
                    actor: str = "kyso") -> int | None:
    """Queue the "request refused" mail in `session`'s transaction, once per request (dedupe
    key `rejected:request:<id>`)."""
    subject, body = rejection_mail(official_name=official_name, request_id=request_id,
                                   kind=kind, serial=serial, reason=reason,
                                   portal_url=portal_url)
    return outbox.enqueue(session, to=to, subject=subject, body=body, kind=REJECTED_KIND,
                          ref=f"request:{request_id}",
                          dedupe_key=f"rejected:request:{request_id}", actor=actor)


# -- the daily job -----------------------------------------------------------------------

@dataclass(frozen=True)
class LifecyclePolicy:
    """What the daily job does ([lifecycle] and [tsa] settings, as plain values)."""

    warn_days: tuple[int, ...] = (30, 7, 1)
    service_renew: timedelta = timedelta(days=30)
    tsa_key_label: str | None = "tsa-issuing"  # None: no TSA here
    tsa_profile: str = "timestamping"
    tsa_certificate_serial: str = ""  # pinned by the settings: never renewed automatically
    portal_url: str = ""


def threshold(left: timedelta, warn_days: Iterable[int]) -> int | None:
    """The tightest warning threshold (days) that `left` has reached, None if none."""
    reached = [d for d in warn_days if left <= timedelta(days=d)]
    return min(reached) if reached else None


def expiry_dedupe_key(serial: str, days: int) -> str:
    return f"expiry:{serial}:{days}d"


def queue_expiry_warnings(session: Session, now: datetime, policy: LifecyclePolicy, *,
                          actor: str = ACTOR) -> list[int]:
    """Queue one mail per expiring official certificate and reached threshold (the tightest
    one), in `session`'s transaction; a (certificate, threshold) already queued is skipped,
    so running it again queues nothing. Returns the ids of the mails queued now."""
    if not policy.warn_days:
        return []
    queued = []
    for item in expiring(session, now, max(policy.warn_days)):
        if item.kind != "official" or not item.email:
            continue
        days = threshold(item.not_after - now, policy.warn_days)
        if days is None:
            continue
        key = expiry_dedupe_key(item.serial, days)
        if outbox.is_queued(session, key):
            continue
        subject, body = expiry_mail(item, policy.portal_url)
        try:
            new_id = outbox.enqueue(session, to=item.email, subject=subject, body=body,
                                    kind=EXPIRY_KIND, ref=f"cert:{item.serial}",
                                    dedupe_key=key, now=now, actor=actor)
        except InvalidRequest as exc:  # an unusable address: say so, mail the others
            log.warning("no expiry warning for %s: %s", item.serial, exc)
            continue
        if new_id is not None:
            queued.append(new_id)
    return queued


@dataclass(frozen=True)
class TsaRenewal:
    """What the daily job did about the TSA certificate."""

    serial: str | None  # the certificate in force before (None: none found)
    renewed_serial: str | None = None
    skipped: str | None = None  # why nothing was done, when something should have been


def renew_tsa(authority: Any, now: datetime, policy: LifecyclePolicy, *,
              actor: str = ACTOR) -> TsaRenewal:
    """Renew the TSA certificate when it expires within policy.service_renew: the newest
    valid certificate of policy.tsa_profile for the key policy.tsa_key_label, as Kyso.tsa()
    picks it; same HSM key, same validity length (at least twice the renewal window).
    Idempotent: the renewal is the newest certificate, far from expiry, so the next run
    does nothing."""
    from ca.issuance import spki_sha256

    label = policy.tsa_key_label
    if not label:
        return TsaRenewal(None, skipped="no TSA configured")
    token = authority.token
    if not token.has_key(label):
        return TsaRenewal(None, skipped=f"no key {label!r} on the online token")
    spki = spki_sha256(token.find_key(label=label).public_key())
    with authority.readers() as s:
        current = store.current_certificate_for_key(s, policy.tsa_profile, spki, now)
        if current is None:
            return TsaRenewal(None, skipped=f"no valid {policy.tsa_profile!r} certificate "
                                            f"for the key {label!r}")
        if current.not_after - now > policy.service_renew:
            return TsaRenewal(current.serial)
        ca = store.get_ca_by_id(s, current.ca_id)
    serial = current.serial
    if policy.tsa_certificate_serial:
        return TsaRenewal(serial, skipped="tsa.certificate_serial pins the certificate: renew "
                                          "it and change the setting by hand")
    if not authority.is_online(ca):
        return TsaRenewal(serial, skipped=f"its CA {ca.name} is offline: renew it in a key "
                                          "ceremony")
    if ca.not_after <= current.not_after:
        return TsaRenewal(serial, skipped=f"its CA {ca.name} expires first "
                                          f"({ca.not_after:%Y-%m-%d}): a renewal would not "
                                          "last longer")
    # The same validity length, but at least twice the renewal window: a certificate shorter
    # than the window would be renewed again at every run.
    profile = authority.profiles.get(current.profile)
    length = round((current.not_after - current.not_before) / timedelta(days=1))
    window = math.ceil(policy.service_renew / timedelta(days=1))
    days = max(1, min(profile.max_validity_days, max(length, 2 * window)))
    issued = authority.renew(serial, validity_days=days, actor=actor)
    with authority.sessions.begin() as s:
        audit.record(s, actor=actor, action="tsa.certificate.renew", obj=f"cert:{serial}",
                     details={"key_label": label, "new_serial": issued.serial,
                              "not_after": issued.not_after.isoformat()})
    log.info("TSA certificate %s renewed as %s", serial, issued.serial)
    return TsaRenewal(serial, renewed_serial=issued.serial)


@dataclass
class DailyReport:
    """What one daily run did (the audit entry `lifecycle.daily` carries the same)."""

    at: datetime
    warnings_queued: list[int] = field(default_factory=list)
    tsa: TsaRenewal | None = None
    ocsp_responders: list[str] | None = None  # CAs whose responder is in force
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "warnings_queued": len(self.warnings_queued),
                "tsa": None if self.tsa is None else {
                    "serial": self.tsa.serial, "renewed_serial": self.tsa.renewed_serial,
                    "skipped": self.tsa.skipped},
                "ocsp_responders": self.ocsp_responders, "errors": self.errors}


def daily(authority: Any, policy: LifecyclePolicy, *, now: datetime | None = None,
          renew_responders: Callable[[], list[str]] | None = None,
          actor: str = ACTOR) -> DailyReport:
    """Expiry warnings queued, the TSA certificate renewed when due, the OCSP responders
    renewed (`renew_responders`, from ocsp/), audited `lifecycle.daily`. One step failing
    does not stop the others; its error is in the report and the audit entry. Idempotent."""
    now = now or datetime.now(UTC)
    report = DailyReport(now)
    try:
        with authority.sessions.begin() as s:
            report.warnings_queued = queue_expiry_warnings(s, now, policy, actor=actor)
    except Exception as exc:  # noqa: BLE001 - the other steps still run; the report says why
        log.exception("expiry warnings failed")
        report.errors["warnings"] = f"{type(exc).__name__}: {exc}"
    try:
        report.tsa = renew_tsa(authority, now, policy, actor=actor)
    except Exception as exc:  # noqa: BLE001
        log.exception("TSA renewal failed")
        report.errors["tsa"] = f"{type(exc).__name__}: {exc}"
    if renew_responders is not None:
        try:
            report.ocsp_responders = renew_responders()
        except Exception as exc:  # noqa: BLE001
            log.exception("OCSP responder renewal failed")
            report.errors["ocsp"] = f"{type(exc).__name__}: {exc}"
    with authority.sessions.begin() as s:
        audit.record(s, actor=actor, action="lifecycle.daily", obj="lifecycle",
                     outcome="failure" if report.errors else "success",
                     details=report.as_dict())
    return report


def last_daily_run(session: Session) -> datetime | None:
    """When `daily` last ran (its audit entry), None if never."""
    return store.last_audit_event_at(session, "lifecycle.daily")


def daily_due(session: Session, now: datetime) -> bool:
    """Whether the daily job has not run yet today (Vietnam time)."""
    last = last_daily_run(session)
    return last is None or last.astimezone(VN).date() < now.astimezone(VN).date()

