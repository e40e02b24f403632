"""Expiry: the list by organization (library and the real CLI), the officials' warnings queued
once per threshold by the daily job, and the TSA certificate renewing itself."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from lifecycle_support import app, issue, issue_service, run_kyso, unique, write_config
from sqlalchemy import select

from ca import lifecycle, outbox
from ca.models import AuditEventRecord, MailOutboxRecord
from hsm import KeySpec
from kyso.mailer import lifecycle_policy, run_daily

__all__ = ["app"]  # the module fixture


def _mail(app, key: str) -> MailOutboxRecord | None:  # type: ignore[no-untyped-def]
    with app.readers() as s:
        return s.scalars(select(MailOutboxRecord)
                         .where(MailOutboxRecord.dedupe_key == key)).one_or_none()


def test_expiring_lists_by_organization_soonest_first(app):
    a = app.authority
    ward, district = unique("UBND phường Bến Nghé"), unique("UBND quận Một")
    soon = issue(a, organization=ward, days=3, email_address="a@benghe.example.vn")
    later = issue(a, organization=ward, days=10, email_address="b@benghe.example.vn")
    other = issue(a, organization=district, days=5, email_address="c@q1.example.vn")
    far = issue(a, organization=district, days=40, email_address="d@q1.example.vn")
    now = datetime.now(UTC)
    with app.readers() as s:
        items = [i for i in lifecycle.expiring(s, now, 15)
                 if i.organization in (ward, district)]
        only_ward = lifecycle.expiring(s, now, 15, organization=ward)
    groups = lifecycle.by_organization(items)
    assert list(groups) == sorted([ward, district])
    assert [i.serial for i in groups[ward]] == [soon.serial, later.serial]
    assert [i.serial for i in groups[district]] == [other.serial]  # 40 days: not within 15
    assert far.serial not in {i.serial for i in items}
    assert [i.serial for i in only_ward] == [soon.serial, later.serial]
    first = groups[ward][0]
    assert first.kind == "official" and first.email == "a@benghe.example.vn"
    assert first.days_left == 2  # 3 days minus the backdating: 2 whole days and some hours
    assert first.not_after_vn.utcoffset() == timedelta(hours=7)


def test_renewed_and_revoked_certificates_are_not_listed(app):
    a = app.authority
    org = unique("Sở Nội vụ")
    renewed = issue(a, organization=org, days=4, email_address="e@snv.example.vn")
    successor = a.renew(renewed.serial, validity_days=4)  # expires later, by seconds
    revoked = issue(a, organization=org, days=4, email_address="f@snv.example.vn")
    a.revoke(revoked.serial, "superseded")
    with app.readers() as s:
        serials = [i.serial for i in lifecycle.expiring(s, datetime.now(UTC), 7,
                                                        organization=org)]
    assert serials == [successor.serial]


def test_daily_job_queues_each_warning_once_then_the_next_threshold(app):
    a = app.authority
    org = unique("UBND phường Đa Kao")
    pin = "24681357"
    official = a.add_official(name="Lê Thị Thu Hà", organization=org,
                              email=f"ha.{uuid.uuid4().hex[:6]}@dakao.example.vn", pin=pin,
                              ca_name="issuing", validity_days=5)
    csr_based = issue(a, organization=org, days=20,
                      email_address=f"lan.{uuid.uuid4().hex[:6]}@dakao.example.vn")
    quiet = issue(a, organization=org, days=90, email_address="quiet@dakao.example.vn")
    now = datetime.now(UTC)
    policy = lifecycle_policy(app.settings)
    with app.sessions.begin() as s:
        first = lifecycle.queue_expiry_warnings(s, now, policy)
    with app.sessions.begin() as s:
        again = lifecycle.queue_expiry_warnings(s, now, policy)
    mine = {official.certificate.serial, csr_based.serial, quiet.serial}
    with app.readers() as s:
        queued = {m.ref: m for m in outbox.list_messages(s, limit=1000)
                  if m.ref and m.ref.removeprefix("cert:") in mine}
    assert set(queued) == {f"cert:{official.certificate.serial}", f"cert:{csr_based.serial}"}
    assert {m.id for m in queued.values()} <= set(first)
    assert not {m.id for m in queued.values()} & set(again)  # nothing queued twice
    to_official = queued[f"cert:{official.certificate.serial}"]
    assert to_official.dedupe_key.endswith(":7d")  # 5 days left: the 7-day mail, not 30
    assert to_official.subject.startswith("Chứng thư số của ông/bà sắp hết hạn")
    assert "Lê Thị Thu Hà" in to_official.body and "(giờ Việt Nam)" in to_official.body
    assert to_official.recipient.endswith("@dakao.example.vn")
    assert queued[f"cert:{csr_based.serial}"].dedupe_key.endswith(":30d")
    # Two weeks later the 20-day certificate reaches the 7-day threshold: one new mail.
    later = now + timedelta(days=14)
    with app.sessions.begin() as s:
        lifecycle.queue_expiry_warnings(s, later, policy)
        lifecycle.queue_expiry_warnings(s, later, policy)
    assert _mail(app, lifecycle.expiry_dedupe_key(csr_based.serial, 7)) is not None
    with app.readers() as s:
        assert len(outbox.list_messages(s, ref=f"cert:{csr_based.serial}")) == 2
        # The portal's banner for the official.
        warnings = lifecycle.official_expiry_warnings(s, official.official_id, now,
                                                      policy.warn_days)
    assert [w.serial for w in warnings] == [official.certificate.serial]


def test_tsa_certificate_near_expiry_is_renewed_and_used(app):
    a = app.authority
    label = app.settings.tsa.key_label
    key = app.token().generate_key_pair(KeySpec.parse("ec-p256"), label)
    old = issue_service(a, key, days=20)  # within service_renew_days (30)
    assert format(app.tsa().certificate.serial_number, "x") == old.serial

    report, delivery = run_daily(app, ocsp=False, deliver=False)
    assert delivery is None and not report.errors
    assert report.tsa is not None and report.tsa.serial == old.serial
    new_serial = report.tsa.renewed_serial
    assert new_serial and new_serial != old.serial
    tsa = app.tsa()
    assert format(tsa.certificate.serial_number, "x") == new_serial
    renewed = a.certificate(new_serial)
    assert renewed.profile == "timestamping" and renewed.spki_sha256 == \
        a.certificate(old.serial).spki_sha256
    # At least twice the renewal window, so the next run leaves it alone.
    assert renewed.not_after - datetime.now(UTC) > timedelta(days=59)
    stamp = tsa.timestamp_data(b"bien ban hop", "sha256")
    assert stamp.response

    second, _ = run_daily(app, ocsp=False, deliver=False)
    assert second.tsa is not None and second.tsa.serial == new_serial
    assert second.tsa.renewed_serial is None
    with app.readers() as s:
        actions = s.scalars(select(AuditEventRecord.details)
                            .where(AuditEventRecord.action == "tsa.certificate.renew")).all()
        daily_runs = s.scalars(select(AuditEventRecord.id)
                               .where(AuditEventRecord.action == "lifecycle.daily")).all()
    assert any(new_serial in (d or "") for d in actions)
    assert len(daily_runs) >= 2
    with app.readers() as s:
        assert not lifecycle.daily_due(s, datetime.now(UTC))


def test_cli_expiring_json(app, tmp_path):
    a = app.authority
    org = unique("Sở Tài chính")
    two = issue(a, organization=org, days=2, email_address="g@stc.example.vn")
    six = issue(a, organization=org, days=6, email_address="h@stc.example.vn")
    issue(a, organization=org, days=60, email_address="i@stc.example.vn")
    config = write_config(app.settings, tmp_path / "kyso.toml")
    proc = run_kyso(config, "lifecycle", "expiring", "--days", "7", "--organization", org,
                    "--json")
    out = json.loads(proc.stdout)
    assert out["days"] == 7 and out["count"] == 2
    [group] = out["organizations"]
    assert group["organization"] == org
    certs = group["certificates"]
    assert [c["serial"] for c in certs] == [two.serial, six.serial]
    assert certs[0]["not_after_vn"].endswith("+07:00")
    assert certs[0]["kind"] == "official" and certs[0]["email"] == "g@stc.example.vn"
    text = run_kyso(config, "lifecycle", "expiring", "--days", "7", "--org", org)
    assert org in text.stdout and two.serial in text.stdout and "giờ VN" in text.stdout
    none = run_kyso(config, "lifecycle", "expiring", "--days", "1", "--org", org)
    assert "no valid certificate" in none.stdout
