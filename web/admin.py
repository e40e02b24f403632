"""Administrators' pages: web accounts, their roles, locks and credentials (no signing here)."""

from __future__ import annotations

from typing import cast

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext

from ca import accounts
from web import get_kyso
from web.auth import CurrentAccount, current_account, login_required
from web.errors import error_response, request_id

bp = Blueprint("admin", __name__, url_prefix="/admin")


def _actor(who: CurrentAccount) -> str:
    return f"web:{who.username}"


def _key() -> bytes:
    return accounts.totp_key(current_app.config["SECRET_KEY"])


def _who() -> CurrentAccount:
    who = current_account()
    assert who is not None  # login_required
    return who


def _when(moment: object) -> str:
    return format_datetime(moment, "dd/MM/yyyy HH:mm") if moment is not None else ""


def _no_store(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _role_names() -> dict[str, str]:
    return {"official": gettext("Official"), "operator": gettext("Operator"),
            "auditor": gettext("Auditor"), "admin": gettext("Administrator")}


def _list_page(status: int = 200, error: str | None = None,
               form: dict[str, object] | None = None) -> Response:
    with get_kyso().readers() as s:
        rows = accounts.list_accounts(s)
    return _no_store(render_template(
        "admin/accounts.html", rows=rows, roles=accounts.ROLES, role_names=_role_names(),
        when=_when, error=error, form=form or {}, me=_who()), status)


def _edit_page(account_id: int, status: int = 200, error: str | None = None,
               message: str | None = None) -> Response:
    with get_kyso().readers() as s:
        info = accounts.account_info(s, account_id)
    if info is None:
        return error_response(404, "not_found", gettext("No such account."))
    return _no_store(render_template(
        "admin/account.html", a=info, roles=accounts.ROLES, role_names=_role_names(),
        when=_when, error=error, message=message, me=_who()), status)


def _shown_once(username: str, *, password: str | None = None, secret: str | None = None,
                what: str) -> Response:
    """Credentials on a page that is not cached and not shown again."""
    uri = accounts.provisioning_uri(secret, username) if secret is not None else None
    return _no_store(render_template("admin/credentials.html", username=username,
                                     password=password, secret=secret, uri=uri, what=what))


def _official_id(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or len(text) > 12:
        raise accounts.AccountError(gettext("The official id is a number."))
    return int(text)


def _message(exc: accounts.AccountError) -> str:
    # ca's messages are English; say the common ones in the page's language.
    text = exc.message
    if text.startswith("no official with id"):
        return gettext("There is no official with this id.")
    if text.startswith("an account with the role official needs"):
        return gettext("An account with the role official must be linked to an official "
                       "(give the official id).")
    if text.startswith("an account needs at least one role"):
        return gettext("Choose at least one role.")
    if text.startswith("the username"):
        return gettext("This username is already taken.")
    if text.startswith("a username has"):
        return gettext("A username has 1 to %(n)s characters and no spaces.",
                       n=accounts.MAX_USERNAME)
    return text


@bp.get("/accounts", endpoint="accounts")
@login_required("admin")
def accounts_list() -> Response:
    return _list_page()


@bp.post("/accounts")
@login_required("admin")
def create() -> Response:
    who = _who()
    username = request.form.get("username", "").strip()
    display_name = request.form.get("display_name", "").strip() or None
    roles = request.form.getlist("role")
    form = {"username": username, "display_name": display_name or "", "roles": roles,
            "official_id": request.form.get("official_id", "")}
    try:
        official_id = _official_id(request.form.get("official_id", ""))
        if any(r not in accounts.ROLES for r in roles):
            raise accounts.AccountError(gettext("Unknown role."))
        password = accounts.random_password()
        with get_kyso().sessions.begin() as s:
            _, secret = accounts.create_account(
                s, username=username, password=password, roles=roles, key=_key(),
                display_name=display_name, official_id=official_id, actor=_actor(who),
                request_id=request_id())
    except accounts.AccountError as exc:
        return _list_page(400, _message(exc), form)
    return _shown_once(username, password=password, secret=secret, what="create")


@bp.get("/accounts/<int:account_id>")
@login_required("admin")
def edit(account_id: int) -> Response:
    return _edit_page(account_id)


def _missing() -> Response:
    return error_response(404, "not_found", gettext("No such account."))


def _back(account_id: int) -> Response:
    return cast(Response, redirect(url_for("admin.edit", account_id=account_id)))


@bp.post("/accounts/<int:account_id>/roles")
@login_required("admin")
def set_roles(account_id: int) -> Response:
    who = _who()
    roles = request.form.getlist("role")
    if account_id == who.id and "admin" not in roles:
        return _edit_page(account_id, 400, gettext(
            "You cannot remove your own administrator role: ask another administrator."))
    try:
        official_id = _official_id(request.form.get("official_id", ""))
        if any(r not in accounts.ROLES for r in roles):
            raise accounts.AccountError(gettext("Unknown role."))
        with get_kyso().sessions.begin() as s:
            row = accounts.get(s, account_id)
            if row is None:
                return _missing()
            accounts.set_roles(s, row, roles, official_id=official_id, actor=_actor(who),
                               request_id=request_id())
    except accounts.AccountError as exc:
        return _edit_page(account_id, 400, _message(exc))
    return _back(account_id)


@bp.post("/accounts/<int:account_id>/unlock")
@login_required("admin")
def unlock(account_id: int) -> Response:
    who = _who()
    with get_kyso().sessions.begin() as s:
        row = accounts.get(s, account_id)
        if row is None:
            return _missing()
        accounts.unlock(s, row.username, actor=_actor(who), request_id=request_id())
    return _back(account_id)


@bp.post("/accounts/<int:account_id>/lock")
@login_required("admin")
def lock(account_id: int) -> Response:
    who = _who()
    if account_id == who.id:
        return _edit_page(account_id, 400, gettext("You cannot lock your own account."))
    with get_kyso().sessions.begin() as s:
        row = accounts.get(s, account_id)
        if row is None:
            return _missing()
        accounts.lock(s, row, actor=_actor(who), request_id=request_id())
    return _back(account_id)


@bp.post("/accounts/<int:account_id>/reset-totp")
@login_required("admin")
def reset_totp(account_id: int) -> Response:
    who = _who()
    if account_id == who.id:
        return _edit_page(account_id, 400, gettext(
            "Change your own two-factor authentication from your account page."))
    with get_kyso().sessions.begin() as s:
        row = accounts.get(s, account_id)
        if row is None:
            return _missing()
        secret = accounts.enrol_totp(s, row, key=_key(), actor=_actor(who),
                                     request_id=request_id())
        username = row.username
    return _shown_once(username, secret=secret, what="totp")


@bp.post("/accounts/<int:account_id>/reset-password")
@login_required("admin")
def reset_password(account_id: int) -> Response:
    who = _who()
    if account_id == who.id:
        return _edit_page(account_id, 400, gettext(
            "Change your own password from your account page."))
    with get_kyso().sessions.begin() as s:
        row = accounts.get(s, account_id)
        if row is None:
            return _missing()
        password = accounts.reset_password(s, row, actor=_actor(who), request_id=request_id())
        username = row.username
    return _shown_once(username, password=password, what="password")
