"""The console's reorganization pages (/console/reorg): upload a mapping, the dry run (nothing
written), apply as a background batch with its progress, the final report old -> new, resume
after a restart; refusals are 4xx pages naming what is wrong; operators only."""

from __future__ import annotations

import hashlib
import html
import io
import re
import secrets
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from web_support import Account, csrf, login, new_account, new_official
from werkzeug.test import TestResponse

from ca import outbox, reorg
from ca.models import AuditEventRecord, ReorgBatchRecord
from web import console_reorg

PIN = "357913579"
HEADER = ("old_organization,old_unit,old_locality,new_organization,new_unit,new_locality,"
          "effective_date")
_HIDDEN = re.compile(r'<input type="hidden" name="(mapping_text|mapping_sha256)" value="([^"]*)"',
                     re.S)
_BATCH = re.compile(r"/console/reorg/(\d+)$")


# -- fixtures -------------------------------------------------------------------------------

@pytest.fixture
def operator(client: FlaskClient, kyso_app: Any) -> Account:
    account = new_account(kyso_app, "operator", prefix="reorg-op")
    login(client, account)
    return account


class Reorg:
    """A small reorganization of its own (organization names unique to the test): three
    officials of a ward merged into a new one (affiliationChanged) and one official of a
    second ward whose unit is renamed (superseded)."""

    def __init__(self, kyso_app: Any) -> None:
        tag = secrets.token_hex(3)
        self.merged = f"Ủy ban nhân dân phường Tân Định {tag}"
        self.into = f"Ủy ban nhân dân phường Sài Gòn {tag}"
        self.renamed = f"Ủy ban nhân dân phường Đa Kao {tag}"
        self.merged_officials = [new_official(kyso_app, name, PIN, organization=self.merged)
                                 for name in ("Nguyễn Văn Tâm", "Trần Thị Định",
                                              "Lê Hoàng Phúc")]
        self.renamed_officials = [new_official(kyso_app, "Võ Thị Kim Chi", PIN,
                                               organization=self.renamed)]
        self.mapping = "\n".join([
            HEADER,
            f"{self.merged},,,{self.into},,,01/07/2025",
            f"{self.renamed},,,,Văn phòng HĐND và UBND,,2025-07-01",
        ]) + "\n"

    @property
    def officials(self) -> list[tuple[int, str]]:
        return self.merged_officials + self.renamed_officials

    @property
    def serials(self) -> list[str]:
        return [serial for _, serial in self.officials]


@pytest.fixture
def small(kyso_app: Any) -> Reorg:
    return Reorg(kyso_app)


# -- helpers --------------------------------------------------------------------------------

def _dry_run(client: FlaskClient, *, file: bytes | None = None, text: str = "",
             lang: str = "en") -> TestResponse:
    data: dict[str, Any] = {"csrf_token": csrf(client, "/console/reorg"), "mapping_text": text}
    if file is not None:
        data["mapping"] = (io.BytesIO(file), "sap-xep.csv")
    return client.post(f"/console/reorg/dry-run?lang={lang}", data=data,
                       content_type="multipart/form-data")


def _hidden(page: str) -> dict[str, str]:
    return {name: html.unescape(value) for name, value in _HIDDEN.findall(page)}


def _apply(client: FlaskClient, fields: dict[str, str], rekey: bool = False) -> TestResponse:
    data = {"csrf_token": csrf(client, "/console/reorg"), **fields}
    if rekey:
        data["rekey"] = "1"
    return client.post("/console/reorg/apply", data=data, content_type="multipart/form-data")


def _wait_done(client: FlaskClient, batch_id: int, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        got = client.get(f"/console/reorg/{batch_id}/progress.json")
        assert got.status_code == 200 and got.headers["Cache-Control"] == "no-store"
        progress = got.get_json()
        seen.append((progress["done"], progress["total"]))
        if progress["finished"] and not console_reorg.running_here(batch_id):
            return progress
        assert time.monotonic() < deadline, f"batch {batch_id} not done: {seen[-5:]}"
        time.sleep(0.2)


def _batch_count(kyso_app: Any) -> int:
    with kyso_app.readers() as s:
        return int(s.scalar(select(func.count()).select_from(ReorgBatchRecord)))


def _status(kyso_app: Any, serial: str) -> tuple[str, str | None]:
    rec = kyso_app.authority.certificate(serial)
    return rec.status, rec.revocation_reason


# -- who may use it -------------------------------------------------------------------------

def test_only_operators(client: FlaskClient, kyso_app: Any) -> None:
    got = client.get("/console/reorg")
    assert got.status_code == 302 and "/login" in got.headers["Location"]
    assert client.post("/console/reorg/dry-run").status_code in (400, 401)  # CSRF or login
    official_id, _ = new_official(kyso_app, "Đỗ Văn Không Quyền", PIN)
    for roles, official in ((("official",), official_id), (("auditor",), None),
                            (("admin",), None)):
        other = client.application.test_client()
        login(other, new_account(kyso_app, *roles, official=official, prefix="reorg-no"))
        assert other.get("/console/reorg").status_code == 403, roles
        token = csrf(other, "/account")
        for path in ("/console/reorg/dry-run", "/console/reorg/apply",
                     "/console/reorg/1/resume"):
            assert other.post(path, data={"csrf_token": token}).status_code == 403, (roles, path)
        assert other.get("/console/reorg/1/progress.json").status_code == 403


def test_console_links_to_the_reorganization(client: FlaskClient, operator: Account) -> None:
    page = client.get("/console/?lang=en").get_data(as_text=True)
    assert 'id="reorg-link" href="/console/reorg"' in page
    assert page.count('href="/console/reorg"') == 2  # the section list and the console's nav
    form = client.get("/console/reorg?lang=en")
    assert form.status_code == 200 and form.headers["Cache-Control"] == "no-store"
    text = form.get_data(as_text=True)
    assert '<input type="file" id="mapping" name="mapping"' in text
    assert 'name="mapping_text"' in text and HEADER in text
    assert '<html lang="vi">' in client.get("/console/reorg?lang=vi").get_data(as_text=True)


# -- the dry run ----------------------------------------------------------------------------

def test_dry_run_shows_every_affected_certificate_and_writes_nothing(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    before = _batch_count(kyso_app)
    got = _dry_run(client, file=small.mapping.encode("utf-8"))
    page = got.get_data(as_text=True)
    assert got.status_code == 200, page[:3000]
    assert got.headers["Cache-Control"] == "no-store"
    plan_table = page.split('id="reorg-plan"', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr data-serial="([0-9a-f]+)"', plan_table)
    assert sorted(rows) == sorted(small.serials)
    for (_, serial) in small.merged_officials:
        row = plan_table.split(f'data-serial="{serial}"', 1)[1].split("</tr>", 1)[0]
        assert small.merged in row and small.into in row  # current -> new subject
        assert 'data-reason="affiliationChanged"' in row
    (_, renamed), = small.renamed_officials
    row = plan_table.split(f'data-serial="{renamed}"', 1)[1].split("</tr>", 1)[0]
    assert "Văn phòng HĐND và UBND" in row and 'data-reason="superseded"' in row
    assert "Nguyễn Văn Tâm" in plan_table
    # The confirmation carries exactly the text shown, and its hash.
    fields = _hidden(page)
    assert fields["mapping_text"] == small.mapping
    assert fields["mapping_sha256"] == hashlib.sha256(small.mapping.encode()).hexdigest()
    assert 'id="reorg-apply"' in page and 'name="rekey"' in page
    # Nothing written, nothing revoked.
    assert _batch_count(kyso_app) == before
    assert all(_status(kyso_app, s) == ("valid", None) for s in small.serials)


def test_dry_run_of_pasted_text_warns_about_rows_matching_nothing(
        client: FlaskClient, operator: Account, small: Reorg) -> None:
    text = small.mapping + f"{small.merged},Phòng Không Có Ai,,,Phòng Mới,,2025-07-01\n"
    got = _dry_run(client, text=text.replace("\n", "\r\n"))
    page = got.get_data(as_text=True)
    assert got.status_code == 200, page[:3000]
    warnings = page.split('id="reorg-warnings"', 1)[1].split("</div>", 1)[0]
    assert 'data-row="4"' in warnings
    assert len(re.findall(r'<tr data-serial="', page)) == len(small.serials)
    assert _hidden(page)["mapping_text"] == text  # CRLF from the browser: the same mapping


def test_rejected_mappings_are_4xx_pages_naming_the_rows(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    before = _batch_count(kyso_app)
    bad_date = small.mapping + f"{small.renamed},,,,,Quận Một,31/02/2025\n"
    got = _dry_run(client, text=bad_date)
    page = got.get_data(as_text=True)
    assert got.status_code == 422, page[:2000]
    problems = page.split('id="reorg-problems"', 1)[1].split("</table>", 1)[0]
    assert 'data-row="4"' in problems
    assert html.escape(bad_date.splitlines()[-1]) in page  # the text is back, to be corrected
    assert 'id="reorg-apply"' not in page
    from_file = _dry_run(client, file=bad_date.encode())  # a file is corrected and sent again
    assert from_file.status_code == 422
    assert '<textarea id="mapping_text" name="mapping_text" rows="8" cols="80" ' \
           'spellcheck="false" aria-describedby="mapping-hint"></textarea>' \
        in from_file.get_data(as_text=True)

    not_csv = _dry_run(client, text="Đây không phải là một tệp CSV\n")
    assert not_csv.status_code == 422
    assert 'id="reorg-problems"' in not_csv.get_data(as_text=True)

    with client.application.app_context():
        limit = console_reorg.mapping_limit()
    refusals = [
        (_dry_run(client, file=small.mapping.encode("utf-16")), 400, "UTF-8"),
        (_dry_run(client, file=b"%PDF-1.7\x00\x01\x02"), 400, "binary"),
        (_dry_run(client, file=b""), 400, "empty"),
        (_dry_run(client, text="   \n"), 400, "empty"),
        (_dry_run(client, file=small.mapping.encode(), text=small.mapping), 400, "not both"),
        (_dry_run(client, file=b"x" * (limit + 1)), 413, "larger"),
        (_dry_run(client, text="x" * (limit + 1)), 413, "larger"),
        (_apply(client, {"mapping_text": "x" * (limit + 1), "mapping_sha256": ""}), 413,
         "larger"),
    ]
    for got, status, said in refusals:
        text = got.get_data(as_text=True)
        assert got.status_code == status, (said, got.status_code, text[:1500])
        assert said in text, said
    assert _batch_count(kyso_app) == before
    json_refusal = client.post("/console/reorg/dry-run", data={
        "csrf_token": csrf(client, "/console/reorg"), "mapping_text": bad_date},
        headers={"Accept": "application/json"})
    assert json_refusal.status_code == 422
    assert json_refusal.get_json()["error"]["code"] == "mapping_rejected"


# -- applying -------------------------------------------------------------------------------

def test_apply_runs_the_batch_and_reports_old_to_new(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    page = _dry_run(client, file=small.mapping.encode("utf-8")).get_data(as_text=True)
    fields = _hidden(page)
    got = _apply(client, fields)
    assert got.status_code == 303, got.get_data(as_text=True)[:2000]
    match = _BATCH.search(got.headers["Location"])
    assert match, got.headers["Location"]
    batch_id = int(match.group(1))

    progress = _wait_done(client, batch_id)
    assert progress["status"] == "done" and progress["error"] is None
    assert progress["done"] == progress["total"] == len(small.serials)
    assert progress["failed"] == 0

    report = client.get(f"/console/reorg/{batch_id}?lang=en")
    text = report.get_data(as_text=True)
    assert report.status_code == 200
    assert (f'<progress id="reorg-progress" value="{len(small.serials)}" '
            f'max="{len(small.serials)}">') in text
    assert 'data-finished="1"' in text and 'id="reorg-resume"' not in text
    assert '<script src="/static/console-reorg.js" defer></script>' in text
    assert "<script>" not in text  # the CSP forbids inline scripts
    table = text.split('id="reorg-report"', 1)[1].split("</table>", 1)[0]
    view = reorg.show(kyso_app.authority, batch_id)
    assert sorted(i.old_serial for i in view.items) == sorted(small.serials)
    merged = {serial for _, serial in small.merged_officials}
    for item in view.items:
        assert item.status == "done" and item.new_serial
        row = table.split(f'data-serial="{item.old_serial}"', 1)[1].split("</tr>", 1)[0]
        assert f"/console/certificates/{item.new_serial}" in row  # old -> new
        expected = "affiliationChanged" if item.old_serial in merged else "superseded"
        assert f'data-reason="{expected}"' in row
        # Issued first, revoked after, with the reason of the plan.
        assert _status(kyso_app, item.old_serial) == ("revoked", expected)
        assert _status(kyso_app, item.new_serial) == ("valid", None)
    # Each official's e-mail is queued (once per new certificate).
    with kyso_app.readers() as s:
        keys = {m.dedupe_key: m for m in outbox.list_messages(s, limit=1000)}
        audited = s.execute(select(AuditEventRecord.action, AuditEventRecord.actor).where(
            AuditEventRecord.object == f"batch:{batch_id}")).all()
    for item in view.items:
        assert f"reissued:{item.new_serial}" in keys, item
        assert keys[f"reissued:{item.new_serial}"].ref == f"batch:{batch_id}"
    # One audited batch, in the operator's name.
    assert {"reorg.start", "reorg.run"} <= {action for action, _ in audited}
    assert {actor for _, actor in audited} == {f"web:{operator.username}"}
    # The list shows the batch.
    listing = client.get("/console/reorg?lang=en").get_data(as_text=True)
    assert f'<tr data-batch="{batch_id}">' in listing
    # Nothing left to resume; the same mapping is not applied twice.
    token = csrf(client, f"/console/reorg/{batch_id}")
    assert client.post(f"/console/reorg/{batch_id}/resume",
                       data={"csrf_token": token}).status_code == 409
    again = _apply(client, fields)
    assert again.status_code == 409 and "already applied" in again.get_data(as_text=True)


def test_apply_refuses_a_mapping_other_than_the_one_shown(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    before = _batch_count(kyso_app)
    fields = _hidden(_dry_run(client, text=small.mapping).get_data(as_text=True))
    changed = dict(fields, mapping_text=fields["mapping_text"].replace("2025-07-01",
                                                                      "2025-06-01"))
    got = _apply(client, changed)
    assert got.status_code == 400 and "dry run again" in got.get_data(as_text=True)
    assert _apply(client, dict(fields, mapping_sha256="0" * 64)).status_code == 400
    assert _apply(client, dict(fields, mapping_sha256="")).status_code == 400
    assert _apply(client, {"mapping_text": "", "mapping_sha256": ""}).status_code == 400
    assert _batch_count(kyso_app) == before
    assert all(_status(kyso_app, s) == ("valid", None) for s in small.serials)


def test_unknown_batches_are_404(client: FlaskClient, operator: Account) -> None:
    token = csrf(client, "/console/reorg")
    for batch in ("987654321", "abc", "1" * 40, "-1"):
        assert client.get(f"/console/reorg/{batch}").status_code == 404, batch
        assert client.get(f"/console/reorg/{batch}/progress.json").status_code == 404, batch
        for action in ("resume", "retry"):
            assert client.post(f"/console/reorg/{batch}/{action}",
                               data={"csrf_token": token}).status_code == 404, batch
    got = client.get("/console/reorg/987654321/progress.json",
                     headers={"Accept": "application/json"})
    assert got.get_json()["error"]["code"] == "batch_not_found"


def test_an_interrupted_batch_is_resumed_from_its_page(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    # Started, but no thread of this process runs it (as after a restart of the server).
    batch_id = reorg.start(kyso_app.authority, small.mapping, actor="test")
    page = client.get(f"/console/reorg/{batch_id}?lang=en").get_data(as_text=True)
    assert 'id="reorg-resume"' in page and 'data-finished="1"' in page
    assert '<progress id="reorg-progress" value="0"' in page
    token = csrf(client, f"/console/reorg/{batch_id}")
    got = client.post(f"/console/reorg/{batch_id}/resume", data={"csrf_token": token})
    assert got.status_code == 303 and got.headers["Location"].endswith(f"/{batch_id}")
    assert _wait_done(client, batch_id)["status"] == "done"
    assert all(_status(kyso_app, s)[0] == "revoked" for s in small.serials)
    page = client.get(f"/console/reorg/{batch_id}").get_data(as_text=True)
    assert 'id="reorg-resume"' not in page


def test_failed_certificates_are_retried_from_the_batch_page(
        client: FlaskClient, operator: Account, kyso_app: Any, small: Reorg) -> None:
    authority = kyso_app.authority
    batch_id = reorg.start(authority, small.mapping, actor="test")
    held = small.serials[0]
    authority.hold(held, actor="test")  # suspended after the plan: it fails
    assert reorg.run(authority, batch_id, actor="test").batch.failed == 1
    page = client.get(f"/console/reorg/{batch_id}?lang=en").get_data(as_text=True)
    assert 'id="reorg-retry"' in page and 'id="reorg-resume"' not in page
    authority.release(held, actor="test")
    token = csrf(client, f"/console/reorg/{batch_id}")
    got = client.post(f"/console/reorg/{batch_id}/retry", data={"csrf_token": token})
    assert got.status_code == 303 and got.headers["Location"].endswith(f"/{batch_id}")
    progress = _wait_done(client, batch_id)
    assert progress["status"] == "done" and progress["failed"] == 0
    assert progress["done"] == len(small.serials)
    assert _status(kyso_app, held)[0] == "revoked"
    page = client.get(f"/console/reorg/{batch_id}").get_data(as_text=True)
    assert 'id="reorg-retry"' not in page
    nothing = client.post(f"/console/reorg/{batch_id}/retry", data={"csrf_token": token})
    assert nothing.status_code == 409
    assert client.post(f"/console/reorg/{batch_id}/retry").status_code == 400  # CSRF


def test_static_script_is_served(app: Flask) -> None:
    got = app.test_client().get("/static/console-reorg.js")
    assert got.status_code == 200 and b"reorg-progress" in got.data
