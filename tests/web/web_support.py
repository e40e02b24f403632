"""Helpers shared by the web tests and their fixtures: HTTP fetch and the served instance."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Fetched:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")

    def json(self) -> Any:
        return json.loads(self.body)


def fetch(url: str, headers: dict[str, str] | None = None) -> Fetched:
    """GET `url`; HTTP errors are returned like any answer, not raised."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return Fetched(response.status, dict(response.headers.items()), response.read())
    except urllib.error.HTTPError as err:
        return Fetched(err.code, dict(err.headers.items()), err.read())


@dataclass(frozen=True)
class Server:
    """A running gunicorn: where it answers and where its log goes."""

    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def wait_for(condition: Callable[[], bool], server: Server, what: str,
             timeout: float = 60) -> None:
    """Poll `condition` (connection errors count as not yet) until it holds; fail the test
    with the server's log if it does not within `timeout` seconds."""
    import pytest

    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{server.log()[-3000:]}")
        time.sleep(0.2)


def app_over(kyso_app: Any, **web: Any) -> Any:
    """The real Flask app over the session's CA (tests/conftest.py `kyso_app`), sharing its Kyso
    (one HSM login per process); `web` overrides [web] settings (upload limit, rate limits...)."""
    from dataclasses import replace

    from web import create_app

    settings = kyso_app.settings
    app = create_app(replace(settings, web=replace(settings.web, **web)))
    app.extensions["kyso"].get = lambda: kyso_app
    return app
