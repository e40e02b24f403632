"""Accounts of the web app: create, password and TOTP checks, replay guard, lock-out, unlock."""

from __future__ import annotations

import hmac
import os
import secrets
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
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ca import audit
from ca.errors import CAError
from ca.models import AccountRecord, AuditEventRecord, OfficialRecord

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


def _pending_aad(username: str) -> bytes:
    # A secret waiting for confirmation never opens as an enrolled one, nor the reverse.
    return b"kyso-totp-pending:" + username.encode("utf-8")


def _seal(key: bytes, aad: bytes, secret: str) -> bytes:
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode("ascii"), aad)


def _open(key: bytes, aad: bytes, sealed: bytes) -> str | None:
    try:
        plain = AESGCM(key).decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
    except (InvalidTag, ValueError):
        return None
    return plain.decode("ascii")


def seal_secret(key: bytes, username: str, secret: str) -> bytes:
    return _seal(key, _aad(username), secret)


def open_secret(key: bytes, username: str, sealed: bytes) -> str | None:
    """The TOTP secret, or None when it cannot be opened (another secret key, tampering)."""
    return _open(key, _aad(username), sealed)


def seal_pending_secret(key: bytes, username: str, secret: str) -> bytes:
    """A new TOTP secret sealed for the time until its owner confirms it (kept in the web
    session, which is signed but not encrypted)."""
    return _seal(key, _pending_aad(username), secret)


def open_pending_secret(key: bytes, username: str, sealed: bytes) -> str | None:
    return _open(key, _pending_aad(username), sealed)


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
                   request_id: str | None = None,
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
                 details={"roles": list(wanted), "official_id": official_id},
                 request_id=request_id, clock=clock)
    return account, secret


def enrol_totp(session: Session, account: AccountRecord, *, key: bytes, actor: str,
               request_id: str | None = None, clock: Clock = _now) -> str:
    """A new TOTP secret for the account (the old one stops working); returned once."""
    secret = pyotp.random_base32()
    account.totp_secret = seal_secret(key, account.username, secret)
    account.last_totp_step = 0
    audit.record(session, actor=actor, action="account.totp.enrol",
                 obj=_obj(account.username), request_id=request_id, clock=clock)
    return secret


def unlock(session: Session, username: str, *, actor: str, request_id: str | None = None,
           clock: Clock = _now) -> None:
    """Unlock the account and clear its failure count (an operator's or admin's act)."""
    account = find(session, username)
    if account is None:
        raise AccountError(f"no account {username!r}")
    account.locked = False
    account.failed_logins = 0
    audit.record(session, actor=actor, action="account.unlock", obj=_obj(username),
                 request_id=request_id, clock=clock)


# -- logging in ------------------------------------------------------------------------------

def _fail(session: Session, account: AccountRecord, step: str, max_failures: int,
          request_id: str | None, clock: Clock, action: str = "account.login") -> LoginStep:
    account.failed_logins += 1
    audit.record(session, actor=_obj(account.username), action=action,
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


# -- self-service: the account's own password and second factor -----------------------------

def random_password() -> str:
    """A random initial or reset password: 20 URL-safe characters (120 bits)."""
    return secrets.token_urlsafe(15)


def _password_ok(account: AccountRecord, password: str) -> bool:
    try:
        return bool(_hasher.verify(account.password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def change_password(session: Session, account_id: int, current: str, new: str, *,
                    max_failures: int, request_id: str | None = None,
                    clock: Clock = _now) -> Outcome:
    """The account's own password change, audited as `account.password.change`.

    OK: changed; `password_changed_at` moves to now, so every session logged in before ends.
    WRONG: the current password is wrong; counted like a failed login (it may lock the
    account: LOCKED), so commit `session` whatever the outcome. AccountError when the new
    password breaks the rules (nothing counted)."""
    check_password_rules(new)
    account = get(session, account_id)
    if account is None:
        return Outcome.WRONG
    if account.locked:
        return Outcome.LOCKED
    if not _password_ok(account, current):
        return _fail(session, account, "password", max_failures, request_id, clock,
                     action="account.password.change").outcome
    if hmac.compare_digest(current.encode("utf-8"), new.encode("utf-8")):
        raise AccountError("the new password must differ from the current one")
    account.password_hash = _hasher.hash(new)
    account.password_changed_at = clock()
    audit.record(session, actor=_obj(account.username), action="account.password.change",
                 obj=_obj(account.username), request_id=request_id, clock=clock)
    return Outcome.OK


@dataclass(frozen=True)
class TotpChange:
    """The first step of changing the second factor: a new secret, not in force yet."""

    outcome: Outcome
    secret: str | None = None  # base32, to show once (provisioning_uri for the QR code)
    sealed: bytes | None = None  # the same, sealed (seal_pending_secret) until confirmed


def start_totp_change(session: Session, account_id: int, password: str, *, key: bytes,
                      max_failures: int, request_id: str | None = None,
                      clock: Clock = _now) -> TotpChange:
    """Check the current password (a wrong one counts like a failed login) and make a new
    secret; the old one stays in force until `confirm_totp_change`."""
    account = get(session, account_id)
    if account is None:
        return TotpChange(Outcome.WRONG)
    if account.locked:
        return TotpChange(Outcome.LOCKED)
    if not _password_ok(account, password):
        step = _fail(session, account, "password", max_failures, request_id, clock,
                     action="account.totp.change")
        return TotpChange(step.outcome)
    secret = pyotp.random_base32()
    return TotpChange(Outcome.OK, secret, seal_pending_secret(key, account.username, secret))


def confirm_totp_change(session: Session, account_id: int, sealed: bytes, code: str, *,
                        key: bytes, request_id: str | None = None,
                        clock: Clock = _now) -> bool:
    """Put the pending secret in force if `code` comes from it (audited as
    `account.totp.change`); False, and nothing changed, otherwise."""
    account = get(session, account_id)
    if account is None or account.locked:
        return False
    secret = open_pending_secret(key, account.username, sealed)
    step = _matching_step(secret, code.strip(), clock()) if secret else None
    if secret is None or step is None:
        return False
    account.totp_secret = seal_secret(key, account.username, secret)
    account.last_totp_step = step  # this code cannot log in again (replay guard)
    audit.record(session, actor=_obj(account.username), action="account.totp.change",
                 obj=_obj(account.username), request_id=request_id, clock=clock)
    return True


# -- administration ----------------------------------------------------------------------------

@dataclass(frozen=True)
class AccountInfo:
    """One account as the administrators' list shows it."""

    id: int
    username: str
    display_name: str
    roles: tuple[str, ...]
    official_id: int | None
    official_name: str | None
    locked: bool
    failed_logins: int
    totp_enrolled: bool
    created_at: datetime
    last_login: datetime | None  # the newest successful login in the audit log


def _last_logins(session: Session, objects: list[str] | None = None) -> dict[str, datetime]:
    ev = AuditEventRecord
    stmt = (select(ev.object, func.max(ev.at))
            .where(ev.action == "account.login", ev.outcome == "success")
            .group_by(ev.object))
    if objects is not None:
        stmt = stmt.where(ev.object.in_(objects))
    return {obj: at for obj, at in session.execute(stmt)}


def _info(account: AccountRecord, official_name: str | None,
          last_login: datetime | None) -> AccountInfo:
    return AccountInfo(account.id, account.username, account.display_name, roles_of(account),
                       account.official_id, official_name, account.locked,
                       account.failed_logins, bool(account.totp_secret), account.created_at,
                       last_login)


def list_accounts(session: Session) -> list[AccountInfo]:
    rows = session.execute(
        select(AccountRecord, OfficialRecord.name)
        .outerjoin(OfficialRecord, OfficialRecord.id == AccountRecord.official_id)
        .order_by(AccountRecord.username)).all()
    logins = _last_logins(session)
    return [_info(a, name, logins.get(_obj(a.username))) for a, name in rows]


def account_info(session: Session, account_id: int) -> AccountInfo | None:
    account = get(session, account_id)
    if account is None:
        return None
    official = (session.get(OfficialRecord, account.official_id)
                if account.official_id is not None else None)
    login = _last_logins(session, [_obj(account.username)]).get(_obj(account.username))
    return _info(account, official.name if official is not None else None, login)


def set_roles(session: Session, account: AccountRecord, roles: Iterable[str], *,
              official_id: int | None, actor: str, request_id: str | None = None,
              clock: Clock = _now) -> None:
    """Replace the roles and the linked official (audited as `account.roles.change`)."""
    wanted = _check_roles(roles)
    if official_id is not None and session.get(OfficialRecord, official_id) is None:
        raise AccountError(f"no official with id {official_id}")
    if "official" in wanted and official_id is None:
        raise AccountError("an account with the role official needs an official id")
    before = {"roles": list(roles_of(account)), "official_id": account.official_id}
    after = {"roles": list(wanted), "official_id": official_id}
    if before == after:
        return
    account.roles = ",".join(wanted)
    account.official_id = official_id
    audit.record(session, actor=actor, action="account.roles.change",
                 obj=_obj(account.username), details={"from": before, "to": after},
                 request_id=request_id, clock=clock)


def lock(session: Session, account: AccountRecord, *, actor: str,
         request_id: str | None = None, clock: Clock = _now) -> None:
    """Lock the account at once (its sessions end; `unlock` undoes it); audited."""
    if account.locked:
        return
    account.locked = True
    audit.record(session, actor=actor, action="account.lock", obj=_obj(account.username),
                 details={"by": "administrator"}, request_id=request_id, clock=clock)


def reset_password(session: Session, account: AccountRecord, *, actor: str,
                   request_id: str | None = None, clock: Clock = _now) -> str:
    """A new random password (returned once); the account's sessions end. Audited as
    `account.password.reset`."""
    password = random_password()
    account.password_hash = _hasher.hash(password)
    account.password_changed_at = clock()
    audit.record(session, actor=actor, action="account.password.reset",
                 obj=_obj(account.username), request_id=request_id, clock=clock)
    return password



__all__ = [
    "MAX_PASSWORD",
    "MAX_USERNAME",
    "ROLES",
    "AccountError",
    "AccountInfo",
    "LoginStep",
    "Outcome",
    "TotpChange",
    "account_info",
    "change_password",
    "check_password",
    "check_password_rules",
    "check_totp",
    "confirm_totp_change",
    "create_account",
    "enrol_totp",
    "find",
    "get",
    "list_accounts",
    "lock",
    "open_pending_secret",
    "open_secret",
    "provisioning_uri",
    "random_password",
    "reset_password",
    "roles_of",
    "seal_pending_secret",
    "seal_secret",
    "set_roles",
    "start_totp_change",
    "totp_key",
    "unlock",
]
