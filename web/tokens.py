"""The portal's API tokens (/account/tokens): an official makes, lists and revokes the bearer
tokens with which a system signs for them through POST /api/v1/sign (the PIN still needed)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext

from ca import api_tokens
from web import get_kyso
from web.auth import current_account, login_required
from web.errors import error_response, request_id

bp = Blueprint("tokens", __name__)

EXPIRY_CHOICES = ("", "30", "90", "365")


def _when(moment: datetime | None) -> str:
    return format_datetime(moment, "dd/MM/yyyy HH:mm") if moment is not None else ""


def _page(status: int = 200, error: str | None = None, created: str | None = None,
          created_info: api_tokens.TokenInfo | None = None) -> Response:
    who = current_account()
    assert who is not None  # login_required
    with get_kyso().readers() as s:
        tokens = api_tokens.list_for(s, who.id)
    now = datetime.now(UTC)
    response = Response(render_template(
        "tokens.html", who=who, tokens=tokens, now=now, when=_when, error=error,
        created=created, created_info=created_info, scopes=api_tokens.SCOPES,
        expiry_choices=EXPIRY_CHOICES), status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/account/tokens")
@login_required("official")
def tokens() -> Response:
    return _page()


@bp.post("/account/tokens")
@login_required("official")
def create_token() -> Response:
    who = current_account()
    assert who is not None
    if who.official_id is None:
        return error_response(403, "no_official", gettext(
            "Your account is not linked to an official record: ask an administrator."))
    name = request.form.get("name", "").strip()
    scopes = request.form.getlist("scope") or ["sign"]
    expiry = request.form.get("expires_days", "")
    if expiry not in EXPIRY_CHOICES:
        return _page(400, gettext("Choose one of the offered lifetimes."))
    if not name or len(name) > api_tokens.MAX_NAME:
        return _page(400, gettext("Give the token a name of at most %(n)s characters.",
                                  n=api_tokens.MAX_NAME))
    if any(s not in api_tokens.SCOPES for s in scopes):
        return _page(400, gettext("Unknown scope."))
    with get_kyso().sessions.begin() as s:
        info, token = api_tokens.create(s, who.id, name=name, scopes=scopes,
                                        expires_days=int(expiry) if expiry else None,
                                        request_id=request_id())
    return _page(201, created=token, created_info=info)


@bp.post("/account/tokens/<int:token_id>/revoke")
@login_required("official")
def revoke_token(token_id: int) -> Response:
    who = current_account()
    assert who is not None
    try:
        with get_kyso().sessions.begin() as s:
            api_tokens.revoke(s, who.id, token_id, request_id=request_id())
    except api_tokens.TokenError:
        return error_response(404, "not_found", gettext("No such token of your account."))
    return cast(Response, redirect(url_for("tokens.tokens")))
