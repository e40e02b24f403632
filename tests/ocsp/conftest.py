"""Fixtures for the OCSP tests: a demo data directory (ocsp_demo) and gunicorn serving
web.wsgi:app (the Flask app with /ocsp mounted beside it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from ocsp_demo import Demo, make_demo
from ocsp_support import Gunicorn

# The responder is served two ways, and every test runs against both: the whole web app
# (Flask with /ocsp mounted, gunicorn's sync worker) and the responder alone with the worker
# `kyso ocsp serve` uses (ocsp.worker.OcspWorker: its own fast HTTP path).
SERVINGS = {
    "web-app": ("kyso_ocsp", "web.wsgi:app", None),
    "ocsp-worker": ("kyso_ocsp_worker", "web.wsgi:ocsp_app", "ocsp.worker.OcspWorker"),
}


@pytest.fixture(scope="session", params=list(SERVINGS))
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    schema, app, worker = SERVINGS[request.param]
    made = make_demo(tmp_path_factory.mktemp(request.param), schema,
                     ("good", "revokeme", "holdme", "other", "late"))
    made.serving = (app, worker)
    return made


@pytest.fixture(scope="session")
def server(demo: Demo) -> Iterator[Gunicorn]:
    app, worker = demo.serving
    srv = Gunicorn(demo.data.config, app=app, worker_class=worker,
                   extra_env=demo.server_env())
    try:
        yield srv
    finally:
        srv.stop()
