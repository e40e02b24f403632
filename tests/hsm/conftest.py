"""Fixtures for hsm tests: one real SoftHSM2 config per test session, tokens made up front."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hsm_test_constants import MAIN_LABEL, SO_PIN, USER_PIN

from hsm import KeySpec, SoftHsmToken, Token, create_softhsm_token


@pytest.fixture(scope="session")
def softhsm(softhsm_dir: Path) -> SoftHsmToken:
    # The shared fixture (tests/conftest.py) made every token up front; SoftHSM2 scans its
    # token directory only when the module is first loaded.
    token = create_softhsm_token(softhsm_dir, MAIN_LABEL, SO_PIN, USER_PIN)  # idempotent
    assert os.environ["SOFTHSM2_CONF"] == str(token.conf_path)
    return token


@pytest.fixture(scope="session")
def token(softhsm: SoftHsmToken) -> Iterator[Token]:
    tok = Token(softhsm.module, softhsm.label, USER_PIN, so_pin=SO_PIN, pool_size=4, timeout=5)
    yield tok
    tok.close()


@pytest.fixture(scope="session")
def keys(token: Token) -> dict[str, object]:
    """One token key per spec, labelled "key-<spec>"."""
    return {
        name: token.generate_key_pair(KeySpec.parse(name), f"key-{name}")
        for name in KeySpec.NAMES
    }


def _list_objects(softhsm: SoftHsmToken, label: str = MAIN_LABEL) -> str:
    """pkcs11-tool's view of the token: an independent check of what we stored."""
    proc = subprocess.run(
        ["pkcs11-tool", "--module", softhsm.module, "--token-label", label,
         "--login", "--pin", USER_PIN, "--list-objects"],
        env=softhsm.env(), capture_output=True, text=True, check=True, timeout=30,
    )
    return proc.stdout


def _parse_objects(listing: str) -> list[dict[str, str]]:
    objects: list[dict[str, str]] = []
    for line in listing.splitlines():
        if line and not line.startswith(" ") and "Object;" in line:
            objects.append({"kind": line.strip()})
        elif objects and ":" in line:
            key, _, value = line.strip().partition(":")
            objects[-1][key.strip()] = value.strip()
    return objects


@pytest.fixture
def token_objects(softhsm: SoftHsmToken):
    """Callable returning the main token's objects as pkcs11-tool lists them (parsed)."""
    return lambda: _parse_objects(_list_objects(softhsm))
