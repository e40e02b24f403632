"""Composition root: builds the engine, the HSM token and the authority from settings."""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session, sessionmaker

from ca.audit import AuditSigner, SealPolicy, set_seal_policy
from ca.authority import Authority
from ca.crl import CrlPolicy, CrlService
from ca.db import make_engine, make_session_factory, migrate
from ca.issuance import PublicationUrls
from kyso.settings import Settings

if TYPE_CHECKING:
    from signer.tsa import TimestampAuthority

# How long a process keeps its TSA (key, certificate) before looking again for the newest
# valid certificate: a renewed or revoked TSA certificate is picked up within this.
TSA_RECHECK_SECONDS = 60


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
            urls=PublicationUrls(settings.base_url, delta_crls=settings.crl.delta),
            publish_dir=settings.publish_dir,
            lint=settings.lint,
            backdate=timedelta(seconds=settings.backdate_seconds),
            official_key_spec=settings.official_key_spec,
            official_validity_days=settings.official_validity_days,
            wrapping_key_label=settings.hsm.wrapping_key_label,
            trusted_wrapping_key=settings.hsm.trusted_wrapping_key,
            pin_max_attempts=settings.pin_max_attempts,
            online_token_label=settings.hsm.token_label,
        )
        # The audit key (HSM, opened on first use) and automatic seals of the audit chain
        # after writes through this engine (ca/audit.py).
        self.audit_signer = AuditSigner(self.token, settings.audit.key_label,
                                        sessions=self.sessions)
        set_seal_policy(self.engine, SealPolicy(self.audit_signer,
                                                settings.audit.seal_every_entries,
                                                settings.audit.seal_every_seconds))
        c = settings.crl
        self.crls = CrlService(self.authority, self.sessions, self.readers, CrlPolicy(
            next_update=timedelta(hours=c.next_update_hours),
            refresh_before=timedelta(hours=c.refresh_before_hours),
            delta=c.delta,
            after_change=timedelta(seconds=c.after_change_seconds),
        ), settings.publish_dir)

        self._tsa: TimestampAuthority | None = None
        self._tsa_at = 0.0
        self._tsa_lock = threading.Lock()

    def tsa(self) -> TimestampAuthority:
        """The timestamp authority ([tsa]): the HSM key `tsa.key_label` and the newest valid
        certificate of profile `tsa.profile` for that key. TsaUnavailable if either is
        missing or wrong (the error says which)."""
        with self._tsa_lock:
            if self._tsa is None or time.monotonic() - self._tsa_at > TSA_RECHECK_SECONDS:
                self._tsa = self._build_tsa()
                self._tsa_at = time.monotonic()
            return self._tsa

    def forget_tsa(self) -> None:
        """Take the TSA certificate afresh on next use (after a renewal; other processes
        notice within TSA_RECHECK_SECONDS, and the old certificate stays valid meanwhile)."""
        with self._tsa_lock:
            self._tsa = None

    def _build_tsa(self) -> TimestampAuthority:
        from cryptography import x509

        from ca import store
        from ca.issuance import spki_sha256
        from ca.models import TsaTokenRecord
        from hsm import HsmError
        from signer.errors import TsaUnavailable
        from signer.tsa import SqlTokenLedger, TimestampAuthority, TsaPolicy

        t = self.settings.tsa
        try:
            key = self.token().find_key(label=t.key_label)
        except HsmError as exc:
            raise TsaUnavailable(f"TSA key {t.key_label!r} not usable on the online token: "
                                 f"{exc}") from None
        with self.readers() as s:
            record = store.current_certificate_for_key(
                s, t.profile, spki_sha256(key.public_key()), datetime.now(UTC),
                serial=t.certificate_serial or None)
            if record is None:
                which = f" with serial {t.certificate_serial}" if t.certificate_serial else ""
                raise TsaUnavailable(f"no valid {t.profile!r} certificate{which} for the TSA "
                                     f"key {t.key_label!r}")
            cert = x509.load_der_x509_certificate(record.cert_der)  # type: ignore[arg-type]
            ca_name = store.get_ca_by_id(s, record.ca_id).name
        policy = TsaPolicy(t.policy_oid, t.accuracy_seconds, t.accuracy_millis,
                           t.accuracy_micros, t.include_chain, t.max_request_bytes)
        return TimestampAuthority(key, cert, self.authority.chain(ca_name), policy,
                                  SqlTokenLedger(self.sessions, TsaTokenRecord))

    def migrate(self) -> None:
        migrate(self.settings.db_url)

    def token(self) -> Any:
        """The HSM token, opened on first use (commands that only read never touch the HSM)."""
        with self._token_lock:
            if self._token is None:
                from hsm import Token

                hsm = self.settings.hsm
                self.prepare_hsm_env()
                so_pin = None
                if os.environ.get(hsm.so_pin_env) or hsm.so_pin_file:
                    so_pin = hsm.so_pin
                self._token = Token(
                    hsm.module, hsm.token_label, hsm.user_pin, pool_size=hsm.pool_size,
                    so_pin=so_pin,
                )
            return self._token

    def prepare_hsm_env(self) -> None:
        """SoftHSM2 reads its configuration when the module is loaded: set it before."""
        if self.settings.hsm.softhsm2_conf:
            os.environ["SOFTHSM2_CONF"] = str(self.settings.hsm.softhsm2_conf)

    def open_token(self, label: str, pin: str) -> Any:
        """Another token of the same module (an offline root's, opened in a ceremony)."""
        from hsm import Token

        self.prepare_hsm_env()
        return Token(self.settings.hsm.module, label, pin, pool_size=1)

    def close(self) -> None:
        with self._token_lock:
            if self._token is not None:
                self._token.close()
                self._token = None
        set_seal_policy(self.engine, None)
        self.engine.dispose()
