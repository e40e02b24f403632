"""The auditors' page (/audit/): newest first, filters that narrow the list, pages of 50, bad
filters refused with a 400 page, CSV export, and the chain check that turns red when a row is
edited with plain SQL.

It runs over a Kyso of its own (a fresh database, the session's HSM token), so the entries it
counts and the row it tampers with are nobody else's."""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from web_support import Account, app_over, csrf, login, new_account

from ca import audit

SCHEMA = "kyso_web_audit"
ACTOR = "test:auditpage"
_SEQ = re.compile(r'<tr class="audit-row[^"]*" data-seq="(\d+)">')
_RESULT = re.compile(r'<div id="chain-result"[^>]*data-ok="(true|false)"')


def _database_url(directory: Path) -> str:
    base = os.environ.get("KYSO_TEST_DATABASE_URL")
    if not base:
        return f"sqlite:///{directory / 'audit-page.db'}"
    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {SCHEMA}"))
    engine.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{SCHEMA}"


@pytest.fixture(scope="module")
def own_kyso(kyso_app: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Kyso over a fresh database that shares the session's open HSM token."""
    from kyso.app import Kyso

    url = _database_url(tmp_path_factory.mktemp("audit-page"))
    kyso = Kyso(replace(kyso_app.settings, database_url=url))
    kyso._token = kyso_app.token()  # one HSM login per process
    kyso.migrate()
    yield kyso
    audit.set_seal_policy(kyso.engine, None)
    kyso.engine.dispose()  # not close(): the token is the session's


@pytest.fixture(scope="module")
def app(own_kyso: Any) -> Flask:
    return app_over(own_kyso)


@pytest.fixture
def auditor(own_kyso: Any) -> Account:
    # A fresh one each test: a TOTP code logs in once (replay guard).
    return new_account(own_kyso, "auditor", prefix="aud")


# Vietnam is UTC+7: 23:30 on 10/01/2026 there is 16:30 UTC, 00:30 on 11/01 is 17:30 UTC.
T_10_JAN_LATE = datetime(2026, 1, 10, 16, 30, tzinfo=UTC)
T_11_JAN_EARLY = datetime(2026, 1, 10, 17, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def events(own_kyso: Any) -> dict[str, int]:
    """Known entries: seq by name."""
    made: dict[str, int] = {}
    specs = [
        ("issue", "certificate.issue", "cert:0a1b", "success", T_10_JAN_LATE,
         {"profile": "official-signing", "note": "<script>alert(1)</script>"}),
        ("revoke", "certificate.revoke", "cert:0a1b", "success", T_11_JAN_EARLY,
         {"reason": "keyCompromise", "tên": "Nguyễn Thị Hồng Nhung"}),
        ("refused", "certificate.revoke", "cert:ffff", "failure", T_11_JAN_EARLY, None),
        ("other", "crl.generate", "ca:issuing", "success", T_11_JAN_EARLY, None),
    ]
    for name, action, obj, outcome, at, details in specs:
        with own_kyso.sessions.begin() as s:
            head = audit.record(s, actor=ACTOR, action=action, obj=obj, outcome=outcome,
                                details=details, request_id=f"req-{name}",
                                clock=lambda at=at: at)
        made[name] = head.seq
    for i in range(55):  # enough for two pages
        with own_kyso.sessions.begin() as s:
            audit.record(s, actor="test:bulk", action="test.bulk", obj=f"thing:{i}")
    return made


@pytest.fixture
def as_auditor(client: FlaskClient, auditor: Account, events: dict[str, int]) -> FlaskClient:
    login(client, auditor)
    return client


def seqs(page: Any) -> list[int]:
    return [int(x) for x in _SEQ.findall(page.get_data(as_text=True))]


# -- who may see it ------------------------------------------------------------------------------

def test_anonymous_is_sent_to_login_and_other_roles_get_403(
        client: FlaskClient, own_kyso: Any) -> None:
    page = client.get("/audit/")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert client.post("/audit/verify").status_code in (400, 401)  # CSRF or login first
    login(client, new_account(own_kyso, "operator", "admin", prefix="op"))
    refused = client.get("/audit/")
    assert refused.status_code == 403
    assert client.get("/audit/export.csv").status_code == 403


# -- the list ------------------------------------------------------------------------------------

def test_newest_first_in_pages_of_50(as_auditor: FlaskClient, events: dict[str, int]) -> None:
    first = as_auditor.get("/audit/")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "no-store"
    shown = seqs(first)
    assert len(shown) == 50 and shown == sorted(shown, reverse=True)
    second = seqs(as_auditor.get("/audit/?page=2"))
    assert second and max(second) < min(shown)
    assert "?page=2" in first.get_data(as_text=True)


def test_filters_narrow_the_list(as_auditor: FlaskClient, events: dict[str, int]) -> None:
    mine = seqs(as_auditor.get(f"/audit/?actor={ACTOR}"))
    assert mine == sorted(events.values(), reverse=True)
    certs = seqs(as_auditor.get(f"/audit/?actor={ACTOR}&action=certificate."))
    assert certs == [events["refused"], events["revoke"], events["issue"]]
    revokes = seqs(as_auditor.get("/audit/?action=certificate.revoke&object=cert:0a1b"))
    assert revokes == [events["revoke"]]
    failed = seqs(as_auditor.get(f"/audit/?actor={ACTOR}&outcome=failure"))
    assert failed == [events["refused"]]
    prefix = seqs(as_auditor.get("/audit/?object=cert:*&actor=test:*"))
    assert prefix == [events["refused"], events["revoke"], events["issue"]]


def test_dates_are_days_in_vietnam_time(as_auditor: FlaskClient,
                                        events: dict[str, int]) -> None:
    eleventh = seqs(as_auditor.get(f"/audit/?actor={ACTOR}&from=11/01/2026&to=11/01/2026"))
    assert eleventh == [events["other"], events["refused"], events["revoke"]]
    tenth = seqs(as_auditor.get(f"/audit/?actor={ACTOR}&from=2026-01-10&to=2026-01-10"))
    assert tenth == [events["issue"]]
    since = seqs(as_auditor.get(f"/audit/?actor={ACTOR}&from=11/01/2026"))
    assert events["issue"] not in since and events["revoke"] in since


def test_rows_show_vietnam_time_and_details_safely(as_auditor: FlaskClient,
                                                   events: dict[str, int]) -> None:
    html = as_auditor.get(f"/audit/?actor={ACTOR}&action=certificate.issue") \
        .get_data(as_text=True)
    assert "10/01/2026 23:30:00" in html  # 16:30 UTC
    assert "req-issue" in html and "cert:0a1b" in html and "official-signing" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    other = as_auditor.get(f"/audit/?actor={ACTOR}&action=certificate.revoke&outcome=success")
    assert "Nguyễn Thị Hồng Nhung" in other.get_data(as_text=True)


@pytest.mark.parametrize("query", [
    "from=32/13/2026", "to=yesterday", "from=12/01/2026&to=11/01/2026", "page=abc",
    "page=0", "actor=" + "x" * 300,
])
def test_bad_filters_get_a_400_page(as_auditor: FlaskClient, query: str) -> None:
    page = as_auditor.get(f"/audit/?{query}")
    assert page.status_code == 400
    html = page.get_data(as_text=True)
    assert 'class="alert"' in html and 'id="verify-chain-form"' in html
    assert as_auditor.get(f"/audit/export.csv?{query}").status_code in (200, 400)


def test_csv_export_of_the_filtered_view(as_auditor: FlaskClient,
                                        events: dict[str, int]) -> None:
    got = as_auditor.get(f"/audit/export.csv?actor={ACTOR}&action=certificate.")
    assert got.status_code == 200 and got.mimetype == "text/csv"
    assert "attachment" in got.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(got.get_data(as_text=True).lstrip("\ufeff"))))
    assert [int(r["seq"]) for r in rows] == [events["refused"], events["revoke"],
                                             events["issue"]]
    assert "Nguyễn Thị Hồng Nhung" in rows[1]["details"]
    assert as_auditor.get("/audit/export.csv?from=31/02/2026").status_code == 400


# -- the chain check -----------------------------------------------------------------------------

def _verify(client: FlaskClient) -> tuple[str, str]:
    page = client.post("/audit/verify", data={"csrf_token": csrf(client, "/audit/")})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    match = _RESULT.search(html)
    assert match, html[:2000]
    return match.group(1), html


def test_verify_chain_ok_then_broken_after_sql_edit(as_auditor: FlaskClient, own_kyso: Any,
                                                    events: dict[str, int]) -> None:
    with own_kyso.sessions.begin() as s:
        audit.seal(s, own_kyso.audit_signer, "manual", actor="test")
    ok, html = _verify(as_auditor)
    assert ok == "true", html
    assert 'id="verify-chain"' in html
    assert own_kyso.settings.audit.key_label in html  # whose key sealed it
    with own_kyso.readers() as s:
        head = audit.current_head(s)
    assert f"#{head.seq}" in html

    seq = events["revoke"]
    with own_kyso.engine.begin() as conn:
        original = conn.execute(text("SELECT details FROM audit_events WHERE seq = :seq"),
                                {"seq": seq}).scalar_one()
        conn.execute(text("UPDATE audit_events SET details = :d WHERE seq = :seq"),
                     {"d": '{"reason": "superseded"}', "seq": seq})
    try:
        ok, html = _verify(as_auditor)
        assert ok == "false"
        assert f"#{seq}" in html and "edited" in html
    finally:
        with own_kyso.engine.begin() as conn:
            conn.execute(text("UPDATE audit_events SET details = :d WHERE seq = :seq"),
                         {"d": original, "seq": seq})
    ok, _ = _verify(as_auditor)
    assert ok == "true"


def test_verify_needs_the_csrf_token(as_auditor: FlaskClient) -> None:
    assert as_auditor.post("/audit/verify").status_code == 400

