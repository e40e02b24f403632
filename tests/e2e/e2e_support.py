"""Helpers of the end-to-end tests and their fixtures: the deployment, its people, screenshots
and readable step failures."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyotp
from served import REPO_ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Page

SCREENSHOTS = REPO_ROOT / "test-artifacts" / "screenshots"


# -- people and the deployment they use -----------------------------------------------------

@dataclass(frozen=True)
class Person:
    """A web account: password and the TOTP secret from `kyso account add`'s otpauth URI."""

    username: str
    password: str
    totp_secret: str

    def code(self) -> str:
        return pyotp.TOTP(self.totp_secret).now()

    def wrong_code(self) -> str:
        """Six digits that are no code of the steps around now (the server allows some drift)."""
        totp, now = pyotp.TOTP(self.totp_secret), time.time()
        near = {totp.at(now + 30 * k) for k in range(-2, 3)}
        return next(c for c in (f"{n:06d}" for n in range(123456, 1_000_000, 111111))
                    if c not in near)


@dataclass(frozen=True)
class Deployment:
    """kyso as an operator would run it: a data directory, gunicorn, and the people in it."""

    config: Path
    base_url: str
    log_path: Path
    official_id: int
    serial: str  # the official's certificate, lowercase hex
    pin: str
    official: Person
    operator: Person
    presigned_pdf: Path  # signed with the CLI, for the verify page without the portal

    def log_tail(self, chars: int = 4000) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return text[-chars:]


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG under test-artifacts/screenshots/<name>.png."""
    path = SCREENSHOTS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


NewPage = Callable[[str], "Page"]


# -- readable failures ----------------------------------------------------------------------

class Steps:
    """`with steps("login", page): ...` turns any failure inside into one message with the
    step, the page's URL, a screenshot and the tail of the server log."""

    def __init__(self, deployment: Deployment, test_name: str) -> None:
        self.deployment = deployment
        self.test_name = test_name
        self.done: list[str] = []

    @contextmanager
    def __call__(self, name: str, page: Page) -> Iterator[None]:
        try:
            yield
        except Exception as exc:
            try:
                shot = str(screenshot(page, f"FAILED-{self.test_name}-{name}"))
            except Exception as shot_exc:  # noqa: BLE001
                shot = f"(no screenshot: {shot_exc})"
            raise AssertionError(
                f"step {name!r} failed (steps passed: {', '.join(self.done) or 'none'})\n"
                f"page: {page.url}\nscreenshot: {shot}\n"
                f"error: {type(exc).__name__}: {exc}\n"
                f"--- server log (tail) ---\n{self.deployment.log_tail()}") from exc
        self.done.append(name)
