"""The account's own credentials: change the password, change the second factor (TOTP)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, session
from flask_babel import gettext

from ca import accounts
from web import get_kyso
from web.auth import current_account, login_required, refresh_login
from web.errors import request_id
from web.security import limiter

bp = Blueprint("account_security", __name__)

# The new secret waits this long for its confirming code.
PENDING_SECONDS = 600
_PENDING = "totp_pending"  # sealed (AES-GCM) new secret, base64: the cookie is only signed
_PENDING_AT = "totp_pending_at"
_PENDING_FOR = "totp_pending_for"


def _web() -> Any:
    return current_app.config["KYSO_SETTINGS"].web


def _rate_limit() -> str:
    return str(_web().login_rate_limit)


def _key() -> bytes:
    return accounts.totp_key(current_app.config["SECRET_KEY"])


def _page(template: str, status: int = 200, **context: Any) -> Response:
    who = current_account()
    response = Response(render_template(template, who=who, min_password=accounts.MIN_PASSWORD,
                                        **context), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _wrong_current(outcome: accounts.Outcome, template: str, **context: Any) -> Response:
    if outcome is accounts.Outcome.LOCKED:
        session.clear()
        return _page(template, 423, error=gettext(
            "This account is locked after too many failed attempts. Contact an operator to "
            "unlock it."), **context)
    return _page(template, 400, error=gettext("The current password is wrong."), **context)


# -- password --------------------------------------------------------------------------------

@bp.get("/account/password")
@login_required()
def password_form() -> Response:
    return _page("account_security/password.html")


@bp.post("/account/password")
@login_required()
@limiter.limit(_rate_limit)
def change_password() -> Response:
    who = current_account()
    assert who is not None
    current = request.form.get("current_password", "")
    new = request.form.get("new_password", "")
    confirm = request.form.get("confirm_password", "")
    template = "account_security/password.html"
    if not current or not new:
        return _page(template, 400, error=gettext("Fill in every field."))
    if new != confirm:
        return _page(template, 400, error=gettext("The new password and its confirmation "
                                                  "differ."))
    if len(new) < accounts.MIN_PASSWORD or len(new) > accounts.MAX_PASSWORD \
            or len(current) > accounts.MAX_PASSWORD:
        return _page(template, 400, error=gettext(
            "The new password must have %(min)s to %(max)s characters.",
            min=accounts.MIN_PASSWORD, max=accounts.MAX_PASSWORD))
    if new == current:
        return _page(template, 400, error=gettext(
            "The new password must differ from the current one."))
    try:
        with get_kyso().sessions.begin() as s:
            outcome = accounts.change_password(s, who.id, current, new,
                                               max_failures=_web().login_max_failures,
                                               request_id=request_id())
    except accounts.AccountError as exc:
        return _page(template, 400, error=exc.message)
    if outcome is not accounts.Outcome.OK:
        return _wrong_current(outcome, template)
    refresh_login()  # the other sessions ended with the change; this one stays
    return _page(template, changed=True)


# -- second factor ---------------------------------------------------------------------------

def _pending(username: str) -> tuple[bytes, str] | None:
    """The sealed new secret waiting in this session, and the secret, if still valid."""
    sealed_b64, at, owner = (session.get(_PENDING), session.get(_PENDING_AT),
                             session.get(_PENDING_FOR))
    if not isinstance(sealed_b64, str) or not isinstance(at, int | float) or owner != username:
        return None
    if datetime.now(UTC).timestamp() - at > PENDING_SECONDS:
        return None
    try:
        sealed = base64.b64decode(sealed_b64, validate=True)
    except ValueError:
        return None
    secret = accounts.open_pending_secret(_key(), username, sealed)
    return (sealed, secret) if secret is not None else None


def _drop_pending() -> None:
    for name in (_PENDING, _PENDING_AT, _PENDING_FOR):
        session.pop(name, None)


def _enrol_page(username: str, secret: str, status: int = 200,
                error: str | None = None) -> Response:
    return _page("account_security/totp.html", status, step="confirm", error=error,
                 secret=secret, uri=accounts.provisioning_uri(secret, username))


@bp.get("/account/totp")
@login_required()
def totp_form() -> Response:
    who = current_account()
    assert who is not None
    pending = _pending(who.username)
    if pending is not None:
        return _enrol_page(who.username, pending[1])
    return _page("account_security/totp.html", step="password")


@bp.post("/account/totp")
@login_required()
@limiter.limit(_rate_limit)
def totp_start() -> Response:
    who = current_account()
    assert who is not None
    password = request.form.get("current_password", "")
    template = "account_security/totp.html"
    if not password or len(password) > accounts.MAX_PASSWORD:
        return _page(template, 400, step="password",
                     error=gettext("Enter your current password."))
    with get_kyso().sessions.begin() as s:
        change = accounts.start_totp_change(s, who.id, password, key=_key(),
                                            max_failures=_web().login_max_failures,
                                            request_id=request_id())
    if change.outcome is not accounts.Outcome.OK or change.secret is None \
            or change.sealed is None:
        return _wrong_current(change.outcome, template, step="password")
    session[_PENDING] = base64.b64encode(change.sealed).decode("ascii")
    session[_PENDING_AT] = datetime.now(UTC).timestamp()
    session[_PENDING_FOR] = who.username
    return _enrol_page(who.username, change.secret)


@bp.post("/account/totp/confirm")
@login_required()
@limiter.limit(_rate_limit)
def totp_confirm() -> Response:
    who = current_account()
    assert who is not None
    pending = _pending(who.username)
    if pending is None:
        _drop_pending()
        return _page("account_security/totp.html", 400, step="password", error=gettext(
            "The new secret has expired or is missing. Start again with your password."))
    sealed, secret = pending
    code = request.form.get("code", "").replace(" ", "")
    if len(code) != accounts.TOTP_DIGITS or not code.isdigit():
        return _enrol_page(who.username, secret, 400, gettext(
            "Enter the 6-digit code that your authenticator app shows for the NEW entry."))
    with get_kyso().sessions.begin() as s:
        done = accounts.confirm_totp_change(s, who.id, sealed, code, key=_key(),
                                            request_id=request_id())
    if not done:
        return _enrol_page(who.username, secret, 400, gettext(
            "This code does not match the new secret. Check that you added the new entry "
            "and enter its current code."))
    _drop_pending()
    return _page("account_security/totp.html", step="done")
