"""Bulk change after a reorganization (ca/reorg.py, `kyso lifecycle reorg`): strict mappings
refused with their rows named before anything is issued; the dry run is what the batch does;
a batch of 2,000 certificates across 30 organizations killed (SIGKILL) halfway and run again
issues exactly one new certificate per old one, revokes every old one with the right reason,
and the CRL, the OCSP change feed and the outbox say so; crashes at each step resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from lifecycle_support import KYSO, app, at_once, meet_here, run_kyso, write_config
from reorg_support import (
    Population,
    certificates,
    make_ca,
    mapping,
    populate,
    successors,
)
from sqlalchemy import func, select, text

from ca import reorg, store
from ca.errors import MappingRejected, NotFound, StateConflict
from ca.models import CertificateRecord, MailOutboxRecord, OfficialRecord, ReorgItemRecord

__all__ = ["app"]  # the module fixture

TODAY = "2025-07-01"  # the merger of the wards (Resolution 1685/NQ-UBTVQH15): in the past


@pytest.fixture(scope="module")
def ca_name(app: Any) -> str:
    return make_ca(app.authority)


def _rows_of(exc: pytest.ExceptionInfo[MappingRejected]) -> set[int]:
    return {p.row for p in exc.value.problems}


def _count_certs(app: Any) -> int:
    with app.readers() as s:
        return int(s.scalar(select(func.count()).select_from(CertificateRecord)) or 0)


# -- the mapping is strict ----------------------------------------------------------------

def test_parse_accepts_bom_both_date_forms_and_empty_fields() -> None:
    text = mapping([("Phường A", "", "Quận 1", "Phường B", "", "Thành phố Hồ Chí Minh",
                     "2025-07-01"),
                    ("Phường C", "Văn phòng", "", "", "Văn phòng HĐND-UBND", "", "01/07/2025")],
                   bom=True)
    rows = reorg.parse_mapping(text)
    assert [r.row for r in rows] == [2, 3]
    assert rows[0].old_unit is None and rows[0].new_unit is None
    assert rows[0].changes == {"organization": "Phường B", "locality": "Thành phố Hồ Chí Minh"}
    assert rows[1].effective_date == date(2025, 7, 1)
    assert rows[1].changes == {"unit": "Văn phòng HĐND-UBND"}


@pytest.mark.parametrize(("text", "rows", "words"), [
    (mapping([], header=("old_org", "old_unit", "old_locality", "new_organization",
                         "new_unit", "new_locality", "effective_date")), {1}, "header"),
    (mapping([("A", "", "", "B", "", "", "2025-02-30")]), {2}, "not a date"),
    (mapping([("A", "", "", "B", "", "", "1/7/25")]), {2}, "not a date"),
    (mapping([("A", "", "", "B", "")]), {2}, "5 column(s)"),
    (mapping([("A", "", "", "B", "", "", TODAY), ("C", "", "", "D", "", "", TODAY),
              ("A", "", "", "E", "", "", TODAY)]), {2, 4}, "duplicate of row 2"),
    (mapping([("", "", "", "B", "", "", TODAY)]), {2}, "at least one old field"),
    (mapping([("A", "", "", "A", "", "", TODAY)]), {2}, "changes nothing"),
    (mapping([]), {0}, "no rows"),
])
def test_parse_rejects_and_names_rows(text: str, rows: set[int], words: str) -> None:
    with pytest.raises(MappingRejected) as info:
        reorg.parse_mapping(text)
    assert _rows_of(info) == rows
    assert words in str(info.value)
    assert info.value.http_status == 422 and info.value.code == "mapping_rejected"


def test_parse_names_the_physical_line_of_each_row() -> None:
    text = mapping([("A", "", "", "B", "", "", TODAY)]) + "\r\n" + \
        '"C\r\nD","","","E","","","bad"\r\n'
    with pytest.raises(MappingRejected) as info:
        reorg.parse_mapping(text)
    assert _rows_of(info) == {4}


# -- refused before anything is issued ------------------------------------------------------

@pytest.fixture(scope="module")
def small(app: Any, ca_name: str) -> Population:
    return populate(app.authority, ca_name, organizations=4, per_organization=3)


def test_unknown_organizations_duplicates_and_bad_subjects_issue_nothing(app, small,
                                                                         tmp_path):
    o = small.organizations
    too_long = "Ủy ban nhân dân " + "x" * 60
    bad = mapping([
        (o[0], "", "", "Phường Bến Thành mới", "", "", TODAY),         # fine
        ("Phường Không Có Thật", "", "", "Phường X", "", "", TODAY),  # unknown
        (o[1], "", "", too_long, "", "", TODAY),                       # refused subject
        (o[2], "", "", "Phường Y", "", "", TODAY),
        (o[2], "", "", "Phường Z", "", "", TODAY),                     # duplicate
    ])
    before = _count_certs(app)
    with app.readers() as s:
        batches_before = {b.id for b in reorg.list_batches(s, limit=1000)}
    with pytest.raises(MappingRejected) as info:
        reorg.start(app.authority, bad, actor="test")
    assert _rows_of(info) == {3, 4, 5, 6}
    with pytest.raises(MappingRejected) as info:
        reorg.start(app.authority, mapping([
            (o[0], "", "", "Phường Bến Thành mới", "", "", TODAY),
            ("Phường Không Có Thật", "", "", "Phường X", "", "", TODAY),
            (o[1], "", "", too_long, "", "", TODAY)]), actor="test")
    assert _rows_of(info) == {3, 4}
    messages = {p.row: p.message for p in info.value.problems}
    assert "unknown organization" in messages[3]
    assert "refused" in messages[4] and "at most 64" in messages[4]
    # Two rows matching the same certificate (an empty old field matches any value).
    with pytest.raises(MappingRejected) as info:
        reorg.start(app.authority, mapping([
            (o[3], "", "", "Phường Y", "", "", TODAY),
            (o[3], "", small.localities[o[3]], "Phường Z", "", "", TODAY)]), actor="test")
    assert _rows_of(info) == {2, 3} and "both match 3" in str(info.value)
    assert _count_certs(app) == before
    with app.readers() as s:
        assert {b.id for b in reorg.list_batches(s, limit=1000)} == batches_before

    # The CLI: exit 3, one `error:` line per problem naming its row, nothing written.
    config = write_config(app.settings, tmp_path / "kyso.toml")
    path = tmp_path / "bad.csv"
    path.write_text(bad, encoding="utf-8")
    for mode in ("--dry-run", "--apply"):
        proc = run_kyso(config, "lifecycle", "reorg", str(path), mode, "--yes", expect=3)
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert any("row 3: unknown organization" in e for e in errors)
        assert any(e.startswith("error: row 4: the new subject is refused") for e in errors)
        assert any("row 6: duplicate of row 5" in e for e in errors)
    assert _count_certs(app) == before


def test_dry_run_warnings_notes_and_future_rows(app, small, tmp_path):
    o = small.organizations
    held = small.serials[o[1]][0]
    app.authority.hold(held, actor="test")
    try:
        future = (datetime.now(UTC) + timedelta(days=40)).strftime("%d/%m/%Y")
        text = mapping([
            (o[0], "Phòng Không Có", "", "Phường Mới", "", "", TODAY),  # matches nothing
            (o[1], "", "", "", "", "Thành phố Hồ Chí Minh", future),
        ])
        plan = reorg.dry_run(app.authority, text)
        assert sorted(i.old_serial for i in plan.items) == sorted(
            s for s in small.serials[o[1]] if s != held)
        assert all(not i.effective and i.reason == "superseded" for i in plan.items)
        assert [(n.serial, n.row) for n in plan.notes] == [(held, 3)]
        assert {w.row for w in plan.warnings} == {2, 3}
        assert plan.not_yet_effective == [3]
        with pytest.raises(MappingRejected) as info:
            reorg.start(app.authority, text, actor="test")
        assert _rows_of(info) == {3} and "not yet effective" in str(info.value)

        config = write_config(app.settings, tmp_path / "kyso.toml")
        path = tmp_path / "future.csv"
        path.write_text(text, encoding="utf-8")
        proc = run_kyso(config, "lifecycle", "reorg", str(path), "--dry-run", "--json")
        doc = json.loads(proc.stdout)
        assert doc["count"] == 2 and doc["not_yet_effective"] == [3]
        assert {w["row"] for w in doc["warnings"]} == {2, 3}
    finally:
        app.authority.release(held, actor="test")


# -- crashes at each step resume without issuing twice ----------------------------------------

def _batch_certs(app: Any, pop: Population, org: str) -> tuple[dict[str, Any], list[Any]]:
    olds = certificates(app.authority, pop.serials[org])
    return olds, successors(app.authority, [c.id for c in olds.values()])


def test_crash_after_reservation_after_issue_and_before_revocation(app, small, monkeypatch):
    """A run dying (1) after the reservations, before the signatures were stored, (2) after
    the certificates were stored, before the items recorded them, (3) before the
    revocations: each rerun ends with exactly one new certificate per old one."""
    from ca.authority import Authority

    o = small.organizations
    text = mapping([(o[3], "", "", "Ủy ban nhân dân phường Sài Gòn", "", "", TODAY)])
    batch_id = reorg.start(app.authority, text, actor="test")
    assert reorg.start(app.authority, text, actor="test") == batch_id  # resumes, not anew

    class Killed(BaseException):
        pass

    real_store = Authority._store

    def die_before_store(self, chunk, actor):  # type: ignore[no-untyped-def]
        raise Killed

    monkeypatch.setattr(Authority, "_store", die_before_store)
    with pytest.raises(Killed):
        reorg.run(app.authority, batch_id, actor="test", chunk_size=2)
    monkeypatch.setattr(Authority, "_store", real_store)
    olds, succ = _batch_certs(app, small, o[3])
    assert [c.status for c in succ] == ["pending"] * 3  # reserved, never stored
    assert reorg.show(app.authority, batch_id).batch.status == "failed"

    real_update = store.update_reorg_items

    def die_recording(session, changes):  # type: ignore[no-untyped-def]
        raise Killed

    monkeypatch.setattr(store, "update_reorg_items", die_recording)
    with pytest.raises(Killed):
        reorg.run(app.authority, batch_id, actor="test", chunk_size=2)
    monkeypatch.setattr(store, "update_reorg_items", real_update)
    olds, succ = _batch_certs(app, small, o[3])
    assert sorted(c.status for c in succ) == ["failed"] * 3 + ["valid"] * 3

    real_complete = reorg._complete
    calls = []

    def die_completing(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(reorg, "_complete", die_completing)
    with pytest.raises(Killed):
        reorg.run(app.authority, batch_id, actor="test", chunk_size=2)
    monkeypatch.setattr(reorg, "_complete", real_complete)
    view = reorg.show(app.authority, batch_id)
    assert sorted(i.status for i in view.items) == ["done", "done", "issued"]

    report = reorg.run(app.authority, batch_id, actor="test", chunk_size=2)
    assert report.batch.status == "done" and report.batch.done == 3
    olds, succ = _batch_certs(app, small, o[3])
    live = [c for c in succ if c.status == "valid"]
    assert len(live) == 3 and {c.predecessor_id for c in live} == {c.id for c in olds.values()}
    assert all(c.status == "revoked" and c.revocation_reason == "affiliationChanged"
               for c in olds.values())
    assert {i.new_serial for i in reorg.show(app.authority, batch_id).items} == \
        {c.serial for c in live}
    with pytest.raises(StateConflict, match="already applied"):
        reorg.start(app.authority, text, actor="test")
    with app.readers() as s:  # the officials' records follow
        orgs = set(s.scalars(select(OfficialRecord.organization).where(
            OfficialRecord.id.in_([small.official_of[x] for x in olds]))))
    assert orgs == {"Ủy ban nhân dân phường Sài Gòn"}


# -- the big one: 2,000 certificates, 30 organizations, SIGKILL halfway ----------------------

@pytest.fixture(scope="module")
def big(app: Any, ca_name: str) -> Population:
    return populate(app.authority, ca_name, organizations=30, per_organization=2000 // 30 + 1)


def _big_mapping(pop: Population) -> str:
    """Wards merged (organization changes: affiliationChanged) for 20 organizations; the
    other 10 keep their name and move to the new city (superseded)."""
    rows = []
    for i, org in enumerate(pop.organizations):
        if i < 20:
            rows.append((org, "", "", f"Ủy ban nhân dân phường mới {i // 3 + 1} ({pop.tag})",
                         "", "Thành phố Hồ Chí Minh", "2025-07-01"))
        else:
            rows.append((org, "", pop.localities[org], "", "", "Thành phố Hồ Chí Minh",
                         "01/07/2025"))
    return mapping(rows)


def _items_done(app: Any, batch_id: int) -> int:
    with app.readers() as s:
        return int(s.scalar(select(func.count()).select_from(ReorgItemRecord).where(
            ReorgItemRecord.batch_id == batch_id, ReorgItemRecord.status == "done")) or 0)


def _batch_id_for(app: Any, digest: str) -> int | None:
    with app.readers() as s:
        found = store.reorg_batches_for_mapping(s, digest)
    return found[0].id if found else None


def test_two_thousand_certificates_killed_halfway_then_resumed(app, big, ca_name, tmp_path):
    from ocsp.refresh import Policy
    from ocsp.responder import Responder

    mapping_text = _big_mapping(big)
    old_serials = big.all_serials
    assert len(old_serials) >= 2000
    plan = reorg.dry_run(app.authority, mapping_text)
    assert len(plan.items) == len(old_serials) and not plan.warnings and not plan.notes
    expected = {i.old_serial: (i.new_subject, i.reason) for i in plan.items}
    assert {r for _, r in expected.values()} == {"affiliationChanged", "superseded"}

    # An OCSP responder process that has already answered for some of them ("good").
    responder = Responder(app.authority, Policy.from_settings(app.settings.ocsp))
    responder.cached(b"first poll")
    with app.readers() as s:
        ca_id = store.get_ca(s, ca_name).id
    probe = old_serials[::97]
    assert {st.kind for st in responder._statuses(ca_id, probe, time.time())} == {"good"}

    config = write_config(app.settings, tmp_path / "kyso.toml")
    path = tmp_path / "sap-xep-phuong.csv"
    path.write_bytes(b"\xef\xbb\xbf" + mapping_text.encode("utf-8"))  # as Excel saves "CSV UTF-8"
    digest = reorg.mapping_sha256(path.read_bytes().decode("utf-8"))
    args = [str(KYSO), "--config", str(config), "lifecycle", "reorg", str(path), "--apply",
            "--yes"]
    env = {k: v for k, v in os.environ.items() if k != "KYSO_CONFIG"}
    # Its own process group: the kill takes its lint worker processes with it, as a machine
    # losing power would.
    with open(tmp_path / "out", "wb") as out_file, open(tmp_path / "err", "wb") as err_file:
        proc = subprocess.Popen(args, stdout=out_file, stderr=err_file, env=env,
                                start_new_session=True)
    killed_at = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            batch_id = _batch_id_for(app, digest)
            if batch_id is not None:
                done = _items_done(app, batch_id)
                if done >= 300:
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed_at = done
                    break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and not killed_at:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    out, err = (tmp_path / "out").read_bytes(), (tmp_path / "err").read_bytes()
    assert killed_at, f"the batch finished before it could be killed:\n{out!r}\n{err!r}"
    assert proc.returncode == -signal.SIGKILL
    batch_id = _batch_id_for(app, digest)
    assert batch_id is not None and out.decode().startswith(f"batch {batch_id}")
    view = reorg.show(app.authority, batch_id)
    assert view.batch.status == "running" and 300 <= view.batch.done < view.batch.total

    proc2 = run_kyso(config, "lifecycle", "reorg", str(path), "--apply", "--yes")
    assert proc2.stdout.startswith(f"batch {batch_id} (resumed)")
    view = reorg.show(app.authority, batch_id)
    assert view.batch.status == "done"
    assert (view.batch.total, view.batch.done, view.batch.failed) == (len(old_serials),) * 2 + (0,)

    # Exactly one new certificate per old one, as the dry run said; every old one revoked.
    olds = certificates(app.authority, old_serials)
    succ = successors(app.authority, [c.id for c in olds.values()])
    live = [c for c in succ if c.status == "valid"]
    assert all(c.status in ("valid", "failed") for c in succ)  # failed: unsigned reservations
    by_old = {c.predecessor_id: c for c in live}
    assert len(live) == len(by_old) == len(olds)
    item_new = {i.old_serial: i.new_serial for i in view.items}
    for serial, old in olds.items():
        new = by_old[old.id]
        subject, reason = expected[serial]
        assert item_new[serial] == new.serial
        assert new.subject == subject and new.official_id == old.official_id
        assert old.status == "revoked" and old.revocation_reason == reason
        assert new.spki_sha256 == old.spki_sha256  # the same key
    sample = x509.load_der_x509_certificate(live[0].cert_der)
    assert sample.subject.get_attributes_for_oid(x509.NameOID.LOCALITY_NAME)[0].value == \
        "Thành phố Hồ Chí Minh"

    # A fresh CRL lists every old certificate with its reason.
    crl = x509.load_der_x509_crl(app.crls.generate(ca_name, actor="test")[0].der)
    reasons = {}
    for entry in crl:
        try:
            reasons[format(entry.serial_number, "x")] = entry.extensions.get_extension_for_class(
                x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reasons[format(entry.serial_number, "x")] = None
    assert {s: reasons.get(s) for s in old_serials} == {s: expected[s][1] for s in old_serials}
    assert not {c.serial for c in live} & set(reasons)

    # OCSP: the responder that held "good" hears of the change and now says revoked.
    responder._next_poll = 0
    responder.cached(b"poll")
    statuses = responder._statuses(ca_id, probe, time.time())
    assert [(st.kind, st.reason) for st in statuses] == [("revoked", expected[s][1])
                                                        for s in probe]

    # One notice per new certificate, none twice, to the official's address.
    with app.readers() as s:
        mails = s.execute(select(MailOutboxRecord.recipient, MailOutboxRecord.dedupe_key)
                          .where(MailOutboxRecord.ref == f"batch:{batch_id}")).all()
        emails = dict(s.execute(select(OfficialRecord.id, OfficialRecord.email).where(
            OfficialRecord.id.in_([c.official_id for c in live]))).all())
    assert sorted(k for _, k in mails) == sorted(f"reissued:{c.serial}" for c in live)
    assert sorted(r for r, _ in mails) == sorted(emails[c.official_id] for c in live)

    # The final report, in the CLI.
    shown = json.loads(run_kyso(config, "lifecycle", "batch", "show", str(batch_id),
                                "--json").stdout)
    assert shown["status"] == "done" and len(shown["items"]) == len(old_serials)
    assert {i["old_serial"]: i["new_serial"] for i in shown["items"]} == item_new
    listed = run_kyso(config, "lifecycle", "batch", "list").stdout
    assert f"{batch_id:>5} done" in listed
    # Audited as a batch.
    with app.readers() as s:
        actions = s.execute(text("SELECT action, outcome FROM audit_events WHERE object = "
                                 ":o ORDER BY seq"), {"o": f"batch:{batch_id}"}).all()
    assert actions[0] == ("reorg.start", "success") and actions[-1] == ("reorg.run", "success")
    assert ("reorg.run", "started") in actions


def test_cli_progress_and_rekey_refusal_paths(app, ca_name, tmp_path):
    pop = populate(app.authority, ca_name, organizations=1, per_organization=3)
    org = pop.organizations[0]
    config = write_config(app.settings, tmp_path / "kyso.toml")
    path = tmp_path / "one.csv"
    path.write_text(mapping([(org, "", "", "", "Văn phòng HĐND và UBND", "", TODAY)]),
                    encoding="utf-8")
    dry = run_kyso(config, "lifecycle", "reorg", str(path))  # --dry-run is the default
    assert dry.stdout.count("→ CN=") == 3 and "superseded" in dry.stdout
    assert "3 certificate(s) would be reissued" in dry.stderr
    env = {k: v for k, v in os.environ.items() if k != "KYSO_CONFIG"}
    declined = subprocess.run([str(KYSO), "--config", str(config), "lifecycle", "reorg",
                               str(path), "--apply"], input="n\n", capture_output=True,
                              encoding="utf-8", env=env, timeout=120)
    assert declined.returncode == 1 and "Reissue 3 certificate(s)" in declined.stderr
    assert _batch_id_for(app, reorg.mapping_sha256(path.read_text(encoding="utf-8"))) is None
    applied = run_kyso(config, "lifecycle", "reorg", str(path), "--apply", "--yes")
    assert applied.stdout.startswith("batch ") and ": done; 3 certificate(s)" in applied.stdout
    again = run_kyso(config, "lifecycle", "reorg", str(path), "--apply", "--yes", expect=1)
    assert "already applied" in again.stderr
    run_kyso(config, "lifecycle", "reorg", str(path), "--rekey", expect=2)  # usage error


def test_rekey_waits_for_each_officials_pin(app, ca_name, tmp_path):
    """--rekey: nothing is issued until the official gives their PIN (their key is sealed
    under it); then a new HSM key, a certificate for it, the old one revoked."""
    from ca.errors import PinIncorrect

    a = app.authority
    org = f"Ủy ban nhân dân xã Thạnh An ({uuid.uuid4().hex[:6]})"
    people = [a.add_official(name=name, organization=org, email=f"{uuid.uuid4().hex[:6]}"
                             "@thanhan.hochiminhcity.gov.vn", pin=pin, ca_name=ca_name,
                             locality="Huyện Cần Giờ")
              for name, pin in (("Phan Thị Thu", "Thu-pin-2468"),
                                ("Đỗ Văn Hải", "Hai-pin-1357"))]
    text = mapping([(org, "", "Huyện Cần Giờ", "", "", "Thành phố Hồ Chí Minh", TODAY)])
    before = _count_certs(app)
    batch_id = reorg.start(a, text, rekey=True, actor="test")
    report = reorg.run(a, batch_id, actor="test")
    assert report.batch.status == "waiting" and report.done_now == 0
    assert _count_certs(app) == before  # nothing issued without the PINs
    first, second = people
    with pytest.raises(PinIncorrect):
        reorg.complete_rekey(a, batch_id, first.official_id, "wrong-pin-000", actor="test")
    assert _count_certs(app) == before
    (new_serial,) = reorg.complete_rekey(a, batch_id, first.official_id, "Thu-pin-2468",
                                         actor="official")
    old = a.certificate(first.certificate.serial)
    new = a.certificate(new_serial)
    assert old.status == "revoked" and old.revocation_reason == "superseded"
    assert new.predecessor_id == old.id and new.spki_sha256 != old.spki_sha256
    with app.readers() as s:
        assert store.active_official_key(s, first.official_id).id == new.official_key_id
    assert reorg.show(a, batch_id).batch.status == "waiting"
    with pytest.raises(NotFound):  # already done
        reorg.complete_rekey(a, batch_id, first.official_id, "Thu-pin-2468", actor="test")
    # The same with the CLI, the PIN from a file.
    config = write_config(app.settings, tmp_path / "kyso.toml")
    pin_file = tmp_path / "pin"
    pin_file.write_text("Hai-pin-1357\n", encoding="utf-8")
    proc = run_kyso(config, "lifecycle", "batch", "rekey", str(batch_id), "--official",
                    str(second.official_id), "--pin-file", str(pin_file))
    assert len(proc.stdout.split()) == 1
    view = reorg.show(a, batch_id)
    assert view.batch.status == "done" and view.batch.done == 2
    # The official's key that signs from now on is the new certificate's.
    from ca.issuance import spki_sha256

    new_second = a.certificate(view.items[-1].new_serial if view.items[-1].official_id ==
                               second.official_id else view.items[0].new_serial)
    with a.official_signing_key(second.official_id, "Hai-pin-1357") as key:
        assert spki_sha256(key.public_key()) == new_second.spki_sha256


def test_cli_names_a_file_that_is_not_utf8(app, tmp_path):
    config = write_config(app.settings, tmp_path / "kyso.toml")
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(reorg.HEADER).encode() + b"\nPh\xfa\xf4ng A,,,B,,,2025-07-01\n")
    proc = run_kyso(config, "lifecycle", "reorg", str(path), expect=3)
    assert "error: row 2: not UTF-8 text" in proc.stderr


def test_two_starts_of_one_mapping_at_once_make_one_batch(app, ca_name, monkeypatch):
    """Two operators apply the same mapping at the same moment (console and CLI): one batch,
    whose id both get -- never two batches reissuing the same certificates."""
    import threading

    pop = populate(app.authority, ca_name, organizations=1, per_organization=3)
    text = mapping([(pop.organizations[0], "", "", "", "Phòng Nội vụ", "", TODAY)])
    meet = threading.Barrier(2, timeout=3)
    real_check = store.open_reorg_items_for

    def checked_together(session, serials, **kwargs):  # type: ignore[no-untyped-def]
        found = real_check(session, serials, **kwargs)
        meet_here(meet)  # both starts past their checks before either writes, if they can be
        return found

    monkeypatch.setattr(store, "open_reorg_items_for", checked_together)
    ids, errors = at_once(lambda: reorg.start(app.authority, text, actor="test"), meet)
    assert not errors, errors
    with app.readers() as s:
        batches = store.reorg_batches_for_mapping(s, reorg.mapping_sha256(text))
    assert len(batches) == 1 and ids == [batches[0].id] * 2
    assert reorg.show(app.authority, batches[0].id).batch.total == 3


def test_failed_certificates_are_retried_once_the_cause_is_fixed(app, ca_name, tmp_path):
    a = app.authority
    pop = populate(a, ca_name, organizations=1, per_organization=3)
    text = mapping([(pop.organizations[0], "", "", "", "Phòng Nội vụ", "", TODAY)])
    batch_id = reorg.start(a, text, actor="test")
    held = pop.serials[pop.organizations[0]][0]
    a.hold(held, actor="test")  # suspended after the plan: this one cannot be reissued
    report = reorg.run(a, batch_id, actor="test")
    assert report.batch.status == "done" and report.batch.failed == 1
    [failed] = [i for i in reorg.show(a, batch_id).items if i.status == "failed"]
    assert failed.old_serial == held and "hold" in (failed.error or "")
    with pytest.raises(StateConflict, match="already applied"):  # the mapping is done
        reorg.start(a, text, actor="test")

    a.release(held, actor="test")
    config = write_config(app.settings, tmp_path / "kyso.toml")
    proc = run_kyso(config, "lifecycle", "batch", "retry", str(batch_id), "--json")
    view = json.loads(proc.stdout)
    assert view["status"] == "done" and view["done"] == 3 and view["failed"] == 0
    [item] = [i for i in view["items"] if i["old_serial"] == held]
    assert item["status"] == "done" and item["error"] is None
    [new] = successors(a, [a.certificate(held).id])
    assert new.serial == item["new_serial"] and new.status == "valid"
    assert "OU=Phòng Nội vụ" in new.subject
    assert a.certificate(held).status == "revoked"
    with app.readers() as s:  # one notice per certificate, the retried one included
        notices = s.scalars(select(MailOutboxRecord).where(
            MailOutboxRecord.ref == f"batch:{batch_id}")).all()
    assert len(notices) == 3
    again = run_kyso(config, "lifecycle", "batch", "retry", str(batch_id), expect=1)
    assert "no failed certificate to retry" in again.stderr


def test_a_batch_runs_in_one_process_at_a_time(app, ca_name):
    import socket

    pop = populate(app.authority, ca_name, organizations=1, per_organization=2)
    text = mapping([(pop.organizations[0], "", "", "", "Phòng Nội vụ", "", TODAY)])
    batch_id = reorg.start(app.authority, text, actor="test")
    host = socket.gethostname()

    def runner(pid: int) -> None:
        with app.sessions.begin() as s:
            b = store.get_reorg_batch(s, batch_id, for_update=True)
            b.status, b.runner, b.heartbeat_at = "running", f"{host}:{pid}:x", datetime.now(UTC)

    runner(os.getpid())  # alive (here: another thread of this process)
    with pytest.raises(StateConflict, match="being run by another process"):
        reorg.run(app.authority, batch_id, actor="test")
    gone = subprocess.Popen(["true"])
    gone.wait()
    runner(gone.pid)  # that process is dead: its batch is taken over
    assert reorg.run(app.authority, batch_id, actor="test").batch.status == "done"


def test_an_interrupted_rekey_is_completed_without_a_second_key(app, ca_name, monkeypatch):
    from ca.models import OfficialKeyRecord

    a = app.authority
    org = f"Ủy ban nhân dân xã An Thới Đông ({uuid.uuid4().hex[:6]})"
    person = a.add_official(name="Lý Thị Mai", organization=org, pin="Mai-pin-8642",
                            email=f"mai.{uuid.uuid4().hex[:6]}@hochiminhcity.gov.vn",
                            ca_name=ca_name, unit="Văn phòng")
    batch_id = reorg.start(a, mapping([(org, "Văn phòng", "", "", "Văn phòng HĐND-UBND", "",
                                        TODAY)]), rekey=True, actor="test")

    class Killed(BaseException):
        pass

    real_update = store.update_reorg_items

    def die_recording(session, changes):  # type: ignore[no-untyped-def]
        raise Killed

    monkeypatch.setattr(store, "update_reorg_items", die_recording)
    with pytest.raises(Killed):
        reorg.complete_rekey(a, batch_id, person.official_id, "Mai-pin-8642", actor="test")
    monkeypatch.setattr(store, "update_reorg_items", real_update)
    (new_serial,) = reorg.complete_rekey(a, batch_id, person.official_id, "Mai-pin-8642",
                                         actor="test")
    with app.readers() as s:
        keys = s.scalars(select(OfficialKeyRecord).where(
            OfficialKeyRecord.official_id == person.official_id)
            .order_by(OfficialKeyRecord.id)).all()
        new = store.get_certificate(s, new_serial)
        successors_ = store.certificate_successors(s, a.certificate(
            person.certificate.serial).id)
    assert [k.status for k in keys] == ["retired", "active"]  # one new key, now in use
    assert new.official_key_id == keys[1].id and len(successors_) == 1
    assert a.certificate(person.certificate.serial).status == "revoked"
    assert reorg.show(a, batch_id).batch.status == "done"


def test_renamed_organization_is_found_by_the_console_search_without_tones(app, ca_name):
    a = app.authority
    pop = populate(a, ca_name, organizations=1, per_organization=2)
    [old_org] = pop.organizations
    new_org = f"Ủy ban nhân dân phường Đa Kao {pop.tag}"
    batch_id = reorg.start(a, mapping([(old_org, "", "", new_org, "", "", TODAY)]), actor="test")
    assert reorg.run(a, batch_id, actor="test").batch.done == 2
    now = datetime.now(UTC)
    typed = f"uy ban nhan dan PHUONG DA KAO {pop.tag}"
    with app.readers() as s:
        officials, total = store.search_officials(s, organization=typed)
        assert total == 2 and {o.organization for o in officials} == {new_org}
        certs, total = store.search_certificates(s, now=now, organization=typed)
        new_serials = {i.new_serial for i in reorg.show(a, batch_id).items}
        assert total == 2 and {c.serial for c in certs} == new_serials
        assert store.search_officials(s, organization=old_org)[1] == 0
