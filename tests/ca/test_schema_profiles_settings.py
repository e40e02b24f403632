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
