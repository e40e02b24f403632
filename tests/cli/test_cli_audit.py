"""`kyso audit` run as an operator would: verify, show, seal; rows of the audit table edited,
deleted or reordered straight in the database (plain SQL, not through kyso) are named by
`kyso audit verify`; and an act whose audit entry cannot be written does not happen."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_support import KysoData, new_data_dir
from sqlalchemy import Connection, create_engine, text

SCHEMA = "kyso_cli_audit"
TLS_SUBJECT = "CN=audit.hochiminhcity.gov.vn,O=Trung tâm Chuyển đổi số,C=VN"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> KysoData:
    return new_data_dir(tmp_path_factory.mktemp("kyso-cli-audit"), SCHEMA)


@contextmanager
def database(data: KysoData) -> Iterator[Connection]:
    """The database itself, not kyso: one committed transaction."""
    url = data.database_url or f"sqlite:///{data.data_dir / 'kyso.db'}"
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            yield conn
    finally:
        engine.dispose()


def issue(data: KysoData, tmp_path: Path) -> str:
    import subprocess

    csr = tmp_path / "tls.csr"
    proc = subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                           "ec_paramgen_curve:P-256", "-nodes", "-keyout", tmp_path / "tls.key",
                           "-out", csr, "-subj", "/CN=ignored"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = data.run("cert", "issue", "--ca", "issuing", "--profile", "tls-server", "--csr", csr,
                   "--subject", TLS_SUBJECT, "--dns", "audit.hochiminhcity.gov.vn").stdout
    match = re.search(r"^serial: ([0-9a-f]+)$", out, re.MULTILINE)
    assert match, out
    return match.group(1)


def entries(data: KysoData, *args: str) -> list[dict]:
    return data.run("audit", "show", "--json", *args).json()  # type: ignore[return-value]


def head_seq(data: KysoData) -> int:
    with database(data) as conn:
        return conn.execute(text("SELECT seq FROM audit_head")).scalar_one()


def assert_intact(data: KysoData) -> str:
    result = data.run("audit", "verify")
    assert result.stdout.startswith("audit log intact:"), result.output
    return result.stdout


def verify_fails(data: KysoData) -> str:
    result = data.fail("audit", "verify")
    assert "audit log tampered with" in result.stderr, result.output
    return result.stderr


def test_a_fresh_log_verifies_and_seals(data: KysoData) -> None:
    before = assert_intact(data)
    assert f"head #{head_seq(data)} " in before
    result = data.run("audit", "seal")
    match = re.search(r"^sealed entry #(\d+) ([0-9a-f]{64}) with HSM key kyso-audit$",
                      result.stdout, re.MULTILINE)
    assert match, result.output
    seq = int(match.group(1))
    assert seq == head_seq(data)
    after = assert_intact(data)
    assert f"sealed up to #{seq}, 0 after the last seal" in after
    (event,) = entries(data, "--action", "audit.seal", "--limit", "1")
    assert event["seq"] == seq and event["details"]["reason"] == "manual"
    assert "Private Key Object" in data.token_objects() and "kyso-audit" in data.token_objects()


def test_show_filters(data: KysoData, tmp_path: Path) -> None:
    serial = issue(data, tmp_path)
    data.run("cert", "revoke", serial, "--reason", "superseded")
    mine = entries(data, "--object", f"cert:{serial}")
    assert [(e["action"], e["outcome"]) for e in mine] == [
        ("certificate.issue", "approved"), ("certificate.revoke", "success")]
    assert mine[1]["details"] == {"reason": "superseded"}
    revokes = entries(data, "--action", "certificate.revoke")
    assert revokes and all(e["action"] == "certificate.revoke" for e in revokes)
    assert {e["action"] for e in entries(data, "--action", "certificate.*")} == {
        "certificate.issue", "certificate.revoke"}
    assert all(e["actor"] == "operator" for e in entries(data, "--actor", "operator"))
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    assert entries(data, "--since", tomorrow) == []
    everything = entries(data)
    assert entries(data, "--since", yesterday, "--until", tomorrow) == everything
    assert entries(data, "--until", yesterday) == []
    assert [e["seq"] for e in everything] == list(range(1, head_seq(data) + 1))
    assert entries(data, "--limit", "2") == everything[-2:]
    text_out = data.run("audit", "show", "--object", f"cert:{serial}").stdout
    assert "certificate.revoke" in text_out and serial in text_out
    bad = data.fail("audit", "show", "--since", "last tuesday")
    assert "--since 'last tuesday' is not an ISO 8601" in bad.stderr


# -- tampering straight in the database --------------------------------------------------------

def row(conn: Connection, seq: int) -> dict:
    return dict(conn.execute(text("SELECT * FROM audit_events WHERE seq = :s"),
                             {"s": seq}).mappings().one())


def positions(data: KysoData) -> list[int]:
    """First, a middle one, and the last entry."""
    last = head_seq(data)
    return sorted({1, last // 2, last})


def test_an_edited_row_is_named(data: KysoData) -> None:
    for seq in positions(data):
        with database(data) as conn:
            original = row(conn, seq)
            conn.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"),
                         {"s": seq})
        try:
            message = verify_fails(data)
            assert (f"entry #{seq} ({original['action']} {original['object']}) was edited"
                    in message), message
        finally:
            with database(data) as conn:
                conn.execute(text("UPDATE audit_events SET actor = :a WHERE seq = :s"),
                             {"a": original["actor"], "s": seq})
        assert_intact(data)


def test_a_deleted_row_is_named(data: KysoData) -> None:
    for seq in positions(data):
        with database(data) as conn:
            original = row(conn, seq)
            conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": seq})
        try:
            message = verify_fails(data)
            assert f"entry #{seq} was deleted" in message, message
        finally:
            with database(data) as conn:
                columns = ", ".join(original)
                conn.execute(text(f"INSERT INTO audit_events ({columns}) VALUES "
                                  f"({', '.join(':' + c for c in original)})"), original)
        assert_intact(data)


def swap(data: KysoData, a: int, b: int) -> None:
    with database(data) as conn:
        for statement, params in (("UPDATE audit_events SET seq = -1 WHERE seq = :a", {"a": a}),
                                  ("UPDATE audit_events SET seq = :a WHERE seq = :b",
                                   {"a": a, "b": b}),
                                  ("UPDATE audit_events SET seq = :b WHERE seq = -1", {"b": b})):
            conn.execute(text(statement), params)


def test_reordered_rows_are_named(data: KysoData) -> None:
    last = head_seq(data)
    for a, b in ((1, 2), (last // 2, last // 2 + 3), (last - 1, last)):
        with database(data) as conn:
            moved = row(conn, b)
        swap(data, a, b)
        try:
            message = verify_fails(data)
            assert (f"entry #{a} ({moved['action']} {moved['object']}) is out of place: "
                    f"it was written as entry #{b}") in message, message
        finally:
            swap(data, a, b)
        assert_intact(data)


def test_a_forged_seal_is_named(data: KysoData) -> None:
    data.run("audit", "seal")
    with database(data) as conn:
        seal_id, seq = conn.execute(text("SELECT id, seq FROM audit_seals ORDER BY id DESC")
                                    ).first()
        conn.execute(text("UPDATE audit_seals SET reason = 'interval' WHERE id = :i"),
                     {"i": seal_id})
    try:
        message = verify_fails(data)
        assert f"the seal of entry #{seq}" in message and "bad signature" in message
    finally:
        with database(data) as conn:
            conn.execute(text("UPDATE audit_seals SET reason = 'manual' WHERE id = :i"),
                         {"i": seal_id})
    assert_intact(data)


def test_json_report(data: KysoData) -> None:
    ok = data.run("audit", "verify", "--json").json()
    assert ok["ok"] is True and ok["problems"] == [] and ok["entries"] == head_seq(data)  # type: ignore[index]
    with database(data) as conn:
        conn.execute(text("UPDATE audit_events SET outcome = 'failure' WHERE seq = 2"))
    try:
        report = data.run("audit", "verify", "--json", expect=1).json()
        assert report["ok"] is False  # type: ignore[index]
        assert report["problems"][0]["seq"] == 2 and report["problems"][0]["kind"] == "edited"  # type: ignore[index]
    finally:
        with database(data) as conn:
            conn.execute(text("UPDATE audit_events SET outcome = 'success' WHERE seq = 2"))
    assert_intact(data)


# -- fail closed ---------------------------------------------------------------------------------

def test_no_audit_entry_no_revocation(data: KysoData, tmp_path: Path) -> None:
    serial = issue(data, tmp_path)
    before = head_seq(data)
    sqlite = data.database_url is None
    with database(data) as conn:
        if sqlite:
            conn.execute(text("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                              "BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END"))
        else:
            conn.execute(text("CREATE FUNCTION refuse_audit() RETURNS trigger AS $$ BEGIN "
                              "RAISE EXCEPTION 'audit store refuses writes'; END $$ "
                              "LANGUAGE plpgsql"))
            conn.execute(text("CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events "
                              "FOR EACH ROW EXECUTE FUNCTION refuse_audit()"))
    try:
        result = data.fail("cert", "revoke", serial, "--reason", "keyCompromise")
        assert "cannot write the audit log" in result.stderr, result.output
        assert "audit store refuses writes" in result.stderr
        assert "was not performed" in result.stderr
        assert data.cert(serial)["status"] == "valid"
        assert head_seq(data) == before
    finally:
        with database(data) as conn:
            if sqlite:
                conn.execute(text("DROP TRIGGER refuse_audit"))
            else:
                conn.execute(text("DROP TRIGGER refuse_audit ON audit_events"))
                conn.execute(text("DROP FUNCTION refuse_audit()"))
    data.run("cert", "revoke", serial, "--reason", "keyCompromise")
    assert data.cert(serial)["status"] == "revoked"
    assert_intact(data)
