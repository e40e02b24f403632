"""The schema Alembic builds matches the models; profiles and settings refuse what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ca.errors import ProfileError
from ca.models import Base
from ca.profiles import PROFILES_DIR, ProfileRegistry, load_profile_file, profile_from_dict
from kyso.settings import SettingsError, load_settings


def test_migrations_match_the_models(kyso_app):
    with kyso_app.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_shipped_profiles_load():
    names = ProfileRegistry().names()
    for required in ("official-signing", "tls-server", "ocsp-responder", "timestamping",
                     "issuing-ca"):
        assert required in names
    official = ProfileRegistry().get("official-signing")
    assert official.max_validity_days <= 3 * 366
    assert official.subject.country == "VN"
    assert set(official.allowed_keys) >= {"rsa-2048", "ec-p256"}
    assert "rsa-1024" not in official.allowed_keys


def _raw(**overrides):  # type: ignore[no-untyped-def]
    import tomllib

    raw = tomllib.loads((PROFILES_DIR / "official-signing.toml").read_text())
    raw.update(overrides)
    return raw


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (_raw(colour="red"), "unknown key(s) colour"),
        (_raw(key_usage=["digital_signature", "teleport"]), "teleport"),
        (_raw(allowed_keys=["rsa-1024"]), "rsa-1024"),
        (_raw(max_validity_days=10), "default_validity_days"),
        (_raw(subject={"required": ["CN"], "colour": 1}), "colour"),
        (_raw(key_usage=["key_cert_sign"]), "end-entity"),
        (_raw(san={"email": "sometimes"}), "san.email"),
        (_raw(max_validity_days="long"), "must be int"),
    ],
)
def test_profile_validation(raw, words):
    with pytest.raises(ProfileError) as info:
        profile_from_dict(raw, "test profile")
    assert words in str(info.value)


def test_profile_file_name_must_match(tmp_path):
    path = tmp_path / "other.toml"
    path.write_text((PROFILES_DIR / "tls-server.toml").read_text())
    with pytest.raises(ProfileError, match="names itself"):
        load_profile_file(path)


def test_settings_file_and_environment(tmp_path: Path):
    config = tmp_path / "kyso.toml"
    config.write_text('base_url = "https://pki.example.vn"\n[hsm]\ntoken_label = "city"\n'
                      'pin_file = "secrets/pin"\n')
    settings = load_settings(config, environ={"KYSO_HSM_TOKEN_LABEL": "prod",
                                              "KYSO_DATABASE_URL": "postgresql://x/y"})
    assert settings.base_url == "https://pki.example.vn"
    assert settings.hsm.token_label == "prod"  # the environment wins
    assert settings.db_url == "postgresql://x/y"
    assert settings.data_dir == tmp_path
    assert settings.hsm.pin_file == str(tmp_path / "secrets" / "pin")
    with pytest.raises(SettingsError, match="PIN file"):
        settings.hsm.user_pin()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("colour = 1\n", "unknown setting colour"),
        ("[hsm]\nshape = 1\n", "unknown setting hsm.shape"),
        ("backdate_seconds = 'soon'\n", "whole number"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, words):
    config = tmp_path / "kyso.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=words):
        load_settings(config, environ={})


def test_missing_pin_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no var/kyso.toml here
    settings = load_settings(None, environ={})
    with pytest.raises(SettingsError, match="KYSO_HSM_PIN"):
        settings.hsm.user_pin()


def test_migration_0012_folds_the_rows_already_there(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    from ca.db import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    command.upgrade(alembic_config(url), "0011")
    engine = create_engine(url)
    at = "2026-01-01 00:00:00.000000"
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO cas (id, name, kind, key_label, key_spec, subject, serial, cert_der, "
            "not_before, not_after, status, created_at) VALUES (1, 'issuing', 'issuing', 'k', "
            "'ec-p256', 'CN=CA', '01', x'00', :at, :at, 'active', :at)"), {"at": at})
        conn.execute(text(
            "INSERT INTO officials (id, name, organization, email, failed_pin_attempts, locked, "
            "created_at) VALUES (1, 'Đỗ Thị Ngọc Ánh', 'Ủy ban nhân dân phường Bến Thành', "
            "'Anh.Do@benthanh.hochiminhcity.gov.vn', 0, 0, :at)"), {"at": at})
        conn.execute(text(
            "INSERT INTO certificates (serial, ca_id, profile, subject, organization, key_spec, "
            "spki_sha256, status, not_before, not_after, created_at) VALUES ('0a', 1, "
            "'official-signing', 'CN=Đỗ Thị Ngọc Ánh,O=Ủy ban nhân dân phường Bến Thành', "
            "NULL, 'ec-p256', 'ab', 'valid', :at, :at, :at)"), {"at": at})
    command.upgrade(alembic_config(url), "head")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT name_folded, organization_folded FROM officials")
                            ).one() == ("do thi ngoc anh anh.do@benthanh.hochiminhcity.gov.vn",
                                        "uy ban nhan dan phuong ben thanh")
        assert conn.execute(text("SELECT subject_folded, organization_folded FROM certificates")
                            ).one() == ("cn=do thi ngoc anh,o=uy ban nhan dan phuong ben thanh",
                                        "")
    engine.dispose()
