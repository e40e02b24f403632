"""Fixtures for web tests: a data directory made by `kyso init` and gunicorn serving it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from served import Gunicorn, clean_env, run_kyso
from web_support import Server, app_over, fetch, wait_for


@pytest.fixture(scope="session")
def kyso_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory made by the real `kyso init` and `kyso demo setup`; its settings file."""
    data_dir = tmp_path_factory.mktemp("kyso-web") / "var"
    run_kyso(None, "init", "--data-dir", str(data_dir))
    config = data_dir / "kyso.toml"
    assert config.is_file()
    run_kyso(config, "demo", "setup")
    return config


@pytest.fixture(scope="session")
def kyso_cli(kyso_config: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`kyso_cli("ca", "show", "root", "--json")` runs the CLI against the test data directory."""
    return lambda *args: run_kyso(kyso_config, *args)


@pytest.fixture(scope="session")
def server(kyso_config: Path) -> Iterator[Server]:
    """gunicorn serving web.wsgi:app (2 workers) on a free port; always stopped afterwards."""
    gunicorn = Gunicorn(kyso_config, env=clean_env(kyso_config),
                        log_path=kyso_config.parent.parent / "gunicorn.log")
    srv = Server(gunicorn.base_url, gunicorn.log_path)
    try:
        wait_for(lambda: fetch(srv.base_url + "/healthz").status == 200, srv,
                 "gunicorn to answer /healthz")
        yield srv
    finally:
        gunicorn.stop()


@pytest.fixture(scope="module")
def app(kyso_app: Any) -> Any:
    """The real app over the session's CA (modules needing another app define their own)."""
    return app_over(kyso_app)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from web.security import limiter

    limiter.reset()  # every test starts with a fresh rate-limit count
    yield app.test_client()
