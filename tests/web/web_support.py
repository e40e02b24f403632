"""Helpers shared by the web tests and their fixtures: HTTP fetch and the served instance."""

from __future__ import annotations

import json
import re
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


# -- accounts and logins for page tests --------------------------------------------------------

PASSWORD = "mật-khẩu-đủ-dài-2026"
_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass(frozen=True)
class Account:
    id: int
    username: str
    totp_secret: str


def csrf(client: Any, path: str) -> str:
    """The CSRF token of the form on the page at `path` (GET, must answer 200)."""
    page = client.get(path)
    assert page.status_code == 200, (path, page.status_code)
    match = _CSRF_FIELD.search(page.get_data(as_text=True))
    assert match, f"no csrf_token on {path}"
    return match.group(1)


def totp_key(kyso_app: Any) -> bytes:
    """The key sealing TOTP secrets, derived from the web secret key as the app derives it."""
    from ca import accounts
    from web.security import load_secret_key

    settings = kyso_app.settings
    return accounts.totp_key(load_secret_key(settings.web.secret_key_path(settings.data_dir)))


def account_row(kyso_app: Any, account_id: int) -> Any:
    """The account's row as stored now, detached from its session."""
    from ca import accounts

    with kyso_app.readers() as s:
        row = accounts.get(s, account_id)
        assert row is not None
        s.expunge(row)
        return row


def new_account(kyso_app: Any, *roles: str, official: int | None = None,
                prefix: str = "acct") -> Account:
    """A fresh web account with `roles` (password PASSWORD, TOTP enrolled)."""
    import secrets

    from ca import accounts

    username = f"{prefix}-{secrets.token_hex(4)}"
    with kyso_app.sessions.begin() as s:
        row, secret = accounts.create_account(
            s, username=username, password=PASSWORD, roles=roles, key=totp_key(kyso_app),
            official_id=official, actor="test")
        return Account(row.id, username, secret)


def login(client: Any, account: Account) -> None:
    """Log `client` in as `account` through the real /login and /login/totp forms."""
    import pyotp

    first = client.post("/login", data={"csrf_token": csrf(client, "/login"),
                                        "username": account.username, "password": PASSWORD})
    assert first.status_code == 302, first.get_data(as_text=True)[:500]
    done = client.post("/login/totp", data={"csrf_token": csrf(client, "/login/totp"),
                                            "code": pyotp.TOTP(account.totp_secret).now()})
    assert done.status_code == 302, done.get_data(as_text=True)[:500]


def new_official(kyso_app: Any, name: str, pin: str,
                 organization: str = "Ủy ban nhân dân phường Bến Thành") -> tuple[int, str]:
    """A fresh official (HSM key + certificate from the `issuing` CA): (official id, serial)."""
    import secrets

    new = kyso_app.authority.add_official(
        pin=pin, name=name, organization=organization,
        email=f"{secrets.token_hex(3)}@benthanh.hochiminhcity.gov.vn", title="Chánh Văn phòng",
        ca_name="issuing")
    return new.official_id, new.certificate.serial
