"""Accounts of the web app: create, password and TOTP checks, replay guard, lock-out, unlock."""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import audit
from ca.errors import CAError
from ca.models import AccountRecord, OfficialRecord

ROLES = ("official", "operator", "auditor", "admin")
MAX_USERNAME = 64
MAX_PASSWORD = 1024
MIN_PASSWORD = 12
TOTP_STEP = 30
TOTP_DIGITS = 6
TOTP_ISSUER = "kyso"
_HKDF_INFO = b"kyso accounts totp-secret v1"
_NONCE_BYTES = 12

# argon2id (argon2-cffi's defaults: RFC 9106 low-memory profile).
_hasher = PasswordHasher()
# Verified against when the username is unknown, so that answer takes as long as a wrong
# password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash("kyso: no such account")

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class AccountError(CAError):
    """An account cannot be created or changed as asked."""

    code = "account_invalid"
    http_status = 400


class Outcome(Enum):
    """The answer to one login step."""

    OK = "ok"
    WRONG = "wrong"  # wrong username, password or code (including a replayed code)
    LOCKED = "locked"  # locked now or before: an operator must unlock it


@dataclass(frozen=True)
class LoginStep:
    outcome: Outcome
    account_id: int | None = None


# -- the TOTP secret at rest -----------------------------------------------------------------

def totp_key(secret_key: bytes) -> bytes:
    """The AES-256-GCM key sealing TOTP secrets: HKDF-SHA256 of the web secret key."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=_HKDF_INFO).derive(secret_key)


def _aad(username: str) -> bytes:
    # Bound to the account: a sealed secret copied to another row does not open.
    return b"kyso-totp:" + username.encode("utf-8")


def seal_secret(key: bytes, username: str, secret: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode("ascii"), _aad(username))


def open_secret(key: bytes, username: str, sealed: bytes) -> str | None:
    """The TOTP secret, or None when it cannot be opened (another secret key, tampering)."""
    try:
        plain = AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:],
                                    _aad(username))
    except (InvalidTag, ValueError):
        return None
    return plain.decode("ascii")


def provisioning_uri(secret: str, username: str) -> str:
    """The otpauth:// URI an authenticator app reads (show it once, as text or QR code)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
        name=username, issuer_name=TOTP_ISSUER)


# -- reading ---------------------------------------------------------------------------------

def roles_of(account: AccountRecord) -> tuple[str, ...]:
    return tuple(r for r in account.roles.split(",") if r)


def find(session: Session, username: str) -> AccountRecord | None:
    return session.scalars(
        select(AccountRecord).where(AccountRecord.username == username)).one_or_none()


def get(session: Session, account_id: int) -> AccountRecord | None:
    return session.get(AccountRecord, account_id)


def _obj(username: str) -> str:
    return f"account:{username}"


# -- creating and changing -------------------------------------------------------------------

def _check_roles(roles: Iterable[str]) -> tuple[str, ...]:
    wanted = tuple(dict.fromkeys(r.strip().lower() for r in roles))
    if not wanted:
        raise AccountError("an account needs at least one role")
    unknown = [r for r in wanted if r not in ROLES]
    if unknown:
        raise AccountError(f"unknown role {unknown[0]!r}; roles: {', '.join(ROLES)}")
    return wanted


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise AccountError(f"the password must have at most {MAX_PASSWORD} characters")


def create_account(session: Session, *, username: str, password: str, roles: Iterable[str],
                   key: bytes, display_name: str | None = None,
                   official_id: int | None = None, actor: str = "system",
                   clock: Clock = _now) -> tuple[AccountRecord, str]:
    """A new account with a fresh TOTP secret (returned once, in clear, for enrolment);
    audited as `account.create` in the caller's transaction."""
    username = username.strip()
    if not username or len(username) > MAX_USERNAME or not username.isprintable() \
            or any(c.isspace() for c in username):
        raise AccountError(f"a username has 1 to {MAX_USERNAME} characters, no spaces")
    check_password_rules(password)
    wanted = _check_roles(roles)
    if official_id is not None and session.get(OfficialRecord, official_id) is None:
        raise AccountError(f"no official with id {official_id}")
    if "official" in wanted and official_id is None:
        raise AccountError("an account with the role official needs --official ID")
    if find(session, username) is not None:
        raise AccountError(f"the username {username!r} is taken")
    now = clock()
    secret = pyotp.random_base32()
    account = AccountRecord(
        username=username, display_name=(display_name or username)[:128],
        password_hash=_hasher.hash(password), totp_secret=seal_secret(key, username, secret),
        roles=",".join(wanted), official_id=official_id, failed_logins=0, locked=False,
        last_totp_step=0, created_at=now, password_changed_at=now)
    session.add(account)
    session.flush()
    audit.record(session, actor=actor, action="account.create", obj=_obj(username),
                 details={"roles": list(wanted), "official_id": official_id}, clock=clock)
    return account, secret


def enrol_totp(session: Session, account: AccountRecord, *, key: bytes, actor: str,
               clock: Clock = _now) -> str:
    """A new TOTP secret for the account (the old one stops working); returned once."""
    secret = pyotp.random_base32()
    account.totp_secret = seal_secret(key, account.username, secret)
    account.last_totp_step = 0
    audit.record(session, actor=actor, action="account.totp.enrol",
                 obj=_obj(account.username), clock=clock)
    return secret


def unlock(session: Session, username: str, *, actor: str, clock: Clock = _now) -> None:
    """Unlock the account and clear its failure count (an operator's or admin's act)."""
    account = find(session, username)
    if account is None:
        raise AccountError(f"no account {username!r}")
    account.locked = False
    account.failed_logins = 0
    audit.record(session, actor=actor, action="account.unlock", obj=_obj(username),
                 clock=clock)


# -- logging in ------------------------------------------------------------------------------

def _fail(session: Session, account: AccountRecord, step: str, max_failures: int,
          request_id: str | None, clock: Clock) -> LoginStep:
    account.failed_logins += 1
    audit.record(session, actor=_obj(account.username), action="account.login",
                 obj=_obj(account.username), outcome="failure",
                 details={"step": step, "failed_logins": account.failed_logins},
                 request_id=request_id, clock=clock)
    if account.failed_logins >= max_failures:
        account.locked = True
        audit.record(session, actor="system", action="account.lock",
                     obj=_obj(account.username),
                     details={"failed_logins": account.failed_logins},
                     request_id=request_id, clock=clock)
        return LoginStep(Outcome.LOCKED, account.id)
    return LoginStep(Outcome.WRONG, account.id)


def check_password(session: Session, username: str, password: str, *, max_failures: int,
                   request_id: str | None = None, clock: Clock = _now) -> LoginStep:
    """The first step. Failures are counted and audited in `session`: commit it whatever the
    outcome."""
    account = find(session, username)
    if account is None:
        try:
            _hasher.verify(_DUMMY_HASH, password)
        except VerificationError:
            pass
        return LoginStep(Outcome.WRONG)
    if account.locked:
        return LoginStep(Outcome.LOCKED, account.id)
    try:
        _hasher.verify(account.password_hash, password)
    except (VerificationError, InvalidHashError):
        return _fail(session, account, "password", max_failures, request_id, clock)
    if _hasher.check_needs_rehash(account.password_hash):
        account.password_hash = _hasher.hash(password)
    return LoginStep(Outcome.OK, account.id)


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step (one before to one after now, for clock drift) whose code this is."""
    if len(code) != TOTP_DIGITS or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    current = int(now.timestamp()) // TOTP_STEP
    for step in (current - 1, current, current + 1):
        if hmac.compare_digest(totp.at(step * TOTP_STEP), code):
            return step
    return None


def check_totp(session: Session, account_id: int, code: str, *, key: bytes,
               max_failures: int, request_id: str | None = None,
               clock: Clock = _now) -> LoginStep:
    """The second step. A code is accepted once: its step must be later than the last one
    accepted (replay guard). Success resets the failure count and is audited."""
    account = get(session, account_id)
    if account is None:
        return LoginStep(Outcome.WRONG)
    if account.locked:
        return LoginStep(Outcome.LOCKED, account.id)
    secret = open_secret(key, account.username, account.totp_secret or b"")
    step = _matching_step(secret, code.strip(), clock()) if secret else None
    if step is None or step <= account.last_totp_step:
        return _fail(session, account, "totp" if step is None else "totp-replay",
                     max_failures, request_id, clock)
    account.last_totp_step = step
    account.failed_logins = 0
    audit.record(session, actor=_obj(account.username), action="account.login",
                 obj=_obj(account.username), request_id=request_id, clock=clock)
    return LoginStep(Outcome.OK, account.id)


__all__ = [
    "MAX_PASSWORD",
    "MAX_USERNAME",
    "ROLES",
    "AccountError",
    "LoginStep",
    "Outcome",
    "check_password",
    "check_totp",
    "create_account",
    "enrol_totp",
    "find",
    "get",
    "open_secret",
    "provisioning_uri",
    "roles_of",
    "seal_secret",
    "totp_key",
    "unlock",
]
