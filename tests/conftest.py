"""Shared fixtures: one real SoftHSM2 directory per test session, a real database, the CA."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from ca_test_constants import CA_TOKEN, SO_PIN, USER_PIN
from sqlalchemy import text

from hsm import SoftHsmToken, create_softhsm_token


@pytest.fixture(scope="session")
def softhsm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SoftHSM2 scans its token directory once, when the module is first loaded in a process:
    every token any test uses is made here, up front, in one directory."""
    from hsm_test_constants import DOOMED_LABEL, MAIN_LABEL, PIN_LABEL
    from hsm_test_constants import SO_PIN as HSM_SO_PIN
    from hsm_test_constants import USER_PIN as HSM_USER_PIN

    directory = tmp_path_factory.mktemp("softhsm")
    create_softhsm_token(directory, CA_TOKEN, SO_PIN, USER_PIN)
    for label in (MAIN_LABEL, DOOMED_LABEL, PIN_LABEL):
        create_softhsm_token(directory, label, HSM_SO_PIN, HSM_USER_PIN)
    os.environ["SOFTHSM2_CONF"] = str(directory / "softhsm2.conf")
    return directory


@pytest.fixture(scope="session")
def ca_softhsm(softhsm_dir: Path) -> SoftHsmToken:
    return create_softhsm_token(softhsm_dir, CA_TOKEN, SO_PIN, USER_PIN)


def test_database_url(tmp: Path) -> str:
    return os.environ.get("KYSO_TEST_DATABASE_URL") or f"sqlite:///{tmp / 'kyso.db'}"


def reset_database(url: str) -> None:
    """Start from an empty schema (PostgreSQL's test database is shared between runs)."""
    if url.startswith("postgresql"):
        from sqlalchemy import create_engine

        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory, ca_softhsm: SoftHsmToken):  # type: ignore[no-untyped-def]
    from kyso.settings import HsmSettings, Settings

    data = tmp_path_factory.mktemp("data")
    os.environ["KYSO_TEST_HSM_PIN"] = USER_PIN
    os.environ["KYSO_TEST_HSM_SO_PIN"] = SO_PIN
    url = test_database_url(data)
    reset_database(url)
    return Settings(
        data_dir=data,
        database_url=url,
        hsm=HsmSettings(module=ca_softhsm.module, token_label=CA_TOKEN,
                        pin_env="KYSO_TEST_HSM_PIN", so_pin_env="KYSO_TEST_HSM_SO_PIN",
                        softhsm2_conf=str(ca_softhsm.conf_path)),
    )


@pytest.fixture(scope="session")
def kyso_app(settings):  # type: ignore[no-untyped-def]
    """The wired application with a demo hierarchy: root (P-384), issuing (P-256), issuing-rsa."""
    from kyso.app import Kyso

    app = Kyso(settings)
    app.migrate()
    a = app.authority
    a.create_root("root", "CN=Test Root CA,O=Sở Thông tin và Truyền thông TP.HCM,C=VN",
                  key_spec="ec-p384")
    a.create_issuing("issuing", "CN=Test Issuing CA,O=Sở Thông tin và Truyền thông TP.HCM,C=VN",
                     parent="root", key_spec="ec-p256")
    a.create_issuing("issuing-rsa", "CN=Test RSA Issuing CA,O=Kyso Test,C=VN",
                     parent="root", key_spec="rsa-2048")
    yield app
    app.close()


@pytest.fixture()
def authority(kyso_app):  # type: ignore[no-untyped-def]
    return kyso_app.authority


@pytest.fixture()
def counts(kyso_app) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """Row counts of the CA tables, to prove a refused request changed nothing."""
    tables = ["certificates", "cert_requests", "officials", "official_keys", "cas"]

    def snapshot() -> dict[str, int]:
        with kyso_app.engine.connect() as conn:
            return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                    for t in tables}

    yield snapshot
