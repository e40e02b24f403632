"""Composition root: builds the engine, the HSM token and the authority from settings."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ca.authority import Authority
from ca.db import make_engine, make_session_factory, migrate
from ca.issuance import PublicationUrls
from kyso.settings import Settings


class Kyso:
    """Everything a command or the web app needs, wired once per process from one Settings."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = make_engine(settings.db_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        # For pure reads: never takes SQLite's write lock, so reads nest and never queue.
        self.readers: sessionmaker[Session] = make_session_factory(self.engine, read_only=True)
        self._token: Any = None
        self._token_lock = threading.Lock()
        self.authority = Authority(
            self.sessions,
            self.token,
            readers=self.readers,
            urls=PublicationUrls(settings.base_url),
            publish_dir=settings.publish_dir,
            lint=settings.lint,
            backdate=timedelta(seconds=settings.backdate_seconds),
            official_key_spec=settings.official_key_spec,
            official_validity_days=settings.official_validity_days,
            wrapping_key_label=settings.hsm.wrapping_key_label,
            trusted_wrapping_key=settings.hsm.trusted_wrapping_key,
            pin_max_attempts=settings.pin_max_attempts,
        )

    def migrate(self) -> None:
        migrate(self.settings.db_url)

    def token(self) -> Any:
        """The HSM token, opened on first use (commands that only read never touch the HSM)."""
        with self._token_lock:
            if self._token is None:
                from hsm import Token

                hsm = self.settings.hsm
                if hsm.softhsm2_conf:
                    # SoftHSM2 reads its configuration when the module is loaded.
                    os.environ["SOFTHSM2_CONF"] = str(hsm.softhsm2_conf)
                so_pin = None
                if os.environ.get(hsm.so_pin_env) or hsm.so_pin_file:
                    so_pin = hsm.so_pin
                self._token = Token(
                    hsm.module, hsm.token_label, hsm.user_pin, pool_size=hsm.pool_size,
                    so_pin=so_pin,
                )
            return self._token

    def close(self) -> None:
        with self._token_lock:
            if self._token is not None:
                self._token.close()
                self._token = None
        self.engine.dispose()
