"""A responder process alone (`web.wsgi:ocsp_app`, worker ocsp.worker.OcspWorker) keeps
answering from memory while its database is unreachable, and says tryLater (never a 500) for
what it does not hold."""

from __future__ import annotations

import base64
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.x509 import ocsp
from ocsp_demo import make_demo
from ocsp_support import Gunicorn, http, make_request

SCHEMA = "kyso_ocsp_outage"


def _make_database_unreachable(data_dir: Path) -> None:
    url = os.environ.get("KYSO_TEST_DATABASE_URL")
    if url:
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA}_gone CASCADE"))
            conn.execute(text(f"ALTER SCHEMA {SCHEMA} RENAME TO {SCHEMA}_gone"))
        engine.dispose()
        return
    db = data_dir / "kyso.db"
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    with db.open("r+b") as f:  # same inode: open connections see it too
        f.write(b"\x00" * size)


def test_cached_answers_survive_a_database_outage(tmp_path_factory: pytest.TempPathFactory) -> None:
    demo = make_demo(tmp_path_factory.mktemp("ocsp-outage"), SCHEMA, ("cached", "uncached"))
    server = Gunicorn(demo.data.config, app="web.wsgi:ocsp_app", workers=1,
                      extra_env=demo.server_env(), worker_class="ocsp.worker.OcspWorker")
    try:
        der = make_request([(demo.cert("cached"), demo.issuer_cert)])
        get_url = server.base_url + "/ocsp/" + quote(base64.b64encode(der).decode(), safe="")
        before_post = http(server.base_url + "/ocsp", data=der,
                           headers={"Content-Type": "application/ocsp-request"})
        before_get = http(get_url)
        assert before_post.ocsp().certificate_status == ocsp.OCSPCertStatus.GOOD
        assert before_get.body == before_post.body

        _make_database_unreachable(demo.data.data_dir)
        time.sleep(1.5)  # past change_poll_ms: the process has tried the database again

        for _ in range(3):
            after_get = http(get_url)
            after_post = http(server.base_url + "/ocsp", data=der,
                              headers={"Content-Type": "application/ocsp-request"})
            assert after_get.status == after_post.status == 200
            assert after_get.body == after_post.body == before_get.body
            assert after_get.ocsp().certificate_status == ocsp.OCSPCertStatus.GOOD
        other = make_request([(demo.cert("uncached"), demo.issuer_cert)])
        reply = http(server.base_url + "/ocsp", data=other,
                     headers={"Content-Type": "application/ocsp-request"})
        assert reply.status == 200
        assert reply.ocsp().response_status == ocsp.OCSPResponseStatus.TRY_LATER
        assert "Traceback" not in server.log() or "database unreachable" in server.log()
    finally:
        server.stop()  # (on PostgreSQL the renamed schema is dropped by the next run)
