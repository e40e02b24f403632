"""Logging in and out (password, then TOTP), the session, and the role check on every view."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext
from flask_wtf.csrf import CSRFError

from ca import accounts
from web import get_kyso
from web.errors import csrf_message, error_response, request_id, wants_json
from web.security import limiter

bp = Blueprint("auth", __name__)

F = TypeVar("F", bound=Callable[..., Any])

# The password step is good for this long: the code must follow within it.
PENDING_SECONDS = 300
_ACCOUNT = "account_id"
_AUTH_AT = "auth_at"
_NONCE = "login_nonce"
_NAME = "account_name"
_ROLES = "account_roles"
_PENDING = "pending_account_id"
_PENDING_AT = "pending_at"
_NEXT = "next"


@dataclass(frozen=True)
class CurrentAccount:
    """Who is logged in, as the views see it (no ORM object outside a transaction)."""

    id: int
    username: str
    display_name: str
    roles: tuple[str, ...]
    official_id: int | None
    auth_at: datetime

    def has(self, *roles: str) -> bool:
        return any(r in self.roles for r in roles)


def _web_settings() -> Any:
    return current_app.config["KYSO_SETTINGS"].web


def _now() -> datetime:
    return datetime.now(UTC)


def _totp_key() -> bytes:
    # The session was opened before any view, so the secret key is loaded by now.
    return accounts.totp_key(current_app.config["SECRET_KEY"])


def current_account() -> CurrentAccount | None:
    """The logged-in account of this request, or None (no login, expired, locked, gone, or
    logged in before the password was last changed)."""
    if "current_account" in g:
        return cast(CurrentAccount | None, g.current_account)
    found: CurrentAccount | None = None
    account_id, auth_ts = session.get(_ACCOUNT), session.get(_AUTH_AT)
    if isinstance(account_id, int) and isinstance(auth_ts, int | float):
        auth_at = datetime.fromtimestamp(auth_ts, UTC)
        if _now() - auth_at < timedelta(hours=_web_settings().session_hours):
            with get_kyso().readers() as s:
                row = accounts.get(s, account_id)
                if row is not None and not row.locked \
                        and row.password_changed_at <= auth_at:
                    found = CurrentAccount(row.id, row.username, row.display_name,
                                           accounts.roles_of(row), row.official_id, auth_at)
    g.current_account = found
    return found


def login_required(*roles: str) -> Callable[[F], F]:
    """Views for logged-in accounts holding one of `roles` (any role when none given).
    Anonymous: a redirect to /login for pages, JSON 401 for the API; wrong role: 403."""
    unknown = [r for r in roles if r not in accounts.ROLES]
    if unknown:
        raise ValueError(f"unknown role {unknown[0]!r}")

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            who = current_account()
            if who is None:
                if wants_json() or request.method != "GET":
                    return error_response(401, "login_required",
                                          gettext("Log in to use this page."))
                return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
            if roles and not who.has(*roles):
                return error_response(403, "role_required", gettext(
                    "Your account does not have the role this page needs (%(roles)s). Ask an "
                    "administrator if you need it.", roles=", ".join(roles)))
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def _safe_next(target: str | None) -> str:
    # Only a path on this site: no open redirect to another host.
    if target and target.startswith("/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return url_for("auth.account")


def _page(template: str, status: int = 200, error: str | None = None,
          code: str = "") -> Response | tuple[str, int]:
    if error is not None and wants_json():
        return error_response(status, code, error)
    response = Response(render_template(template, error=error), status=status,
                        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal(outcome: accounts.Outcome, template: str) -> Response | tuple[str, int]:
    if outcome is accounts.Outcome.LOCKED:
        return _page(template, 423, gettext(
            "This account is locked after too many failed logins. Contact an operator to "
            "unlock it."), "account_locked")
    # One message for an unknown user, a wrong password, a wrong or replayed code.
    return _page(template, 401, gettext("Wrong username, password or code."),
                 "wrong_credentials")


def _rate_limit() -> str:
    return str(_web_settings().login_rate_limit)


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Response | tuple[str, int]:
    template = "login_totp.html" if request.path.endswith("/totp") else "login.html"
    return _page(template, 400, csrf_message(), "csrf_failed")


@bp.get("/login")
def login() -> Response | tuple[str, int]:
    if request.args.get(_NEXT):
        session[_NEXT] = _safe_next(request.args.get(_NEXT))
    return _page("login.html")


@bp.post("/login")
@limiter.limit(_rate_limit)
def login_password() -> Response | tuple[str, int]:
    username = request.form.get("username", "").strip()
    password = request.form.get("password", "")
    if not username or not password:
        return _page("login.html", 400, gettext("Enter your username and password."),
                     "missing_fields")
    if len(username) > accounts.MAX_USERNAME or len(password) > accounts.MAX_PASSWORD:
        return _page("login.html", 400, gettext(
            "The username (at most %(u)s characters) or the password (at most %(p)s "
            "characters) is too long.", u=accounts.MAX_USERNAME, p=accounts.MAX_PASSWORD),
            "too_long")
    with get_kyso().sessions.begin() as s:
        step = accounts.check_password(s, username, password,
                                       max_failures=_web_settings().login_max_failures,
                                       request_id=request_id())
    if step.outcome is not accounts.Outcome.OK:
        return _refusal(step.outcome, "login.html")
    target = session.get(_NEXT)
    session.clear()  # a fresh session at each login (no fixation)
    session[_PENDING] = step.account_id
    session[_PENDING_AT] = _now().timestamp()
    if target:
        session[_NEXT] = target
    return cast(Response, redirect(url_for("auth.login_totp_form")))


def _pending() -> int | None:
    account_id, at = session.get(_PENDING), session.get(_PENDING_AT)
    if not isinstance(account_id, int) or not isinstance(at, int | float):
        return None
    if _now().timestamp() - at > PENDING_SECONDS:
        return None
    return account_id


@bp.get("/login/totp")
def login_totp_form() -> Response | tuple[str, int]:
    if _pending() is None:
        return cast(Response, redirect(url_for("auth.login")))
    return _page("login_totp.html")


@bp.post("/login/totp")
@limiter.limit(_rate_limit)
def login_totp() -> Response | tuple[str, int]:
    account_id = _pending()
    if account_id is None:
        return _page("login.html", 401, gettext(
            "Your login has expired. Enter your username and password again."), "login_expired")
    code = request.form.get("code", "").replace(" ", "")
    if not code:
        return _page("login_totp.html", 400, gettext(
            "Enter the 6-digit code from your authenticator app."), "missing_fields")
    if len(code) > 16:
        return _page("login_totp.html", 400, gettext("The code has 6 digits."), "too_long")
    with get_kyso().sessions.begin() as s:
        step = accounts.check_totp(s, account_id, code, key=_totp_key(),
                                   max_failures=_web_settings().login_max_failures,
                                   request_id=request_id())
        row = accounts.get(s, account_id) if step.outcome is accounts.Outcome.OK else None
        name = row.display_name if row is not None else ""
        roles = list(accounts.roles_of(row)) if row is not None else []
    if step.outcome is not accounts.Outcome.OK:
        if step.outcome is accounts.Outcome.LOCKED:
            session.clear()
        return _refusal(step.outcome, "login_totp.html")
    target = _safe_next(session.get(_NEXT))
    session.clear()  # again a fresh session: the logged-in one shares nothing with before
    session[_ACCOUNT] = account_id
    session[_AUTH_AT] = _now().timestamp()
    session[_NONCE] = secrets.token_urlsafe(16)
    session[_NAME] = name
    session[_ROLES] = roles  # for the nav only; every view checks the roles in the database
    session.permanent = True
    return cast(Response, redirect(target))


def refresh_login() -> None:
    """Date this session's login to now (new nonce too): after the account's own password
    change the sessions logged in before it end, and this one, which made it, stays."""
    session[_AUTH_AT] = _now().timestamp()
    session[_NONCE] = secrets.token_urlsafe(16)
    g.pop("current_account", None)


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    g.pop("current_account", None)
    return cast(Response, redirect(url_for("auth.login")))


@bp.get("/account")
@login_required()
def account() -> Response | tuple[str, int]:
    from flask_babel import format_datetime

    who = current_account()
    assert who is not None  # login_required
    role_names = {"official": gettext("Official (signs documents)"),
                  "operator": gettext("Operator (registration officer)"),
                  "auditor": gettext("Auditor (reads the audit log)"),
                  "admin": gettext("Administrator (accounts and settings)")}
    response = Response(render_template(
        "account.html", who=who, role_names=role_names,
        logged_in_at=format_datetime(who.auth_at, "dd/MM/yyyy HH:mm:ss xxx")),
        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """The blueprint, the login's lifetime, and `logged_in_name` / `logged_in_roles` for the
    nav of every page."""
    app.register_blueprint(bp)
    app.permanent_session_lifetime = timedelta(
        hours=app.config["KYSO_SETTINGS"].web.session_hours)

    @app.context_processor
    def _who() -> dict[str, object]:
        # From the cookie only: rendering the nav never touches the database.
        logged_in = bool(session.get(_ACCOUNT))
        name = session.get(_NAME) if logged_in else None
        roles = session.get(_ROLES) if logged_in else None
        return {"logged_in_name": name,
                "logged_in_roles": tuple(roles) if isinstance(roles, list) else ()}
