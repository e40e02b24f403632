"""The audit log's hash chain and HSM seals: any row edited, deleted, inserted or reordered with
plain SQL is found and named by `verify`; appends fail closed; the seal policy; the migration
chains entries written before it.

Tampering runs inside a transaction that is rolled back afterwards, on a database of this
module's own (SQLite, or a PostgreSQL schema when KYSO_TEST_DATABASE_URL is set).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from hsm_test_constants import MAIN_LABEL
from hsm_test_constants import USER_PIN as HSM_USER_PIN
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from ca import audit
from ca.db import alembic_config, make_engine, make_session_factory, migrate
from ca.errors import CAError
from hsm import Token, TokenUnavailable

AUDIT_KEY = "kyso-audit-test"


# -- databases and the signer ----------------------------------------------------------------

def _pg_url(base: str, schema: str) -> str:
    from sqlalchemy import create_engine

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}"


def fresh_url(directory: Path, name: str) -> str:
    base = os.environ.get("KYSO_TEST_DATABASE_URL")
    return _pg_url(base, name) if base else f"sqlite:///{directory / (name + '.db')}"


@pytest.fixture(scope="module")
def signer(ca_softhsm) -> Iterator[audit.AuditSigner]:  # type: ignore[no-untyped-def]
    # The hsm tests' main token (it may hold extra keys; the CA token's keys are counted).
    token = Token(ca_softhsm.module, MAIN_LABEL, HSM_USER_PIN, pool_size=2)
    yield audit.AuditSigner(token, AUDIT_KEY)
    token.close()


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, signer: audit.AuditSigner) -> Iterator[dict]:
    """A chain of 6 events, a seal, 4 more events."""
    url = fresh_url(tmp_path_factory.mktemp("audit"), "kyso_audit_lib")
    migrate(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    t0 = datetime(2026, 11, 20, 8, 0, 0, 123456, tzinfo=UTC)
    for i in range(1, 7):
        with sessions.begin() as s:
            audit.record(s, actor=f"op{i % 2}", action=f"test.step{i}", obj=f"thing:{i}",
                         details={"i": i, "tên": "Nguyễn"}, request_id=f"req-{i}",
                         clock=lambda i=i: t0 + timedelta(minutes=i))
    with sessions.begin() as s:
        sealed = audit.seal(s, signer, "manual")
    for i in range(7, 11):
        with sessions.begin() as s:
            audit.record(s, actor="op", action=f"test.step{i}", obj=f"thing:{i}",
                         outcome="failure" if i == 9 else "success",
                         clock=lambda i=i: t0 + timedelta(minutes=i))
    with sessions.begin() as s:
        head = audit.current_head(s)
    yield {"engine": engine, "sessions": sessions, "seal_seq": sealed.seq, "head": head,
           "url": url}
    engine.dispose()


def check(conn: Connection | Session, signer: audit.AuditSigner) -> audit.VerifyReport:
    return audit.verify(conn, signer.public_key_for_label)


class Tamper:
    """Plain SQL on the audit tables in a transaction that is rolled back afterwards."""

    def __init__(self, engine: Engine) -> None:
        self.conn = engine.connect()
        self.trans = self.conn.begin()

    def sql(self, statement: str, **params: object) -> None:
        self.conn.execute(text(statement), params)

    def row(self, seq: int) -> dict:
        table = audit._AUDIT  # typed: `at` comes back as an aware datetime on SQLite too
        return dict(self.conn.execute(table.select().where(table.c.seq == seq))
                    .mappings().one())

    def close(self) -> None:
        self.trans.rollback()
        self.conn.close()


@pytest.fixture()
def tamper(db) -> Iterator[Tamper]:  # type: ignore[no-untyped-def]
    t = Tamper(db["engine"])
    yield t
    t.close()


def _positions(db: dict) -> list[int]:
    return list(range(1, db["head"].seq + 1))


# -- an intact chain ---------------------------------------------------------------------------

def test_intact_chain_verifies_with_its_seal(db, signer):
    with db["sessions"]() as s:
        report = check(s, signer)
    assert report.ok, report.problems
    assert report.entries == db["head"].seq >= 12
    assert report.seals == 1 and report.last_sealed_seq == db["seal_seq"]
    assert report.unsealed == db["head"].seq - db["seal_seq"] == 4
    with db["sessions"]() as s:
        rows = audit.events(s)
    assert [r["seq"] for r in rows] == _positions(db)
    first = rows[0]
    # Stored and read back exactly: microseconds, UTC, unicode details, request id.
    assert first["at"] == "2026-11-20T08:01:00.123456Z"
    assert first["details"] == {"i": 1, "tên": "Nguyễn"} and first["request_id"] == "req-1"
    seal_event = next(r for r in rows if r["seq"] == db["seal_seq"])
    assert seal_event["action"] == "audit.seal"
    assert seal_event["details"] == {"key_label": AUDIT_KEY, "reason": "manual"}


def test_the_chain_links_every_entry_to_the_previous_one(db):
    with db["engine"].connect() as conn:
        rows = conn.execute(text("SELECT seq, prev_hash, hash FROM audit_events ORDER BY seq"))
        prev = audit.GENESIS_HASH
        for seq, prev_hash, digest in rows:
            assert prev_hash == prev, seq
            prev = digest
        head = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
    assert tuple(head) == (db["head"].seq, prev)


def test_a_time_zone_other_than_utc_round_trips(tmp_path, signer):
    url = fresh_url(tmp_path, "kyso_audit_tz")
    migrate(url)
    engine = make_engine(url)
    try:
        sessions = make_session_factory(engine)
        hanoi = timezone(timedelta(hours=7))
        with sessions.begin() as s:
            audit.record(s, actor="a", action="x", obj="o",
                         clock=lambda: datetime(2026, 1, 1, 6, 30, 0, 1, tzinfo=hanoi))
        with sessions() as s:
            assert check(s, signer).ok
            assert audit.events(s)[0]["at"] == "2025-12-31T23:30:00.000001Z"
    finally:
        engine.dispose()


# -- tampering, row by row ----------------------------------------------------------------------

def _first(report: audit.VerifyReport) -> audit.Problem:
    assert not report.ok
    first = report.first
    assert first is not None
    return first


def test_every_row_edited_is_named(db, signer):
    for seq in _positions(db):
        t = Tamper(db["engine"])
        try:
            original = t.row(seq)
            t.sql("UPDATE audit_events SET outcome = 'success', actor = 'mallory', "
                  "details = NULL WHERE seq = :s", s=seq)
            first = _first(check(t.conn, signer))
            assert (first.seq, first.kind) == (seq, "edited"), (seq, first)
            assert first.action == original["action"] and first.object == original["object"]
            assert f"#{seq} ({original['action']} {original['object']})" in first.message
        finally:
            t.close()


def test_every_row_deleted_is_named(db, signer):
    for seq in _positions(db):
        t = Tamper(db["engine"])
        try:
            t.sql("DELETE FROM audit_events WHERE seq = :s", s=seq)
            first = _first(check(t.conn, signer))
            assert (first.seq, first.kind) == (seq, "deleted"), (seq, first)
            assert f"#{seq}" in first.message and "deleted" in first.message
        finally:
            t.close()


def _swap(t: Tamper, a: int, b: int) -> None:
    t.sql("UPDATE audit_events SET seq = -1 WHERE seq = :a", a=a)
    t.sql("UPDATE audit_events SET seq = :a WHERE seq = :b", a=a, b=b)
    t.sql("UPDATE audit_events SET seq = :b WHERE seq = -1", b=b)


def test_every_pair_of_neighbours_reordered_is_named(db, signer):
    for seq in _positions(db)[:-1]:
        t = Tamper(db["engine"])
        try:
            moved = t.row(seq + 1)
            _swap(t, seq, seq + 1)
            first = _first(check(t.conn, signer))
            assert (first.seq, first.kind) == (seq, "reordered"), (seq, first)
            assert first.action == moved["action"] and first.object == moved["object"]
            assert f"written as entry #{seq + 1}" in first.message
        finally:
            t.close()


def test_rows_far_apart_swapped(tamper, db, signer):
    moved = tamper.row(11)
    _swap(tamper, 2, 11)
    first = _first(check(tamper.conn, signer))
    assert (first.seq, first.kind, first.object) == (2, "reordered", moved["object"])
    assert "written as entry #11" in first.message


def test_an_edit_with_a_recomputed_hash_names_the_edited_entry(db, signer):
    for seq in _positions(db):
        t = Tamper(db["engine"])
        try:
            row = t.row(seq)
            row["object"] = "thing:forged"
            digest = audit.chain_hash(seq, row["prev_hash"], row)
            t.sql("UPDATE audit_events SET object = 'thing:forged', hash = :h WHERE seq = :s",
                  h=digest, s=seq)
            first = _first(check(t.conn, signer))
            assert (first.seq, first.kind) == (seq, "edited"), (seq, first)
            assert first.object == "thing:forged"
        finally:
            t.close()


def _rewrite_from(t: Tamper, start: int, head_seq: int) -> None:
    """What someone who knows the encoding could do: edit an entry, re-chain the rest and
    move the head -- everything consistent except the HSM's seal."""
    prev = t.row(start - 1)["hash"] if start > 1 else audit.GENESIS_HASH
    for seq in range(start, head_seq + 1):
        row = t.row(seq)
        if seq == start:
            row["actor"] = "mallory"
        digest = audit.chain_hash(seq, prev, row)
        t.sql("UPDATE audit_events SET actor = :a, prev_hash = :p, hash = :h WHERE seq = :s",
              a=row["actor"], p=prev, h=digest, s=seq)
        prev = digest
    t.sql("UPDATE audit_head SET hash = :h", h=prev)


def test_a_rewritten_chain_is_caught_by_the_seal(db, signer):
    for start in range(1, db["seal_seq"] + 1):
        t = Tamper(db["engine"])
        try:
            _rewrite_from(t, start, db["head"].seq)
            report = check(t.conn, signer)
            first = _first(report)
            assert (first.seq, first.kind) == (db["seal_seq"], "rewritten"), (start, first)
            assert f"entries #1 to #{db['seal_seq']} were rewritten" in first.message
        finally:
            t.close()


def test_a_rewrite_after_the_last_seal_is_not_seen(tamper, db, signer):
    """The documented limit: entries after the newest seal can be rewritten consistently."""
    _rewrite_from(tamper, db["seal_seq"] + 1, db["head"].seq)
    report = check(tamper.conn, signer)
    assert report.ok and report.unsealed == 4


def test_an_entry_slipped_in_is_named(tamper, db, signer):
    at = 4
    # Make room (two steps: the unique seq must hold after each statement on PostgreSQL).
    tamper.sql("UPDATE audit_events SET seq = -(seq + 1) WHERE seq >= :s", s=at)
    tamper.sql("UPDATE audit_events SET seq = -seq WHERE seq < 0")
    prev = tamper.row(at - 1)["hash"]
    forged = {"at": datetime(2026, 11, 20, 8, 3, 30, tzinfo=UTC), "actor": "mallory",
              "action": "certificate.revoke", "object": "cert:00ff", "outcome": "success",
              "request_id": None, "details": None}
    tamper.conn.execute(
        audit._AUDIT.insert(),
        [{**forged, "seq": at, "prev_hash": prev,
          "hash": audit.chain_hash(at, prev, forged)}],
    )
    first = _first(check(tamper.conn, signer))
    assert (first.seq, first.kind, first.object) == (at, "inserted", "cert:00ff")


def test_a_row_added_after_the_head_is_named(tamper, db, signer):
    head = db["head"]
    forged = {"at": datetime(2026, 11, 21, tzinfo=UTC), "actor": "mallory",
              "action": "certificate.hold", "object": "cert:00aa", "outcome": "success",
              "request_id": None, "details": None}
    tamper.conn.execute(audit._AUDIT.insert(), [
        {**forged, "seq": head.seq + 1, "prev_hash": head.hash,
         "hash": audit.chain_hash(head.seq + 1, head.hash, forged)}])
    first = _first(check(tamper.conn, signer))
    assert (first.seq, first.kind, first.object) == (head.seq + 1, "inserted", "cert:00aa")


def test_the_tail_deleted_is_named(tamper, db, signer):
    tamper.sql("DELETE FROM audit_events WHERE seq >= 9")
    first = _first(check(tamper.conn, signer))
    assert (first.seq, first.kind) == (9, "deleted")
    assert f"#9 to #{db['head'].seq}" in first.message and "end of the log" in first.message


def test_an_altered_or_deleted_seal_is_named(db, signer):
    seal_seq = db["seal_seq"]
    cases = {
        "UPDATE audit_seals SET reason = 'interval'": "bad signature",
        "UPDATE audit_seals SET signature = public_key_der": "bad signature",
        "UPDATE audit_seals SET key_label = 'no-such-key'": "does not hold",
        "UPDATE audit_seals SET algorithm = 'md5'": "unknown algorithm",
        "DELETE FROM audit_seals": "was deleted from audit_seals",
    }
    for statement, words in cases.items():
        t = Tamper(db["engine"])
        try:
            t.sql(statement)
            first = _first(check(t.conn, signer))
            assert (first.seq, first.kind) == (seal_seq, "seal"), (statement, first)
            assert words in first.message, (statement, first.message)
        finally:
            t.close()


def test_a_seal_whose_public_key_is_not_the_hsm_key(tamper, db, signer):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    tamper.conn.execute(text("UPDATE audit_seals SET public_key_der = :k"), {"k": other})
    first = _first(check(tamper.conn, signer))
    assert first.kind == "seal" and "not the HSM's key" in first.message


def test_a_deleted_head_is_found_and_appends_fail_closed(tamper, signer):
    tamper.sql("DELETE FROM audit_head")
    assert _first(check(tamper.conn, signer)).kind == "head"
    with pytest.raises(audit.AuditError, match="no head row"):
        audit.record(tamper.conn, actor="a", action="x", obj="o")


# -- concurrency, sealing policy ---------------------------------------------------------------

@pytest.fixture()
def scratch(tmp_path) -> Iterator[sessionmaker[Session]]:
    url = fresh_url(tmp_path, "kyso_audit_scratch")
    migrate(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    audit.set_seal_policy(engine, None)
    engine.dispose()


def test_concurrent_writers_get_one_unbroken_chain(scratch, signer):
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(15):
                with scratch.begin() as s:
                    audit.record(s, actor=f"w{n}", action="test.concurrent", obj=f"{n}:{i}")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with scratch() as s:
        report = check(s, signer)
        head = audit.current_head(s)
    assert report.ok and report.entries == 60 and report.head == head == audit.Head(
        60, head.hash)


def test_maybe_seal_by_entries_and_by_time(scratch, signer):
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with scratch.begin() as s:
        for i in range(2):
            audit.record(s, actor="a", action="x", obj=str(i), clock=lambda: now)
        assert audit.maybe_seal(s, signer, 3, 0, clock=lambda: now) is None
        audit.record(s, actor="a", action="x", obj="2", clock=lambda: now)
        sealed = audit.maybe_seal(s, signer, 3, 0, clock=lambda: now)
        assert sealed is not None and sealed.reason == "interval"
        assert sealed.seq == audit.current_head(s).seq  # the seal covers its own event
        # Nothing new since the seal: never due, however late.
        later = now + timedelta(days=1)
        assert audit.maybe_seal(s, signer, 3, 60, clock=lambda: later) is None
        audit.record(s, actor="a", action="x", obj="3", clock=lambda: later)
        assert audit.maybe_seal(s, signer, 3, 3600, clock=lambda: later) is not None
    with scratch() as s:
        report = check(s, signer)
    assert report.ok and report.seals == 2 and report.unsealed == 0


def test_the_engine_policy_seals_after_appends(scratch, signer):
    audit.set_seal_policy(scratch.kw["bind"], audit.SealPolicy(signer, every_entries=4,
                                                                every_seconds=0))
    for i in range(8):
        with scratch.begin() as s:
            audit.record(s, actor="a", action="x", obj=str(i))
    with scratch() as s:
        report = check(s, signer)
        seals = s.execute(text("SELECT seq, reason FROM audit_seals ORDER BY seq")).all()
    # 4 entries -> seal event #5 sealed; #6..#9 -> 4 more since #5 -> seal event #10.
    assert [tuple(r) for r in seals] == [(5, "interval"), (10, "interval")]
    assert report.ok and report.seals == 2


def test_a_seal_that_fails_does_not_stop_the_act(scratch, caplog):
    def no_token() -> Token:
        raise TokenUnavailable("the HSM is unplugged")

    broken = audit.AuditSigner(no_token, AUDIT_KEY)
    audit.set_seal_policy(scratch.kw["bind"], audit.SealPolicy(broken, every_entries=1,
                                                                every_seconds=0))
    with caplog.at_level(logging.WARNING, logger="kyso.audit"), scratch.begin() as s:
        audit.record(s, actor="a", action="x", obj="kept")
    assert "not sealed" in caplog.text and "unplugged" in caplog.text
    with scratch() as s:
        assert [e["object"] for e in audit.events(s)] == ["kept"]  # no half-made seal event
        assert s.execute(text("SELECT COUNT(*) FROM audit_seals")).scalar_one() == 0
    with pytest.raises(TokenUnavailable), scratch.begin() as s:  # an explicit seal raises
        audit.seal(s, broken)


def test_events_filters(db):
    with db["sessions"]() as s:
        assert [e["seq"] for e in audit.events(s, action="test.step3")] == [3]
        assert [e["object"] for e in audit.events(s, action="test.step1*")] == \
            ["thing:1", "thing:10"]
        assert {e["actor"] for e in audit.events(s, actor="op1")} == {"op1"}
        assert [e["object"] for e in audit.events(s, obj="thing:7")] == ["thing:7"]
        since = datetime(2026, 11, 20, 8, 9, tzinfo=UTC)
        assert [e["object"] for e in audit.events(s, since=since, action="test.*")] == \
            ["thing:9", "thing:10"]
        assert [e["seq"] for e in audit.events(s, limit=2)] == \
            [db["head"].seq - 1, db["head"].seq]


# -- the real authority ------------------------------------------------------------------------

def test_what_the_authority_wrote_verifies(kyso_app, authority):
    from helpers import issue_official_csr

    issued = issue_official_csr(authority)
    authority.revoke(issued.serial, "superseded")
    with kyso_app.readers() as s:
        report = audit.verify(s, kyso_app.audit_signer.public_key_for_label)
        mine = audit.events(s, obj=f"cert:{issued.serial}")
    assert report.ok, report.problems
    assert [(e["action"], e["outcome"]) for e in mine] == [
        ("certificate.issue", "approved"), ("certificate.revoke", "success")]
    assert mine[1]["seq"] > mine[0]["seq"]


def _refuse_audit_inserts(engine: Engine) -> list[str]:
    if engine.dialect.name == "sqlite":
        return ["CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                "BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END"]
    return ["CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'audit store refuses writes'; END $$ LANGUAGE plpgsql",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
            "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"]


def _allow_audit_inserts(engine: Engine) -> list[str]:
    if engine.dialect.name == "sqlite":
        return ["DROP TRIGGER IF EXISTS refuse_audit"]
    return ["DROP TRIGGER IF EXISTS refuse_audit ON audit_events",
            "DROP FUNCTION IF EXISTS refuse_audit()"]


def test_no_audit_entry_no_act(kyso_app, authority, counts):
    from helpers import issue_official_csr, make_csr

    issued = issue_official_csr(authority)
    engine = kyso_app.engine
    with engine.begin() as conn:
        for statement in _refuse_audit_inserts(engine):
            conn.execute(text(statement))
    try:
        before = counts()
        with pytest.raises(CAError, match="cannot write the audit log.*not performed"):
            authority.revoke(issued.serial, "keyCompromise")
        assert authority.certificate(issued.serial).status == "valid"
        request = authority.request_from_csr("tls-server", make_csr(), "CN=audit.example.vn",
                                             dns_names=("audit.example.vn",))
        with pytest.raises(audit.AuditError):
            authority.issue("issuing", request)
        assert counts() == before  # no reservation, no certificate
    finally:
        with engine.begin() as conn:
            for statement in _allow_audit_inserts(engine):
                conn.execute(text(statement))
    assert authority.revoke(issued.serial, "keyCompromise").status == "revoked"


# -- the migration ------------------------------------------------------------------------------

def test_the_migration_chains_entries_written_before_it(tmp_path, signer):
    url = fresh_url(tmp_path, "kyso_audit_mig")
    cfg = alembic_config(url)
    command.upgrade(cfg, "0001")
    engine = create_engine(url) if url.startswith("postgresql") else make_engine(url)
    try:
        old = sessionmaker(engine)
        from sqlalchemy import column, table

        from ca.models import UTCDateTime

        legacy = table("audit_events", column("at", UTCDateTime()), column("actor"),
                       column("action"), column("object"), column("outcome"),
                       column("details"))
        with old.begin() as s:
            s.execute(legacy.insert(), [
                {"at": datetime(2026, 1, 1, 0, 0, i, 500 * i, tzinfo=UTC), "actor": "old",
                 "action": "ca.create", "object": f"ca:{i}", "outcome": "success",
                 "details": f'{{"n": {i}}}'} for i in range(5)])
        command.upgrade(cfg, "head")
        with old() as s:
            report = check(s, signer)
            assert report.ok and report.entries == 5
            assert audit.current_head(s).seq == 5
            assert [e["object"] for e in audit.events(s)] == [f"ca:{i}" for i in range(5)]
        with old.begin() as s:  # and the chain goes on from there
            assert audit.record(s, actor="new", action="x", obj="o").seq == 6
        with old() as s:
            assert check(s, signer).ok
    finally:
        engine.dispose()


def test_audit_settings(tmp_path):
    from kyso.settings import SettingsError, load_settings

    config = tmp_path / "kyso.toml"
    config.write_text('[audit]\nseal_every_entries = 50\nkey_label = "city-audit"\n')
    settings = load_settings(config, environ={"KYSO_AUDIT_SEAL_EVERY_SECONDS": "600"})
    assert (settings.audit.seal_every_entries, settings.audit.seal_every_seconds,
            settings.audit.key_label) == (50, 600, "city-audit")
    for bad, words in (("seal_every_entries = -1", "0 or more"),
                       ("seal_every_seconds = 'hourly'", "whole number"),
                       ("colour = 1", "unknown setting audit.colour")):
        config.write_text(f"[audit]\n{bad}\n")
        with pytest.raises(SettingsError, match=words):
            load_settings(config, environ={})
