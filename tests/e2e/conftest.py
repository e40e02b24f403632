"""End-to-end fixtures: a data directory made with the real `kyso` CLI, gunicorn serving it, and
Debian's chromium driven by Playwright (headless, no browser download, no outside traffic)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import pytest
from e2e_support import SCREENSHOTS, Deployment, NewPage, Person, Steps, screenshot
from served import Gunicorn, clean_env, run_kyso

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# Debian's chromium keeps calling home (component updates, sync, field trials) unless told not
# to; --no-sandbox because the tests run as root in a container.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-gpu", "--no-first-run", "--disable-quic",
                 "--disable-dev-shm-usage"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000  # Playwright's auto-wait for any one action or expectation
PIN = "246810"


def _add_account(config: Path, secrets: Path, username: str, *roles_and_flags: str) -> Person:
    password = f"e2e-{username}-Mật-khẩu-7"
    password_file = secrets / f"{username}.password"
    password_file.write_text(password + "\n", encoding="utf-8")
    out = run_kyso(config, "account", "add", username, *roles_and_flags,
                   "--password-file", str(password_file)).stdout
    match = re.search(r"otpauth://\S+", out)
    assert match, f"no otpauth:// URI in `kyso account add` output:\n{out}"
    secret = parse_qs(urlparse(match.group(0)).query)["secret"][0]
    return Person(username, password, secret)


def _wait_healthy(gunicorn: Gunicorn, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(gunicorn.base_url + "/healthz", timeout=5) as r:
                if r.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not answer /healthz:\n{gunicorn.log()[-4000:]}")
        time.sleep(0.1)  # polling a process, not waiting on the browser


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """`kyso init`, `kyso demo setup`, an official with a signing PIN, their accounts and an
    operator's, a PDF signed with the CLI; gunicorn on a free port, always stopped."""
    from pdf_samples import make_pdf

    if os.environ.get("KYSO_TEST_DATABASE_URL"):
        # The browser flow runs against the embedded default `kyso init` makes (SQLite); the
        # PostgreSQL pass runs beside the SQLite one and would only repeat it.
        pytest.skip("end-to-end runs once, in the default-database pass")
    root = tmp_path_factory.mktemp("kyso-e2e")
    data_dir = root / "var"
    run_kyso(None, "init", "--data-dir", str(data_dir))
    config = data_dir / "kyso.toml"
    run_kyso(config, "demo", "setup")
    secrets = root / "secrets"
    secrets.mkdir(mode=0o700)
    pin_file = secrets / "official.pin"
    pin_file.write_text(PIN + "\n", encoding="utf-8")
    added = json.loads(run_kyso(
        config, "official", "add", "--name", "Nguyễn Thị Hồng Nhung",
        "--org", "UBND Phường Bến Thành", "--unit", "Văn phòng", "--title", "Chánh Văn phòng",
        "--email", "nhung.ntn@example.gov.vn", "--pin-file", str(pin_file), "--json").stdout)
    official_id, serial = int(added["official_id"]), str(added["serial"]).lower()
    official = _add_account(config, secrets, "nhung", "--role", "official",
                            "--official", str(official_id), "--display-name",
                            "Nguyễn Thị Hồng Nhung")
    operator = _add_account(config, secrets, "vanhanh", "--role", "operator",
                            "--display-name", "Trần Văn Vận Hành")
    unsigned = root / "presign.pdf"
    unsigned.write_bytes(make_pdf())
    presigned = root / "presigned.pdf"
    run_kyso(config, "sign", str(unsigned), "--official", str(official_id), "--out",
             str(presigned), "--level", "B-B", "--visible", "1,330,80,220,70",
             "--pin-file", str(pin_file))

    gunicorn = Gunicorn(config, env=clean_env(config), log_path=root / "gunicorn.log")
    try:
        _wait_healthy(gunicorn)
        yield Deployment(config=config, base_url=gunicorn.base_url, log_path=gunicorn.log_path,
                         official_id=official_id, serial=serial, pin=PIN, official=official,
                         operator=operator, presigned_pdf=presigned)
    finally:
        gunicorn.stop()


# -- the browser ----------------------------------------------------------------------------

def _require_chromium() -> None:
    """Skip without chromium, except under CI, where scripts/test installs it: fail there."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return
    reason = (f"{CHROMIUM} is missing: install Debian's chromium (scripts/test does; "
              "`playwright install` cannot download browsers here)")
    if os.environ.get("CI") == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    """Debian's chromium, headless. launch() gives it a fresh temporary user-data directory
    (removed on close) and every context below is a separate incognito-like profile."""
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)  # expect() has its own default (5 s)
    browser = playwright_driver.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, timeout=60_000)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="session", autouse=True)
def _screenshot_dir() -> Path:
    """Screenshots of this run only: the directory is emptied once per session."""
    if SCREENSHOTS.is_dir():
        shutil.rmtree(SCREENSHOTS)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    # Lets fixtures see whether the test itself failed (screenshot on failure).
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def new_page(browser: Browser, deployment: Deployment,
             request: pytest.FixtureRequest) -> Iterator[NewPage]:
    """`new_page("official")`: a page in its own fresh context (own cookies), Vietnamese,
    1280x900, Vietnam time. On a failed test every open page is screenshotted; all contexts
    are closed afterwards."""
    contexts: list[tuple[str, BrowserContext]] = []

    def make(who: str) -> Page:
        context = browser.new_context(
            base_url=deployment.base_url, viewport=VIEWPORT, locale="vi-VN",
            timezone_id="Asia/Ho_Chi_Minh", accept_downloads=True)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append((who, context))
        return context.new_page()

    try:
        yield make
    finally:
        call = getattr(request.node, "rep_call", None)
        for who, context in contexts:
            if call is not None and call.failed:
                for k, page in enumerate(context.pages):
                    try:
                        screenshot(page, f"FAILED-{request.node.name}-{who}-{k}")
                    except Exception:  # noqa: BLE001 - a screenshot must not hide the failure
                        pass
            context.close()


@pytest.fixture
def page(new_page: NewPage) -> Page:
    return new_page("anonymous")


@pytest.fixture
def steps(deployment: Deployment, request: pytest.FixtureRequest) -> Steps:
    return Steps(deployment, request.node.name)
