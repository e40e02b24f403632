"""Fixtures for web tests: a data directory made by `kyso init` and gunicorn serving it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from served import Gunicorn
from web_support import Server, app_over, fetch, wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_TIMEOUT = 180


def clean_env(config: Path | None = None) -> dict[str, str]:
    """The test process's environment without KYSO_* or SOFTHSM2_CONF leaking in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    if config is not None:
        env["KYSO_CONFIG"] = str(config)
    return env


def run_kyso(config: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real `kyso` command line (as `python -m kyso.cli`) and fail on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-m", "kyso.cli", *args],
        cwd=REPO_ROOT, env=clean_env(config), capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT, check=False, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"kyso {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


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
