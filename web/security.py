"""Web security basics: secret key, session cookies, CSRF, upload limit, rate limits, headers."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from kyso.secret_key import load_secret_key
from kyso.settings import Settings

log = logging.getLogger("kyso.web")

# Multipart boundaries and part headers around an uploaded file: a file of exactly the
# configured size still fits in the request.
MULTIPART_OVERHEAD = 64 * 1024

# Strict by default; every page is same-origin HTML with one stylesheet and no script.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "X-Frame-Options": "DENY",
}

# Paths that never touch the session: they must not need (or create) the secret key.
_NO_SESSION_PATHS = frozenset({"/healthz"})

csrf = CSRFProtect()
# One limiter for the process (blueprints decorate their views with it at import time:
# `@limiter.limit(...)`); its storage comes from [web] ratelimit_storage in init_app.
limiter = Limiter(key_func=get_remote_address, headers_enabled=True, swallow_errors=True)


class _LazyKeySessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions whose key is read (or made) when the first request that may
    use the session opens it: building the app (CLI, OCSP-only workers) and health checks
    touch no secret file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not app.config.get("SECRET_KEY") and not _sessionless(request.path):
            with self._lock:
                if not app.config.get("SECRET_KEY"):
                    app.config["SECRET_KEY"] = load_secret_key(self.path)
        return super().open_session(app, request)


def _sessionless(path: str) -> bool:
    return path in _NO_SESSION_PATHS or path.startswith("/static/")


def upload_limit_bytes(settings: Settings) -> int:
    """The largest uploaded file, in bytes ([web] max_upload_mb, MiB)."""
    return settings.web.max_upload_mb * 2**20


def init_app(app: Flask, settings: Settings) -> None:
    """Session cookies, secret key, upload limit, CSRF (on every form), rate limits, headers.

    Call before any blueprint is registered, so that the rate limits are counted before the
    CSRF check and both run before any view."""
    web = settings.web
    app.config.update(
        SESSION_COOKIE_NAME="kyso_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=web.session_cookie_secure,
        MAX_CONTENT_LENGTH=upload_limit_bytes(settings) + MULTIPART_OVERHEAD,
        RATELIMIT_STORAGE_URI=web.ratelimit_storage,
        WTF_CSRF_SSL_STRICT=True,
    )
    app.session_interface = _LazyKeySessionInterface(web.secret_key_path(settings.data_dir))
    limiter.init_app(app)  # counted before CSRF: a flood of forged posts is limited too
    csrf.init_app(app)

    @app.after_request
    def _security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def exempt_from_csrf(*blueprints: object) -> None:
    """Machine endpoints (JSON API, RFC 3161) take no cookies, so no CSRF token either."""
    for bp in blueprints:
        csrf.exempt(bp)  # type: ignore[arg-type]
