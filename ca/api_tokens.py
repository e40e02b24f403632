"""API tokens of the JSON API: made by an account with the official role, scoped to its
official, shown once, kept only as a SHA-256 hash, revocable, optionally expiring."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ca import accounts, audit
from ca.errors import CAError
from ca.models import AccountRecord, ApiTokenRecord

TOKEN_PREFIX = "kyso_"
TOKEN_BYTES = 32
PREFIX_CHARS = 8
SCOPES = ("sign", "read")
MAX_NAME = 64
MAX_TOKEN_CHARS = 128

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class TokenError(CAError):
    """A token cannot be made or changed as asked."""

    code = "token_invalid"
    http_status = 400


class TokenRejected(CAError):
    """The bearer token is missing, unknown, revoked or expired (one answer for all)."""

    code = "invalid_token"
    http_status = 401


class TokenScopeError(CAError):
    """The token is good but not for this operation."""

    code = "token_scope"
    http_status = 403


@dataclass(frozen=True)
class TokenInfo:
    """A token as the views see it (no ORM object outside a transaction)."""

    id: int
    account_id: int
    username: str
    official_id: int
    name: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime | None

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _scopes(text: str) -> tuple[str, ...]:
    return tuple(s for s in text.split(",") if s)


def _info(row: ApiTokenRecord, username: str) -> TokenInfo:
    return TokenInfo(row.id, row.account_id, username, row.official_id, row.name, row.prefix,
                     _scopes(row.scope), row.created_at, row.last_used_at, row.revoked_at,
                     row.expires_at)


def _obj(row: ApiTokenRecord) -> str:
    return f"api_token:{row.id}:{row.prefix}"


def create(session: Session, account_id: int, *, name: str, scopes: Iterable[str],
           expires_days: int | None = None, request_id: str | None = None,
           clock: Clock = _now) -> tuple[TokenInfo, str]:
    """A new token for the account's own official; (its info, the clear token). The clear
    token is returned here only: the database keeps its SHA-256."""
    account = session.get(AccountRecord, account_id)
    if account is None or account.locked:
        raise TokenError(f"no usable account {account_id}")
    if "official" not in accounts.roles_of(account) or account.official_id is None:
        raise TokenError("only an account with the role official, linked to an official, "
                         "can make API tokens")
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise TokenError(f"a token name has 1 to {MAX_NAME} printable characters")
    wanted = tuple(s for s in SCOPES if s in set(scopes))
    unknown = set(scopes) - set(SCOPES)
    if unknown or not wanted:
        raise TokenError(f"a token's scope is one or more of {', '.join(SCOPES)}")
    if expires_days is not None and not 1 <= expires_days <= 3660:
        raise TokenError("a token expires after 1 to 3660 days, or never")
    now = clock()
    random_part = secrets.token_urlsafe(TOKEN_BYTES)
    token = TOKEN_PREFIX + random_part
    row = ApiTokenRecord(
        account_id=account.id, official_id=account.official_id, name=name,
        prefix=random_part[:PREFIX_CHARS], token_hash=hash_token(token), scope=",".join(wanted),
        created_at=now, last_used_at=None, revoked_at=None,
        expires_at=now + timedelta(days=expires_days) if expires_days else None)
    session.add(row)
    session.flush()
    audit.record(session, actor=f"account:{account.username}", action="api_token.create",
                 obj=_obj(row), details={"name": name, "scope": list(wanted),
                                         "official_id": account.official_id,
                                         "expires_at": row.expires_at.isoformat()
                                         if row.expires_at else None},
                 request_id=request_id, clock=clock)
    return _info(row, account.username), token


def list_for(session: Session, account_id: int) -> list[TokenInfo]:
    """The account's tokens, newest first (revoked ones too)."""
    account = session.get(AccountRecord, account_id)
    if account is None:
        return []
    rows = session.scalars(select(ApiTokenRecord).where(ApiTokenRecord.account_id == account_id)
                           .order_by(ApiTokenRecord.id.desc()))
    return [_info(r, account.username) for r in rows]


def revoke(session: Session, account_id: int, token_id: int, *,
           request_id: str | None = None, clock: Clock = _now) -> TokenInfo:
    """Revoke one of the account's own tokens (revoking twice changes nothing)."""
    row = session.get(ApiTokenRecord, token_id)
    account = session.get(AccountRecord, account_id)
    if row is None or account is None or row.account_id != account_id:
        raise TokenError(f"no token {token_id} of this account")  # no probing of others'
    if row.revoked_at is None:
        row.revoked_at = clock()
        audit.record(session, actor=f"account:{account.username}", action="api_token.revoke",
                     obj=_obj(row), request_id=request_id, clock=clock)
    return _info(row, account.username)


def verify(session: Session, token: str | None, *, request_id: str | None = None,
           clock: Clock = _now) -> TokenInfo:
    """The token's info when it is known, not revoked, not expired, and its account is still
    an unlocked official of the same official; TokenRejected otherwise. A presented but
    refused token is audited (`api_token.reject`) in `session`: commit it whatever the
    outcome. The lookup is by SHA-256, so no secret is compared byte by byte."""
    if not token:
        raise TokenRejected("an API token is needed: Authorization: Bearer kyso_...")
    digest = hash_token(token[:MAX_TOKEN_CHARS])
    row = None
    if token.startswith(TOKEN_PREFIX) and len(token) <= MAX_TOKEN_CHARS:
        row = session.scalars(select(ApiTokenRecord)
                              .where(ApiTokenRecord.token_hash == digest)).one_or_none()
    now = clock()
    reason = None
    account = session.get(AccountRecord, row.account_id) if row is not None else None
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        reason = "unknown"
    elif row.revoked_at is not None:
        reason = "revoked"
    elif row.expires_at is not None and row.expires_at <= now:
        reason = "expired"
    elif account is None or account.locked or "official" not in accounts.roles_of(account) \
            or account.official_id != row.official_id:
        reason = "account"
    if reason is not None:
        audit.record(session, actor="api", action="api_token.reject",
                     obj=_obj(row) if row is not None else "api_token:unknown",
                     outcome="failure", details={"reason": reason},
                     request_id=request_id, clock=clock)
        raise TokenRejected("the API token is unknown, revoked or expired")
    assert row is not None and account is not None
    row.last_used_at = now
    return _info(row, account.username)


__all__ = [
    "SCOPES",
    "TOKEN_PREFIX",
    "TokenError",
    "TokenInfo",
    "TokenRejected",
    "TokenScopeError",
    "create",
    "hash_token",
    "list_for",
    "revoke",
    "verify",
]
