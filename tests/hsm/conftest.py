"""Fixtures for hsm tests: one real SoftHSM2 config per test session, tokens made up front."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hsm_test_constants import MAIN_LABEL, SO_PIN, USER_PIN
from pkcs11_tool import list_objects, parse_objects

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


@pytest.fixture
def token_objects(softhsm: SoftHsmToken):
    """Callable returning the main token's objects as pkcs11-tool lists them (parsed)."""
    return lambda: parse_objects(list_objects(softhsm.module, MAIN_LABEL, USER_PIN,
                                              softhsm.env()))
