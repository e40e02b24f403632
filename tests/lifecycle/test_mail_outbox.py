"""The mail outbox against a real SMTP server (aiosmtpd): queued once, kept while the server
is down and retried with backoff, delivered with a UTF-8 Vietnamese subject, a 5xx failing
for good; the [smtp]/[lifecycle] settings; the real `kyso lifecycle mail` commands."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from lifecycle_support import (
    SmtpServer,
    app,
    at_once,
    free_port,
    issue,
    meet_here,
    run_kyso,
    smtp_settings,
    unique,
    write_config,
)
from sqlalchemy import select

from ca import lifecycle, outbox
from ca.errors import InvalidRequest
from ca.models import AuditEventRecord
from kyso.mailer import Mailer, lifecycle_policy
from kyso.settings import SettingsError, load_settings

__all__ = ["app"]  # the module fixture

SUBJECT = "Chứng thư số của ông/bà sắp hết hạn"
BODY = "Kính gửi ông Nguyễn Văn Bình,\n\nChứng thư số của ông/bà sắp hết hạn.\n"


def _queue(app, to: str, *, subject: str = SUBJECT, key: str | None = None,  # type: ignore[no-untyped-def]
           now: datetime | None = None) -> int | None:
    with app.sessions.begin() as s:
        return outbox.enqueue(s, to=to, subject=subject, body=BODY, kind="test",
                              ref=f"test:{uuid.uuid4().hex[:6]}",
                              dedupe_key=key or f"test:{uuid.uuid4().hex}", now=now)


def _get(app, message_id: int) -> outbox.OutboxMessage:  # type: ignore[no-untyped-def]
    with app.readers() as s:
        return outbox.get_message(s, message_id)


def _audit(app, action: str, message_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    with app.readers() as s:
        return list(s.scalars(select(AuditEventRecord.outcome).where(
            AuditEventRecord.action == action, AuditEventRecord.object == f"mail:{message_id}")))


def _address(name: str) -> str:
    return f"{name}.{uuid.uuid4().hex[:8]}@ubnd.example.vn"


def test_enqueue_is_deduplicated_checked_and_audited(app):
    key = f"renewal:{uuid.uuid4().hex}"
    first = _queue(app, _address("binh"), key=key)
    assert first is not None
    assert _queue(app, _address("binh"), key=key) is None  # same notice: not queued again
    assert _audit(app, "mail.queue", first) == ["success"]
    for bad in ("not-an-address", "a@b>\r\nBcc: x@y", "x@y, z@w"):
        with pytest.raises(InvalidRequest):
            _queue(app, bad)
    with pytest.raises(InvalidRequest, match="one line"):
        _queue(app, _address("binh"), subject="Chào\r\nBcc: spy@example.com")


def test_server_down_keeps_the_message_then_delivers_it_in_utf8(app):
    port = free_port()  # nothing listens here yet
    mailer = Mailer(smtp_settings(port), app.sessions)
    to = _address("binh")
    now = datetime.now(UTC)
    message_id = _queue(app, to, now=now)
    assert message_id is not None

    down = mailer.deliver_due(now)
    assert message_id in down.retry and "cannot connect" in (down.error or "")
    m = _get(app, message_id)
    assert (m.status, m.attempts) == ("queued", 1)
    assert m.next_attempt_at == now + timedelta(seconds=60) and m.last_error
    assert _audit(app, "mail.failed", message_id) == ["failure"]
    # Still down a bit later, and due again: the wait doubles.
    mailer.deliver_due(now + timedelta(seconds=61))
    m = _get(app, message_id)
    assert (m.status, m.attempts) == ("queued", 2)
    assert m.next_attempt_at == now + timedelta(seconds=61 + 120)
    assert outbox.retry_delay(30, timedelta(seconds=60), timedelta(hours=1)) == timedelta(hours=1)

    with SmtpServer(port) as server:
        assert message_id not in mailer.deliver_due(now + timedelta(seconds=90)).sent  # not due
        up = mailer.deliver_due(now + timedelta(seconds=200))
        assert message_id in up.sent
        [received] = server.sink.to(to)
    assert received["Subject"] == SUBJECT  # RFC 2047 on the wire, Vietnamese decoded
    assert received["From"] == "kyso-test@kyso.example.vn" and received["To"] == to
    assert received.get_content_charset() == "utf-8"
    assert received.get_content() == BODY
    assert received["Auto-Submitted"] == "auto-generated"
    raw = next(raw for _, rcpts, raw in server.sink.messages if to in rcpts)
    assert "Chứng".encode() not in raw  # nothing 8-bit on the wire
    m = _get(app, message_id)
    assert (m.status, m.attempts, m.last_error) == ("sent", 3, None) and m.sent_at
    assert _audit(app, "mail.sent", message_id) == ["success"]


def test_5xx_fails_for_good_and_4xx_is_retried(app):
    good, gone, busy = _address("good"), _address("gone"), _address("busy")
    now = datetime.now(UTC)
    ids = {a: _queue(app, a, now=now) for a in (good, gone, busy)}
    with SmtpServer() as server:
        server.sink.rcpt_replies = {gone: "550 5.1.1 No such user", busy: "451 4.3.0 Try later"}
        mailer = Mailer(smtp_settings(server.controller.port), app.sessions)
        report = mailer.deliver_due(now)
        assert ids[good] in report.sent
        assert ids[gone] in report.failed and ids[busy] in report.retry
        failed = _get(app, ids[gone])  # type: ignore[arg-type]
        assert failed.status == "failed" and "550" in (failed.last_error or "")
        assert _get(app, ids[busy]).status == "queued"  # type: ignore[arg-type]
        # Much later: the 4xx one is tried again, the 5xx one never.
        again = mailer.deliver_due(now + timedelta(hours=2))
        assert ids[gone] not in again.failed + again.retry + again.sent
        assert ids[busy] in again.retry
        assert _get(app, ids[busy]).attempts == 2  # type: ignore[arg-type]
        assert _get(app, ids[gone]).attempts == 1  # type: ignore[arg-type]
        assert len(server.sink.to(good)) == 1 and not server.sink.to(gone)
    details = _audit(app, "mail.failed", ids[gone])  # type: ignore[arg-type]
    assert details == ["failure"]
    # An operator puts it back (the address was fixed): queued again.
    with app.sessions.begin() as s:
        outbox.requeue(s, ids[gone], datetime.now(UTC))  # type: ignore[arg-type]
    assert _get(app, ids[gone]).status == "queued"  # type: ignore[arg-type]


def test_daily_warning_arrives_once_by_mail(app):
    org = unique("UBND phường Tân Định")
    to = _address("thu")
    cert = issue(app.authority, organization=org, days=6, email_address=to)
    policy = lifecycle_policy(app.settings)
    with SmtpServer() as server:
        mailer = Mailer(smtp_settings(server.controller.port), app.sessions)
        for _ in range(2):  # the daily run twice: one mail
            with app.sessions.begin() as s:
                lifecycle.queue_expiry_warnings(s, datetime.now(UTC), policy)
            mailer.deliver_due()
        [mail] = server.sink.to(to)
    assert mail["Subject"].startswith(SUBJECT) and "còn 5 ngày" in mail["Subject"]
    body = mail.get_content()
    assert cert.serial in body and org in body and "(giờ Việt Nam)" in body


def test_no_smtp_host_means_queued_only(app):
    message_id = _queue(app, _address("an"))
    report = Mailer(smtp_settings(25, host=""), app.sessions).deliver_due()
    assert report.skipped and not report.sent
    assert _get(app, message_id).status == "queued"  # type: ignore[arg-type]


def test_smtp_and_lifecycle_settings(tmp_path, monkeypatch):
    config = tmp_path / "kyso.toml"
    config.write_text('[lifecycle]\nwarn_days = [7, 30, 1, 7]\n'
                      '[smtp]\nhost = "mail.hochiminhcity.gov.vn"\nport = 587\n'
                      'username = "kyso"\npassword_env = "TEST_KYSO_SMTP_PW"\n')
    settings = load_settings(config, environ={"KYSO_SMTP_TIMEOUT": "30",
                                              "KYSO_LIFECYCLE_SERVICE_RENEW_DAYS": "14"})
    assert settings.lifecycle.warn_days == (30, 7, 1)
    assert settings.lifecycle.service_renew_days == 14
    assert settings.smtp.port == 587 and settings.smtp.timeout == 30 and settings.smtp.starttls
    monkeypatch.delenv("TEST_KYSO_SMTP_PW", raising=False)
    with pytest.raises(SettingsError, match="TEST_KYSO_SMTP_PW"):
        settings.smtp.password()
    monkeypatch.setenv("TEST_KYSO_SMTP_PW", "s3cret")
    assert settings.smtp.password() == "s3cret"
    env = load_settings(config, environ={"KYSO_LIFECYCLE_WARN_DAYS": "14,3"})
    assert env.lifecycle.warn_days == (14, 3)
    for text, words in [
        ("[lifecycle]\nwarn_days = [0]\n", "lifecycle.warn_days"),
        ('[lifecycle]\nwarn_days = "soon"\n', "lifecycle.warn_days"),
        ("[smtp]\nport = 0\n", "smtp.port"),
        ('[smtp]\nfrom_address = "kyso"\n', "smtp.from_address"),
        ('[smtp]\nhost = "mail.example.vn"\nusername = "u"\nstarttls = false\n',
         "smtp.starttls"),
        ("[smtp]\nretry_base_seconds = 600\nretry_max_seconds = 60\n", "smtp.retry_max"),
        ("[smtp]\npassword = \"x\"\n", "unknown setting smtp.password"),
    ]:
        config.write_text(text)
        with pytest.raises(SettingsError, match=words):
            load_settings(config, environ={})


def test_cli_mail_send_and_list(app, tmp_path):
    to = _address("cli")
    message_id = _queue(app, to)
    with SmtpServer() as server:
        config = write_config(app.settings, tmp_path / "kyso.toml",
                              smtp_port=server.controller.port)
        sent = json.loads(run_kyso(config, "lifecycle", "mail", "--send", "--json").stdout)
        assert message_id in sent["sent"]
        assert len(server.sink.to(to)) == 1
    listed = json.loads(run_kyso(config, "lifecycle", "mail", "--list", "--status", "sent",
                                 "--limit", "1000", "--json").stdout)
    [row] = [m for m in listed["messages"] if m["id"] == message_id]
    assert row["status"] == "sent" and row["to"] == to and row["subject"] == SUBJECT
    assert listed["counts"]["sent"] >= 1
    text = run_kyso(config, "lifecycle", "mail", "--limit", "1000")
    assert to in text.stdout


def test_reissue_notice_is_queued_once(app):
    to = _address("reissued")
    serial = uuid.uuid4().hex
    args = dict(to=to, official_name="Phạm Minh Khoa", new_serial=serial,
                not_after=datetime.now(UTC) + timedelta(days=730),
                subject_dn="CN=Phạm Minh Khoa,O=UBND phường Sài Gòn,C=VN", old_serial="ab12",
                reason="Sáp nhập phường Bến Nghé vào phường Sài Gòn", ref="batch:7")
    with app.sessions.begin() as s:
        first = lifecycle.notify_reissued(s, **args)
        assert lifecycle.notify_reissued(s, **args) is None
    m = _get(app, first)  # type: ignore[arg-type]
    assert (m.kind, m.ref, m.dedupe_key) == ("certificate-reissued", "batch:7",
                                             f"reissued:{serial}")
    assert serial in m.body and "Sáp nhập" in m.body and m.subject.startswith("Chứng thư số")


def test_web_background_job_runs_the_daily_part_and_sends(app):
    from kyso.mailer import background_job

    to = _address("background")
    message_id = _queue(app, to)
    with SmtpServer(app.settings.smtp.port) as server:
        background_job(app)
        assert len(server.sink.to(to)) == 1
    assert _get(app, message_id).status == "sent"  # type: ignore[arg-type]
    with app.readers() as s:
        assert not lifecycle.daily_due(s, datetime.now(UTC))  # ran today (here or before)


def test_two_workers_whose_ticks_meet_run_the_daily_job_once(app, monkeypatch):
    import threading

    from kyso import mailer as mailer_module

    monkeypatch.setattr(lifecycle, "daily_due", lambda session, now: True)
    meet = threading.Barrier(2, timeout=3)
    runs: list[int] = []
    real_daily = mailer_module._daily

    def daily(app_, now, ocsp):  # type: ignore[no-untyped-def]
        runs.append(threading.get_ident())
        meet_here(meet)  # both workers inside the daily job at once, if they can be
        return real_daily(app_, now, ocsp)

    monkeypatch.setattr(mailer_module, "_daily", daily)
    with SmtpServer(app.settings.smtp.port):
        _, errors = at_once(lambda: mailer_module.background_job(app), meet)
    assert not errors, errors
    assert len(runs) == 1


def test_cron_is_told_who_runs_the_daily_job_and_takes_over_a_dead_holder(app):
    from ca import store
    from ca.errors import StateConflict
    from kyso.mailer import DAILY_LEASE, run_daily

    now = datetime.now(UTC)
    with app.sessions.begin() as s:
        assert store.take_lease(s, DAILY_LEASE, "web-2:4242:1", now,
                                now + timedelta(minutes=30)) is None
    with pytest.raises(StateConflict, match="web-2:4242:1"):
        run_daily(app, ocsp=False, deliver=False)
    # That worker died: its lease runs out and the job runs here.
    with app.sessions.begin() as s:
        store.release_lease(s, DAILY_LEASE, "web-2:4242:1")
        assert store.take_lease(s, DAILY_LEASE, "web-3:99:1", now - timedelta(hours=1),
                                now - timedelta(minutes=1)) is None
    report, _ = run_daily(app, ocsp=False, deliver=False)
    assert report.errors == {}
    with app.sessions.begin() as s:  # and it gave the lease back when done
        assert store.take_lease(s, DAILY_LEASE, "probe", now, now) is None


def test_cli_daily_queues_and_delivers_once(app, tmp_path):
    to = _address("daily")
    cert = issue(app.authority, organization=unique("UBND xã Cần Thạnh"), days=6,
                 email_address=to)
    with SmtpServer() as server:
        config = write_config(app.settings, tmp_path / "kyso.toml",
                              smtp_port=server.controller.port)
        first = json.loads(run_kyso(config, "lifecycle", "daily", "--no-ocsp", "--json").stdout)
        assert first["warnings_queued"] >= 1 and first["errors"] == {}
        assert "no key" in first["tsa"]["skipped"]
        assert first["mail"]["error"] is None and first["mail"]["sent"]
        second = run_kyso(config, "lifecycle", "daily", "--no-ocsp")
        assert "TSA certificate" in second.stdout and "mail:" in second.stdout
        [mail] = server.sink.to(to)
    assert cert.serial in mail.get_content()


def test_demo_settings_have_a_local_smtp_server(tmp_path):
    from kyso.bootstrap import (
        SETTINGS_TEMPLATE,
        SMTP_DEMO_SECTION,
        WEB_DEMO_SECTION,
        _add_smtp_section,
    )

    config = tmp_path / "kyso.toml"
    config.write_text(SETTINGS_TEMPLATE.format(module="/x.so", web=WEB_DEMO_SECTION)
                      + SMTP_DEMO_SECTION, encoding="utf-8")
    demo = load_settings(config, environ={})
    assert (demo.smtp.host, demo.smtp.port, demo.smtp.starttls) == ("127.0.0.1", 8025, False)
    assert demo.lifecycle.warn_days == (30, 7, 1)
    # A demo file from before [smtp] existed gets the section, once; an operator's file never.
    config.write_text(SETTINGS_TEMPLATE.format(module="/x.so", web=WEB_DEMO_SECTION),
                      encoding="utf-8")
    _add_smtp_section(config)
    _add_smtp_section(config)
    assert config.read_text(encoding="utf-8").count("[smtp]") == 1
    assert load_settings(config, environ={}).smtp.port == 8025
    own = tmp_path / "own.toml"
    own.write_text('base_url = "https://pki.example"\n', encoding="utf-8")
    _add_smtp_section(own)
    assert "[smtp]" not in own.read_text(encoding="utf-8")
