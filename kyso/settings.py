"""Settings: one TOML file plus KYSO_-prefixed environment overrides, loaded once here."""

from __future__ import annotations

import os
import tomllib
from dataclasses import MISSING, dataclass, field, fields, is_dataclass, replace
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
class AuditSettings:
    """[audit]: when the audit chain head is signed with the HSM audit key (0 turns a trigger
    off; `kyso audit seal` and key ceremonies seal regardless)."""

    seal_every_entries: int = 500
    seal_every_seconds: int = 3600
    key_label: str = "kyso-audit"

    def __post_init__(self) -> None:
        for name in ("seal_every_entries", "seal_every_seconds"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting audit.{name}: must be 0 or more")
        if not self.key_label.strip():
            raise SettingsError("setting audit.key_label: must not be empty")


@dataclass(frozen=True)
class CrlSettings:
    """[crl]: validity and schedule of the CRLs of the online CAs (the web workers generate
    what is due; `kyso crl generate` does it by hand). Offline CAs' CRLs come from ceremonies."""

    next_update_hours: int = 48  # nextUpdate - thisUpdate
    refresh_before_hours: int = 24  # a new CRL when nextUpdate is this close
    delta: bool = True  # a delta CRL beside each full one; Freshest CRL in certificates
    after_change_seconds: int = 30  # a new CRL this long after a revocation, hold or release
    check_every_seconds: int = 10  # how often each web worker looks for due CRLs; 0: never

    def __post_init__(self) -> None:
        if self.next_update_hours < 1:
            raise SettingsError("setting crl.next_update_hours: must be at least 1")
        if self.refresh_before_hours >= self.next_update_hours:
            raise SettingsError("setting crl.refresh_before_hours: must be less than "
                                "crl.next_update_hours")
        for name in ("after_change_seconds", "check_every_seconds"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting crl.{name}: must be 0 or more")


@dataclass(frozen=True)
class OcspSettings:
    """[ocsp]: the OCSP responder (RFC 6960, RFC 5019 profile, nonces per RFC 8954)."""

    # Pre-signed responses: nextUpdate = thisUpdate + validity (never past the responder
    # certificate's notAfter); re-signed when less than refresh_margin is left.
    response_validity_seconds: int = 86400
    refresh_margin_seconds: int = 43200
    # "unknown" answers (never-issued serials) are signed on demand and kept this long.
    unknown_validity_seconds: int = 300
    # Delegated responder certificates (key `ocsp-<CA>` on the online token).
    responder_validity_days: int = 7
    responder_renew_days: int = 2
    # echo: a request with a nonce gets it back in a freshly signed response;
    # ignore: nonces are ignored and the pre-signed response is served (RFC 8954 allows it).
    nonce: str = "echo"
    max_request_bytes: int = 8192
    max_request_certs: int = 16
    # How often each responder process looks for status changes made by other processes.
    change_poll_ms: int = 1000
    cache_entries: int = 200000
    # HTTP Cache-Control max-age: never past nextUpdate, and at most this (0: up to
    # nextUpdate). Bounds how long an HTTP cache (nginx, a CDN) may hide a revocation.
    http_max_age_seconds: int = 300
    # `kyso ocsp serve`: gunicorn workers, and how often the refresh runs beside them.
    workers: int = 2
    refresh_interval_seconds: int = 300

    def __post_init__(self) -> None:
        for name in ("response_validity_seconds", "unknown_validity_seconds",
                     "responder_validity_days", "max_request_bytes", "max_request_certs",
                     "change_poll_ms", "cache_entries", "workers", "refresh_interval_seconds"):
            if getattr(self, name) < 1:
                raise SettingsError(f"setting ocsp.{name}: must be 1 or more")
        for name in ("refresh_margin_seconds", "responder_renew_days", "http_max_age_seconds"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting ocsp.{name}: must be 0 or more")
        if self.refresh_margin_seconds >= self.response_validity_seconds:
            raise SettingsError("setting ocsp.refresh_margin_seconds: must be less than "
                                "ocsp.response_validity_seconds")
        if self.responder_renew_days >= self.responder_validity_days:
            raise SettingsError("setting ocsp.responder_renew_days: must be less than "
                                "ocsp.responder_validity_days")
        if self.nonce not in ("echo", "ignore"):
            raise SettingsError('setting ocsp.nonce: must be "echo" or "ignore"')


@dataclass(frozen=True)
class TsaSettings:
    """[tsa]: the RFC 3161 timestamp authority served at /tsa and used in-process."""

    # Placeholder under IANA's documentation arc (RFC 5612); the center puts its own OID here.
    policy_oid: str = "1.3.6.1.4.1.32473.3161.1"
    accuracy_seconds: int = 1
    accuracy_millis: int = 0
    accuracy_micros: int = 0
    # The key on the online token, and its certificate: the newest valid certificate of
    # `profile` for that key (or exactly `certificate_serial`, lowercase hex, when set).
    key_label: str = "tsa-issuing"
    profile: str = "timestamping"
    certificate_serial: str = ""
    # certReq: also send the CAs above the TSA certificate (never the root).
    include_chain: bool = True
    max_request_bytes: int = 4096

    def __post_init__(self) -> None:
        import re

        if not re.fullmatch(r"[0-2](\.(0|[1-9][0-9]*))+", self.policy_oid):
            raise SettingsError("setting tsa.policy_oid: must be a dotted OID like 1.2.3.4")
        for name in ("accuracy_seconds", "accuracy_millis", "accuracy_micros"):
            if getattr(self, name) < 0:
                raise SettingsError(f"setting tsa.{name}: must be 0 or more")
        for name in ("accuracy_millis", "accuracy_micros"):
            if getattr(self, name) > 999:
                raise SettingsError(f"setting tsa.{name}: must be at most 999")
        if not (self.accuracy_seconds or self.accuracy_millis or self.accuracy_micros):
            raise SettingsError("setting tsa.accuracy_*: state an accuracy (not all 0)")
        if not self.key_label.strip():
            raise SettingsError("setting tsa.key_label: must not be empty")
        if self.max_request_bytes < 64:
            raise SettingsError("setting tsa.max_request_bytes: must be 64 or more")
        if self.certificate_serial and not re.fullmatch(r"[0-9a-f]+", self.certificate_serial):
            raise SettingsError("setting tsa.certificate_serial: lowercase hex")


@dataclass(frozen=True)
class WebSettings:
    """[web]: the web app's own security settings (session secret, uploads, rate limits)."""

    # The key signing session cookies and CSRF tokens: a file of random bytes, made (0600,
    # 32 bytes) on first use when missing. Empty: <data_dir>/secrets/web-secret.key; a
    # relative path is relative to the data directory. Every worker must read the same file.
    secret_key_file: str = ""
    max_upload_mb: int = 50  # largest upload (MiB); larger requests get a clear 413
    # Secure session cookies (sent over HTTPS only). false only for a plain-http local demo.
    session_cookie_secure: bool = True
    # Flask-Limiter storage: memory:// counts per worker process; share the counts between
    # workers and hosts with e.g. "redis://127.0.0.1:6379/0" in production.
    ratelimit_storage: str = "memory://"
    verify_rate_limit: str = "30/minute"  # POST /verify per client address
    sign_rate_limit: str = "60/minute"  # POST /api/v1/sign per client address
    # Accounts: failed logins (password or code) in a row before an account is locked (an
    # operator or admin unlocks it); POST /login and /login/totp per client address; how long
    # a login lasts.
    login_max_failures: int = 5
    login_rate_limit: str = "10/minute"
    session_hours: int = 8

    def __post_init__(self) -> None:
        if self.max_upload_mb < 1:
            raise SettingsError("setting web.max_upload_mb: must be 1 or more")
        if "://" not in self.ratelimit_storage:
            raise SettingsError('setting web.ratelimit_storage: a storage URI like "memory://" '
                                'or "redis://host:6379/0"')
        try:
            from limits import parse_many

            parse_many(self.verify_rate_limit)
        except ValueError:
            raise SettingsError(f"setting web.verify_rate_limit: {self.verify_rate_limit!r} is "
                                'not a rate limit like "30/minute"') from None
        try:
            parse_many(self.sign_rate_limit)
        except ValueError:
            raise SettingsError(f"setting web.sign_rate_limit: {self.sign_rate_limit!r} is "
                                'not a rate limit like "60/minute"') from None
        if self.login_max_failures < 1:
            raise SettingsError("setting web.login_max_failures: must be 1 or more")
        if not 1 <= self.session_hours <= 24 * 7:
            raise SettingsError("setting web.session_hours: must be between 1 and 168")
        try:
            from limits import parse_many

            parse_many(self.login_rate_limit)
        except ValueError:
            raise SettingsError(f"setting web.login_rate_limit: {self.login_rate_limit!r} is "
                                'not a rate limit like "10/minute"') from None

    def secret_key_path(self, data_dir: Path) -> Path:
        """Where the secret key lives (see secret_key_file)."""
        if not self.secret_key_file:
            return data_dir / "secrets" / "web-secret.key"
        path = Path(self.secret_key_file)
        return path if path.is_absolute() else data_dir / path


@dataclass(frozen=True)
class LifecycleSettings:
    """[lifecycle]: expiry warnings to officials and the renewal of service certificates."""

    # Days before notAfter at which an official is mailed about an expiring certificate:
    # one mail per certificate and threshold, the tightest one reached (a certificate found
    # 5 days before expiry gets the 7-day mail, never a late 30-day one). The portal warns
    # within the largest. TOML list [30, 7, 1] or "30,7,1" (KYSO_LIFECYCLE_WARN_DAYS).
    warn_days: tuple[int, ...] = (30, 7, 1)
    # The TSA certificate is renewed (same key) this close to its notAfter. OCSP responder
    # certificates follow ocsp.responder_renew_days.
    service_renew_days: int = 30
    # How often each web worker runs the lifecycle job: due mail is delivered every time,
    # the daily part (warnings, renewals) once per day (Vietnam time). 0: never (run
    # `kyso lifecycle daily` from cron instead).
    check_every_seconds: int = 300

    def __post_init__(self) -> None:
        if any(d < 1 or d > 3650 for d in self.warn_days):
            raise SettingsError("setting lifecycle.warn_days: each must be between 1 and 3650")
        # Frozen: normalise through object.__setattr__ (largest first, no repeats).
        object.__setattr__(self, "warn_days", tuple(sorted(set(self.warn_days), reverse=True)))
        if self.service_renew_days < 1:
            raise SettingsError("setting lifecycle.service_renew_days: must be 1 or more")
        if self.check_every_seconds < 0:
            raise SettingsError("setting lifecycle.check_every_seconds: must be 0 or more")


@dataclass(frozen=True)
class SmtpSettings:
    """[smtp]: where the mail outbox is delivered. Until `host` is set, mail is only queued
    (nothing is lost: `kyso lifecycle mail --send` delivers it once the server is there)."""

    host: str = ""
    port: int = 25
    # Login only when username is set; the password is read from the environment variable
    # named here, never written in the settings file.
    username: str = ""
    password_env: str = "KYSO_SMTP_PASSWORD"
    starttls: bool = True
    from_address: str = "kyso@localhost"
    timeout: int = 10  # seconds, per SMTP command
    # A temporary failure (server down, 4xx) is retried after retry_base_seconds, doubling
    # each attempt up to retry_max_seconds; a 5xx for the recipient fails the message.
    retry_base_seconds: int = 60
    retry_max_seconds: int = 3600

    def __post_init__(self) -> None:
        import re

        if not 1 <= self.port <= 65535:
            raise SettingsError("setting smtp.port: must be between 1 and 65535")
        if not re.fullmatch(r"[^@\s<>]+@[^@\s<>]+", self.from_address):
            raise SettingsError("setting smtp.from_address: an address like kyso@example.vn")
        if self.timeout < 1:
            raise SettingsError("setting smtp.timeout: must be 1 or more")
        if self.retry_base_seconds < 1:
            raise SettingsError("setting smtp.retry_base_seconds: must be 1 or more")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise SettingsError("setting smtp.retry_max_seconds: must be at least "
                                "smtp.retry_base_seconds")
        if self.username and not self.password_env.strip():
            raise SettingsError("setting smtp.password_env: name the environment variable "
                                "holding the password of smtp.username")
        if (self.username and not self.starttls
                and self.host not in ("127.0.0.1", "::1", "localhost")):
            raise SettingsError("setting smtp.starttls: must be true when smtp.username is "
                                "set (the password would cross the network in clear)")

    def password(self) -> str:
        """The SMTP password, from the environment variable `password_env`."""
        return _read_secret(self.password_env, "", "SMTP password")


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
    audit: AuditSettings = field(default_factory=AuditSettings)
    crl: CrlSettings = field(default_factory=CrlSettings)
    ocsp: OcspSettings = field(default_factory=OcspSettings)
    tsa: TsaSettings = field(default_factory=TsaSettings)
    web: WebSettings = field(default_factory=WebSettings)
    lifecycle: LifecycleSettings = field(default_factory=LifecycleSettings)
    smtp: SmtpSettings = field(default_factory=SmtpSettings)
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
    if kind is tuple:  # a list of whole numbers: TOML [30, 7, 1] or "30,7,1"
        items = value if isinstance(value, list) else str(value).split(",")
        try:
            return tuple(int(str(v).strip()) for v in items if str(v).strip())
        except ValueError:
            raise SettingsError(f"setting {name}: expected whole numbers like 30,7,1, "
                                f"got {value!r}") from None
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
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise SettingsError(f"setting {prefix}{key} must be a table")
            changes[key] = _apply(current, value, f"{prefix}{key}.")
        else:
            changes[key] = _coerce(prefix + key, value, current)
    return replace(obj, **changes)


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # Sections ([hsm], [audit], ...): KYSO_<SECTION>_<KEY> overrides section.key.
    sections = {f.name: {g.name for g in fields(f.default_factory())}  # type: ignore[misc]
                for f in fields(Settings) if f.default_factory is not MISSING}
    top_names = {f.name for f in fields(Settings)} - set(sections) - {"config_path"}
    for key, value in environ.items():
        if not key.startswith("KYSO_"):
            continue
        name = key[5:].lower()
        section = next((sec for sec in sections if name.startswith(sec + "_")
                        and name[len(sec) + 1:] in sections[sec]), None)
        if section is not None:
            out.setdefault(section, {})[name[len(section) + 1:]] = value
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
