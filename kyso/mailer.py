"""SMTP delivery of the mail outbox ([smtp]), and the lifecycle jobs wired from a Kyso:
`run_daily` (`kyso lifecycle daily`, cron) and `background_job` (every web worker).

Delivery is at least once: a message is claimed (ca/outbox.py), sent, then marked; a crash
between the server's "250" and the mark sends it again later, never loses it. A server that
is down or answers 4xx: the message stays queued and is retried with a capped exponential
backoff. A 5xx for the recipient or the message: `failed`, not retried by itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from ca import lifecycle, outbox, store
from ca.errors import StateConflict
from ca.outbox import OutboxMessage
from kyso.settings import Settings, SettingsError, SmtpSettings

if TYPE_CHECKING:
    from kyso.app import Kyso

log = logging.getLogger("kyso.mailer")

ACTOR = "mailer"
BATCH = 20  # messages claimed at a time
# How long a claimed message is left alone by other senders: far more than sending a batch
# takes (each SMTP command has smtp.timeout).
LEASE = timedelta(minutes=10)
# The daily job runs in one process at a time (ca.models.JobLeaseRecord). It takes seconds;
# a process that died holding the lease frees it after DAILY_LEASE_TIME.
DAILY_LEASE = "lifecycle.daily"
DAILY_LEASE_TIME = timedelta(minutes=30)


@dataclass
class DeliveryReport:
    """Ids of the messages of one run, by outcome."""

    sent: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)  # temporary failure, still queued
    failed: list[int] = field(default_factory=list)  # permanent failure
    skipped: str | None = None  # why nothing was tried (no smtp.host)
    error: str | None = None  # the connection-level error, if any

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed,
                "skipped": self.skipped, "error": self.error}


class _Temporary(Exception):
    """The server cannot take mail now (down, 4xx, disconnected): retry everything later."""


def build_message(message: OutboxMessage, from_address: str, now: datetime) -> EmailMessage:
    """The RFC 5322 message: UTF-8 text body (base64), RFC 2047 encoded Vietnamese subject, a
    Message-ID stable across retries (a receiver can spot a duplicate)."""
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = message.recipient
    msg["Subject"] = message.subject
    msg["Date"] = format_datetime(now.astimezone(UTC), usegmt=True)
    domain = from_address.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = f"<kyso.{message.id}.{int(message.created_at.timestamp())}@{domain}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg.set_content(message.body, charset="utf-8", cte="base64")
    return msg


def _code_error(code: int, text: bytes | str) -> str:
    detail = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {detail}".strip()


class Mailer:
    """Delivers due outbox messages over SMTP (one connection per run)."""

    def __init__(self, settings: SmtpSettings, sessions: sessionmaker[Session], *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.settings = settings
        self.sessions = sessions
        self.clock = clock or (lambda: datetime.now(UTC))

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout)
        except (OSError, smtplib.SMTPException) as exc:
            raise _Temporary(f"cannot connect to {s.host}:{s.port}: {exc}") from None
        try:
            smtp.ehlo()
            if s.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, s.password())
        except (OSError, smtplib.SMTPException, SettingsError) as exc:
            _close(smtp)
            raise _Temporary(f"SMTP session with {s.host}:{s.port} refused: "
                             f"{_describe(exc)}") from None
        return smtp

    def _send_one(self, smtp: smtplib.SMTP, message: OutboxMessage, now: datetime) -> (
        tuple[str, str | None]
    ):
        """("sent" | "retry" | "failed", error). _Temporary when the connection is gone."""
        msg = build_message(message, self.settings.from_address, now)
        try:
            smtp.send_message(msg, self.settings.from_address, [message.recipient])
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()), (450, b"refused"))
            return ("failed" if 500 <= code < 600 else "retry"), _code_error(code, text)
        except smtplib.SMTPSenderRefused as exc:
            # Our from_address, not this recipient: fix the settings, nothing is lost.
            return "retry", "sender refused: " + _code_error(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPDataError as exc:
            kind = "failed" if 500 <= exc.smtp_code < 600 else "retry"
            return kind, _code_error(exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPResponseException as exc:
            return "retry", _code_error(exc.smtp_code, exc.smtp_error)
        except (smtplib.SMTPException, OSError) as exc:
            raise _Temporary(_describe(exc)) from None
        return "sent", None

    def deliver_due(self, now: datetime | None = None, *, limit: int = 500) -> DeliveryReport:
        """Send what is due at `now` (at most `limit` messages)."""
        report = DeliveryReport()
        if not self.settings.host:
            report.skipped = "smtp.host is not set: mail stays queued"
            return report
        now = now or self.clock()
        s = self.settings
        base, cap = timedelta(seconds=s.retry_base_seconds), timedelta(seconds=s.retry_max_seconds)
        smtp: smtplib.SMTP | None = None
        try:
            while len(report.sent) + len(report.retry) + len(report.failed) < limit:
                with self.sessions.begin() as session:
                    batch = outbox.claim_due(session, now, lease=LEASE,
                                             limit=min(BATCH, limit - len(report.sent)
                                                       - len(report.retry) - len(report.failed)))
                if not batch:
                    break
                for i, message in enumerate(batch):
                    try:
                        if smtp is None:
                            smtp = self._connect()
                        outcome, error = self._send_one(smtp, message, now)
                    except _Temporary as exc:
                        # Down or gone: this message and the rest of the batch wait.
                        report.error = str(exc)
                        for rest in batch[i:]:
                            self._mark(rest, "retry", str(exc), now, base, cap)
                            report.retry.append(rest.id)
                        _close(smtp)
                        smtp = None
                        return report
                    self._mark(message, outcome, error, now, base, cap)
                    getattr(report, outcome).append(message.id)
        finally:
            _close(smtp)
        return report

    def _mark(self, message: OutboxMessage, outcome: str, error: str | None, now: datetime,
              base: timedelta, cap: timedelta) -> None:
        with self.sessions.begin() as session:
            if outcome == "sent":
                outbox.mark_sent(session, message.id, now, actor=ACTOR)
            elif outcome == "failed":
                outbox.mark_failed(session, message.id, error or "refused", now, actor=ACTOR)
            else:
                outbox.mark_retry(session, message.id, error or "temporary failure", now,
                                  base=base, cap=cap, actor=ACTOR)
        if outcome != "sent":
            log.warning("mail %s to %s: %s (%s)", message.id, message.recipient, outcome, error)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _code_error(exc.smtp_code, exc.smtp_error)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _close(smtp: smtplib.SMTP | None) -> None:
    if smtp is None:
        return
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


# -- the lifecycle jobs, wired from a Kyso -----------------------------------------------

def lifecycle_policy(settings: Settings) -> lifecycle.LifecyclePolicy:
    """[lifecycle] and [tsa] as the daily job's policy."""
    return lifecycle.LifecyclePolicy(
        warn_days=settings.lifecycle.warn_days,
        service_renew=timedelta(days=settings.lifecycle.service_renew_days),
        tsa_key_label=settings.tsa.key_label,
        tsa_profile=settings.tsa.profile,
        tsa_certificate_serial=settings.tsa.certificate_serial,
        portal_url=f"{settings.base_url.rstrip('/')}/portal",
    )


def mailer(app: Kyso) -> Mailer:
    return Mailer(app.settings.smtp, app.sessions)


def renew_ocsp_responders(app: Kyso) -> list[str]:
    """Renew the delegated OCSP responders of the online CAs that are due (ocsp/'s
    Responders, as `kyso ocsp refresh` and the web workers do). The CAs served."""
    from ca import store
    from ocsp.refresh import Policy, Responders

    responders = Responders(app.authority, Policy.from_settings(app.settings.ocsp))
    now = datetime.now(UTC)
    with app.readers() as s:
        cas = [ca for ca in store.list_cas(s)
               if ca.status == "active" and app.authority.is_online(ca)]
    return [ca.name for ca in cas
            if responders.ensure(ca, now, actor=lifecycle.ACTOR) is not None]


class DailyJobBusy(StateConflict):
    """Another process is running the daily job."""

    code = "job_busy"


@contextlib.contextmanager
def daily_lease(app: Kyso) -> Iterator[None]:
    """Hold the daily job's lease for the block; DailyJobBusy (naming the holder) while
    another process has it."""
    me = f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    now = datetime.now(UTC)
    with app.sessions.begin() as s:
        other = store.take_lease(s, DAILY_LEASE, me, now, now + DAILY_LEASE_TIME)
    if other is not None:
        holder, until = other
        raise DailyJobBusy(f"the daily job is running in another process ({holder}) until "
                            f"it ends, or at the latest {until:%Y-%m-%d %H:%M} UTC")
    try:
        yield
    finally:
        with app.sessions.begin() as s:
            store.release_lease(s, DAILY_LEASE, me)


def run_daily(app: Kyso, *, now: datetime | None = None, ocsp: bool = True,
              deliver: bool = True) -> tuple[lifecycle.DailyReport, DeliveryReport | None]:
    """The daily job: expiry warnings queued, the TSA certificate (and with `ocsp` the OCSP
    responder certificates) renewed when due, then the outbox delivered (with `deliver`).
    DailyJobBusy while another process runs it (`daily_lease`)."""
    with daily_lease(app):
        report = _daily(app, now, ocsp)
    delivery = mailer(app).deliver_due() if deliver else None
    return report, delivery


def _daily(app: Kyso, now: datetime | None, ocsp: bool) -> lifecycle.DailyReport:
    report = lifecycle.daily(
        app.authority, lifecycle_policy(app.settings), now=now,
        renew_responders=(lambda: renew_ocsp_responders(app)) if ocsp else None)
    if report.tsa is not None and report.tsa.renewed_serial:
        app.forget_tsa()
    return report


def background_job(app: Kyso) -> None:
    """One tick of a web worker (every lifecycle.check_every_seconds): the daily job when it
    has not run today (Vietnam time; OCSP responders have their own job there) and no other
    process is running it, then the due mail."""
    now = datetime.now(UTC)
    with app.readers() as s:
        due = lifecycle.daily_due(s, now)
    if due:
        try:
            with daily_lease(app):
                with app.readers() as s:  # another worker may have finished it meanwhile
                    due = lifecycle.daily_due(s, now)
                if due:
                    _daily(app, now, ocsp=False)
        except DailyJobBusy as exc:
            log.debug("daily job not run here: %s", exc)
    mailer(app).deliver_due()
