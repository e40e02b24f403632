"""Fixtures of the verification tests: one software PKI and the signed documents built on it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import verify_docs as docs
from pyhanko.sign.fields import MDPPerm
from verify_pki import TestPki, build_pki

from signer.verify import VerificationReport, verify_pdf


@pytest.fixture(scope="session")
def pki() -> TestPki:
    """Shared and never revoked from: tests that revoke build their own (`fresh_pki`)."""
    return build_pki()


@pytest.fixture()
def fresh_pki() -> TestPki:
    return build_pki()


class Documents:
    """Signed documents made once per session, on demand."""

    def __init__(self, pki: TestPki) -> None:
        self.pki = pki
        self._cache: dict[str, bytes] = {}
        self._recipes: dict[str, Callable[[], bytes]] = {
            "base": docs.base_pdf,
            "B-B": lambda: docs.sign(self["base"], pki, level="B-B"),
            "B-T": lambda: docs.sign(self["base"], pki, level="B-T"),
            "B-LT": lambda: docs.sign(self["base"], pki, level="B-LT"),
            "B-LTA": lambda: docs.sign(self["base"], pki, level="B-LTA"),
            "certified": lambda: docs.sign(self["base"], pki, level="B-T", certify=True,
                                           docmdp=MDPPerm.FILL_FORMS),
            "certified-p1": lambda: docs.sign(self["base"], pki, level="B-T", certify=True,
                                              docmdp=MDPPerm.NO_CHANGES),
        }

    def __getitem__(self, name: str) -> bytes:
        if name not in self._cache:
            self._cache[name] = self._recipes[name]()
        return self._cache[name]


@pytest.fixture(scope="session")
def signed(pki: TestPki) -> Documents:
    return Documents(pki)


@pytest.fixture(scope="session")
def check(pki: TestPki) -> Callable[..., VerificationReport]:
    """verify_pdf against the shared PKI; `online=True` gives it the PKI's revocation source."""

    def run(data: bytes, *, online: bool = False, now: datetime | None = None,
            **kwargs: Any) -> VerificationReport:
        source = pki.source(now) if online else None
        return verify_pdf(data, trust_roots=[pki.root.cert], revocation=source, now=now,
                          **kwargs)

    return run
