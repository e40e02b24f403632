"""The Flask application factory: settings in, one Kyso per worker process, blueprints wired."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from flask import Flask, current_app

from kyso.settings import Settings, load_settings
from web.security import SECURITY_HEADERS

__all__ = ["SECURITY_HEADERS", "KysoExtension", "create_app", "get_kyso"]

if TYPE_CHECKING:
    from kyso.app import Kyso

class KysoExtension:
    """Builds the Kyso wiring on first use in each process (gunicorn forks after import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._kyso: Kyso | None = None
        self._pid = 0

    def init_app(self, app: Flask) -> None:
        app.extensions["kyso"] = self

    def start_background(self) -> None:
        """Background work of a serving process (call it in each worker, after fork): the
        CRL scheduler and the renewal of OCSP responder certificates."""
        from web.background import Periodic
        from web.crl import generate_due
        from web.ocsp import renew_responders

        Periodic("kyso-crl", self.settings.crl.check_every_seconds,
                 lambda: generate_due(self.get())).start()
        Periodic("kyso-ocsp-renew", self.settings.ocsp.refresh_interval_seconds,
                 lambda: renew_responders(self.get())).start()
        # Expiry warnings and TSA renewal once a day, the mail outbox every tick (kyso/mailer.py).
        from kyso.mailer import background_job
        Periodic("kyso-lifecycle", self.settings.lifecycle.check_every_seconds,
                 lambda: background_job(self.get())).start()

    def get(self) -> Kyso:
        pid = os.getpid()
        with self._lock:
            if self._kyso is None or self._pid != pid:
                from kyso.app import Kyso

                # A copy inherited over fork() shares pooled connections with the parent:
                # never reuse it, build a fresh one for this process.
                self._kyso = Kyso(self.settings)
                self._pid = pid
            return self._kyso


def get_kyso() -> Kyso:
    """The Kyso of the current app and process (the HSM is not opened by this)."""
    ext: KysoExtension = current_app.extensions["kyso"]
    return ext.get()


def create_app(settings: Settings | None = None) -> Flask:
    """Build the web app; settings are loaded (file + KYSO_* overrides) when not given."""
    from web import api, crl, errors, i18n, repository, security, tsa, verify

    app = Flask(__name__)
    app.config["KYSO_SETTINGS"] = settings if settings is not None else load_settings()
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    KysoExtension(app.config["KYSO_SETTINGS"]).init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    # Secret key, session cookies, upload limit, rate limits, CSRF and the security headers:
    # before the blueprints, so their checks run ahead of any view.
    security.init_app(app, app.config["KYSO_SETTINGS"])
    app.register_blueprint(repository.bp)
    app.register_blueprint(verify.bp)
    # /ocsp is a raw WSGI app beside Flask: lean, and it reads the raw (undecoded) path.
    from werkzeug.middleware.dispatcher import DispatcherMiddleware

    from web.ocsp import create_ocsp_app

    ocsp_app = create_ocsp_app(app.config["KYSO_SETTINGS"], app.extensions["kyso"])
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {"/ocsp": ocsp_app})  # type: ignore[method-assign]
    app.register_blueprint(crl.bp)
    app.register_blueprint(tsa.bp)
    app.register_blueprint(api.bp)
    from web import auth

    auth.init_app(app)  # /login, /logout, /account and the nav's account corner
    from web import tokens

    app.register_blueprint(tokens.bp)  # /account/tokens: the official's API tokens
    from web import admin, audit_view, cert_requests, console, portal

    app.register_blueprint(portal.bp)  # /portal: officials' certificates and signing
    app.register_blueprint(cert_requests.bp)  # certificate / renewal requests, both sides
    app.register_blueprint(console.bp)  # /console: operators
    from web.console_reorg import bp as reorg_bp

    app.register_blueprint(reorg_bp)  # /console/reorg: bulk reissue after a reorganization
    app.register_blueprint(audit_view.bp)  # /audit: auditors
    app.register_blueprint(admin.bp)  # /admin: administrators
    from web.account_security import bp as account_security_bp

    app.register_blueprint(account_security_bp)  # /account/password, /account/totp: one's own
    # Machine clients (JSON API, RFC 3161 queries) send no cookies: no CSRF token to check.
    security.exempt_from_csrf(api.bp, tsa.bp)
    return app
