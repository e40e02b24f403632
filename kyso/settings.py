"""Settings: one TOML file plus KYSO_-prefixed environment overrides, loaded once here."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path("var")
DEFAULT_SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class SettingsError(Exception):
    """The settings file or an override is wrong; the message says which key and why."""


@dataclass(frozen=True)
class HsmSettings:
    module: str = DEFAULT_SOFTHSM_MODULE
    token_label: str = "kyso"
    # Secrets are referenced, never stored: an environment variable name or a file path.
    pin_env: str = "KYSO_HSM_PIN"
    pin_file: str = ""
    so_pin_env: str = "KYSO_HSM_SO_PIN"
    so_pin_file: str = ""
    softhsm2_conf: str = ""
    pool_size: int = 4
    wrapping_key_label: str = "kyso-official-wrap"
    # CKA_TRUSTED wrapping key (officials' keys then carry CKA_WRAP_WITH_TRUSTED). Only the SO
    # can make one, and SoftHSM2 stores such a public object unencrypted on disk: off there,
    # on for a real HSM that keeps trusted keys private.
    trusted_wrapping_key: bool = False

    def user_pin(self) -> str:
        return _read_secret(self.pin_env, self.pin_file, "HSM user PIN")

    def so_pin(self) -> str:
        return _read_secret(self.so_pin_env, self.so_pin_file, "HSM security-officer PIN")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    database_url: str = ""
    # Public base URL of the repository: CRL distribution points and AIA URLs are built from it.
    base_url: str = "http://127.0.0.1:8000"
    backdate_seconds: int = 120
    official_key_spec: str = "ec-p256"
    official_validity_days: int = 730
    pin_max_attempts: int = 5
    lint: bool = True
    hsm: HsmSettings = field(default_factory=HsmSettings)
    config_path: Path | None = None

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'kyso.db').resolve()}"

    @property
    def publish_dir(self) -> Path:
        return self.data_dir / "published"

    def crl_url(self, ca_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/crl/{ca_name}.crl"

    def ca_issuers_url(self, ca_name: str) -> str:
        return f"{self.base_url.rstrip('/')}/ca/{ca_name}.crt"

    def ocsp_url(self) -> str:
        return f"{self.base_url.rstrip('/')}/ocsp"


def _read_secret(env_name: str, file_path: str, what: str) -> str:
    if file_path:
        try:
            value = Path(file_path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise SettingsError(
                f"cannot read the {what} file {file_path}: {exc.strerror}"
            ) from None
        if not value:
            raise SettingsError(f"the {what} file {file_path} is empty")
        return value
    value = os.environ.get(env_name, "")
    if not value:
        raise SettingsError(
            f"the {what} is not set: export {env_name} or name a file in the settings"
        )
    return value


def _coerce(name: str, value: Any, target: Any) -> Any:
    kind = type(target)
    if isinstance(target, Path) or name == "data_dir":
        return Path(value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"setting {name}: expected true or false, got {value!r}")
    if kind is int:
        try:
            return int(value)
        except (TypeError, ValueError):
            raise SettingsError(f"setting {name}: expected a whole number, got {value!r}") from None
    if not isinstance(value, str):
        raise SettingsError(f"setting {name}: expected text, got {value!r}")
    return value


def _apply(obj: Any, values: dict[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(obj) if f.name != "config_path"}
    changes: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"unknown setting {prefix}{key}")
        current = getattr(obj, key)
        if isinstance(current, HsmSettings):
            if not isinstance(value, dict):
                raise SettingsError(f"setting {prefix}{key} must be a table")
            changes[key] = _apply(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(prefix + key, value, current)
    return replace(obj, **changes)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hsm_names = {f.name for f in fields(HsmSettings)}
    top_names = {f.name for f in fields(Settings)} - {"hsm", "config_path"}
    for key, value in environ.items():
        if not key.startswith("KYSO_"):
            continue
        name = key[5:].lower()
        if name.startswith("hsm_") and name[4:] in hsm_names:
            out.setdefault("hsm", {})[name[4:]] = value
        elif name in top_names:
            out[name] = value
    return out


def load_settings(
    config: str | Path | None = None, environ: dict[str, str] | None = None
) -> Settings:
    """Read the settings file (if any) and apply KYSO_* environment overrides.

    The file is `config`, else $KYSO_CONFIG, else `var/kyso.toml` when it exists.
    """
    env = dict(os.environ if environ is None else environ)
    path = Path(config) if config else Path(env["KYSO_CONFIG"]) if env.get("KYSO_CONFIG") else None
    if path is None and (DEFAULT_DATA_DIR / "kyso.toml").exists():
        path = DEFAULT_DATA_DIR / "kyso.toml"
    settings = Settings()
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SettingsError(f"settings file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"settings file {path} is not valid TOML: {exc}") from None
        settings = _apply(settings, raw, "")
        settings = replace(settings, config_path=path)
        if "data_dir" not in raw:
            settings = replace(settings, data_dir=path.parent)
        elif not settings.data_dir.is_absolute():
            settings = replace(settings, data_dir=path.parent / settings.data_dir)
        settings = replace(settings, hsm=_relative_to(settings.hsm, path.parent))
    # KYSO_CONFIG names the file, it is not a setting.
    env.pop("KYSO_CONFIG", None)
    return _apply(settings, _env_overrides(env), "")


def _relative_to(hsm: HsmSettings, base: Path) -> HsmSettings:
    """Paths in the settings file are relative to the file, so a data directory can move."""
    changes = {}
    for name in ("pin_file", "so_pin_file", "softhsm2_conf"):
        value = getattr(hsm, name)
        if value and not Path(value).is_absolute():
            changes[name] = str((base / value).resolve())
    return replace(hsm, **changes)
