"""Certificate and renewal requests: officials file them, operators approve or reject them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext, lazy_gettext

from ca import requests as cert_requests
from ca import store
from ca.authority import CHANGEABLE_FIELDS
from ca.errors import CAError, NotFound
from ca.issuance import normalize_serial
from web import get_kyso
from web.auth import CurrentAccount, current_account, login_required
from web.errors import error_response, request_id

bp = Blueprint("requests", __name__)

MAX_PIN = 256
MAX_REASON = cert_requests.MAX_REASON
MAX_FIELD = cert_requests.MAX_FIELD
RECENT = 50  # decided requests shown under the pending ones

FIELD_LABELS = {
    "name": lazy_gettext("Full name"),
    "title": lazy_gettext("Title"),
    "organization": lazy_gettext("Organization"),
    "unit": lazy_gettext("Unit"),
    "locality": lazy_gettext("Locality"),
    "province": lazy_gettext("Province"),
    "email": lazy_gettext("E-mail address"),
}
KIND_LABELS = {
    "renewal": lazy_gettext("Renewal (same content)"),
    "change": lazy_gettext("Change of content"),
    "new": lazy_gettext("First certificate"),
}
STATUS_LABELS = {
    "pending": lazy_gettext("Pending"),
    "issuing": lazy_gettext("Being issued"),
    "approved": lazy_gettext("Approved"),
    "rejected": lazy_gettext("Rejected"),
    "cancelled": lazy_gettext("Cancelled"),
}
KEY_LABELS = {"same": lazy_gettext("Same key"), "new": lazy_gettext("New key")}
CERT_STATUS_LABELS = {
    "valid": lazy_gettext("Valid"),
    "hold": lazy_gettext("On hold"),
    "revoked": lazy_gettext("Revoked"),
    "pending": lazy_gettext("Pending"),
    "failed": lazy_gettext("Failed"),
}
VIA_LABELS = {"portal": lazy_gettext("Portal"), "operator": lazy_gettext("Operator"),
              "api": lazy_gettext("API")}


# The library's messages are English: people read a sentence in their language first.
ERROR_MESSAGES = {
    "not_found": lazy_gettext("No such certificate or request."),
    "request_pending": lazy_gettext("This certificate already has a pending request."),
    "request_decided": lazy_gettext("This request was already decided or cancelled."),
    "approval_under_way": lazy_gettext("This request is being approved right now. If that "
                                       "approval was interrupted, approve it again later."),
    "conflict": lazy_gettext("This certificate is revoked or expired: it cannot be renewed."),
    "invalid_request": lazy_gettext("The request is not valid."),
    "subject_rejected": lazy_gettext("The certificate content is not accepted."),
    "weak_key": lazy_gettext("The key is not accepted."),
    "lint_failed": lazy_gettext("The new certificate did not pass the technical checks."),
    "pin_incorrect": lazy_gettext("Wrong signing PIN."),
    "key_locked": lazy_gettext("Your signing key is locked after too many wrong PINs: ask an "
                               "operator to unlock it."),
}


class _Missing(NotFound):
    """A 404 of these pages whose message is already in the person's language."""


def _message(exc: CAError) -> str:
    if isinstance(exc, _Missing):
        return exc.message
    said = ERROR_MESSAGES.get(exc.code)
    return f"{said} ({exc.message})" if said is not None else exc.message


@bp.errorhandler(CAError)
def _ca_error(exc: CAError) -> Response:
    return error_response(exc.http_status, exc.code, _message(exc))


def _when(moment: datetime | None) -> str:
    return format_datetime(moment, "dd/MM/yyyy HH:mm") if moment is not None else ""


def _now() -> datetime:
    return datetime.now(UTC)


def _labels() -> dict[str, Any]:
    return {"field_labels": FIELD_LABELS, "kind_labels": KIND_LABELS,
            "status_labels": STATUS_LABELS, "key_labels": KEY_LABELS, "via_labels": VIA_LABELS,
            "cert_status_labels": CERT_STATUS_LABELS,
            "fields": CHANGEABLE_FIELDS, "when": _when, "max_field": MAX_FIELD}


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = Response(render_template(template, **_labels(), **context), status=status,
                        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    return response


def _who() -> CurrentAccount:
    who = current_account()
    assert who is not None  # login_required
    return who


def _own_official(who: CurrentAccount) -> int:
    if who.official_id is None:
        raise _Missing(gettext("Your account is not linked to an official record: ask an "
                               "administrator."))
    return who.official_id


def _certificate(serial: str, official_id: int | None) -> tuple[str, dict[str, str | None],
                                                               Any]:
    """(canonical serial, its content, its record) of an official's certificate; NotFound
    for another official's (`official_id` given) or a missing one, alike."""
    try:
        serial = normalize_serial(serial)
    except CAError:
        raise _Missing(gettext("No such certificate.")) from None
    with get_kyso().readers() as s:
        rec = store.find_certificate(s, serial)
        if rec is None or rec.official_id is None or rec.cert_der is None or (
                official_id is not None and rec.official_id != official_id):
            raise _Missing(gettext("No such certificate of yours.") if official_id is not None
                           else gettext("No such certificate of an official."))
        shown = {"serial": rec.serial, "status": rec.status, "subject": rec.subject,
                 "not_after": rec.not_after,
                 "renewable": rec.status in ("valid", "hold") and rec.not_after > _now()}
    return serial, get_kyso().authority.official_content(serial), shown


def _open_request(serial: str) -> int | None:
    with get_kyso().readers() as s:
        found = store.open_request_for(s, serial)
        return found.id if found is not None else None


def _form_fields() -> dict[str, str]:
    # Only the fields sent: one left out is kept as it is, not removed.
    return {name: request.form.get(name, "").strip() for name in CHANGEABLE_FIELDS
            if name in request.form}


def _changes(fields: dict[str, str], current: dict[str, str | None]) -> dict[str, str | None]:
    """Only what differs from the certificate's current content (empty: removed)."""
    return {k: v for k, v in fields.items() if (v or None) != (current.get(k) or None)}


def _form_error(fields: dict[str, str]) -> str | None:
    """A message for input the library would refuse anyway, said in the person's language."""
    too_long = [str(FIELD_LABELS[k]) for k, v in fields.items() if len(v) > MAX_FIELD]
    if too_long:
        return gettext("These fields are too long (at most %(n)s characters): %(fields)s.",
                       n=MAX_FIELD, fields=", ".join(too_long))
    return None


def _file(serial: str, *, who: CurrentAccount, official_id: int | None, via: str,
          template: str, current: dict[str, str | None], rec: Any) -> Response:
    """The POST of both filing forms: validate, file, redirect; or the form again with why."""
    kind = request.form.get("kind", "renewal")
    key = request.form.get("key", "same") if via != "operator" else "same"
    pin = request.form.get("pin", "")
    fields = _form_fields()
    context = {"serial": serial, "current": current, "certificate": rec,
               "form": {**current, **fields}, "kind": kind, "key": key}

    def again(status: int, message: str) -> Response:
        return _page(template, status, error=message, **context)

    if kind not in ("renewal", "change"):
        return again(400, gettext("Choose a renewal or a change of content."))
    if key not in cert_requests.KEY_CHOICES:
        return again(400, gettext("Choose the same key or a new key."))
    if key == "new" and not pin:
        return again(400, gettext("A new key is protected by your signing PIN: enter it."))
    if len(pin) > MAX_PIN:
        return again(400, gettext("The PIN is too long."))
    message = _form_error(fields)
    if message:
        return again(400, message)
    changes = _changes(fields, current) if kind == "change" else None
    if kind == "change" and not changes:
        return again(422, gettext("Nothing was changed: change at least one field, or ask "
                                  "for a renewal with the same content."))
    actor = f"account:{who.username}"
    try:
        if kind == "renewal":
            filed = cert_requests.file_renewal(
                get_kyso().authority, serial, actor=actor, official_id=official_id, key=key,
                pin=pin or None, filed_via=via, request_id=request_id())
        else:
            assert changes is not None
            filed = cert_requests.file_change(
                get_kyso().authority, serial, changes, actor=actor, official_id=official_id,
                key=key, pin=pin or None, filed_via=via, request_id=request_id())
    except NotFound:
        raise
    except CAError as exc:
        return again(exc.http_status, _message(exc))
    target = (url_for("requests.my_requests", filed=filed.id) if via == "portal"
              else url_for("requests.console", filed=filed.id))
    return cast(Response, redirect(target, code=303))


# -- the official's side --------------------------------------------------------------------

@bp.get("/portal/certificates/<serial>/renew")
@login_required("official")
def renew_form(serial: str) -> Response:
    """Ask for a renewal or a change of content of one of my certificates."""
    official_id = _own_official(_who())
    serial, current, rec = _certificate(serial, official_id)
    return _page("requests/renew.html", serial=serial, current=current, certificate=rec,
                 form=current, kind="renewal", key="same", pending=_open_request(serial))


@bp.post("/portal/certificates/<serial>/renew")
@login_required("official")
def renew(serial: str) -> Response:
    who = _who()
    official_id = _own_official(who)
    serial, current, rec = _certificate(serial, official_id)
    return _file(serial, who=who, official_id=official_id, via="portal",
                 template="requests/renew.html", current=current, rec=rec)


@bp.get("/portal/requests")
@login_required("official")
def my_requests() -> Response:
    """My requests with their status (and the reason of a rejection)."""
    official_id = _own_official(_who())
    mine = cert_requests.list_requests(get_kyso().authority, official_id=official_id)
    filed = request.args.get("filed", type=int)
    return _page("requests/mine.html", requests=mine,
                 filed=next((r for r in mine if r.id == filed), None))


@bp.post("/portal/requests/<int:request_no>/cancel")
@login_required("official")
def cancel(request_no: int) -> Response:
    who = _who()
    official_id = _own_official(who)
    cert_requests.cancel(get_kyso().authority, _request_no(request_no),
                         official_id=official_id, actor=f"account:{who.username}",
                         audit_request_id=request_id())
    return cast(Response, redirect(url_for("requests.my_requests"), code=303))


# -- the operator's side --------------------------------------------------------------------

def _request_no(number: int) -> int:
    # Beyond a database integer is no request at all (and never reaches the database).
    if number > 2**31 - 1:
        raise _Missing(gettext("No such certificate request."))
    return number


def _console(status: int = 200, *, error: str | None = None, done: int | None = None,
             filed: int | None = None) -> Response:
    authority = get_kyso().authority
    pending = cert_requests.list_requests(authority, statuses=("pending", "issuing"))
    decided = cert_requests.list_requests(authority, statuses=("approved", "rejected",
                                                               "cancelled"), limit=RECENT)
    current: dict[int, dict[str, str | None] | None] = {}
    for r in pending:
        try:
            current[r.id] = authority.official_content(r.serial) if r.serial else None
        except CAError:
            current[r.id] = None
    everything = {r.id: r for r in (*pending, *decided)}
    now = authority.clock()
    return _page("requests/console.html", status, pending=pending, decided=decided,
                 interrupted={r.id for r in pending if r.interrupted(now)},
                 current=current, error=error, done=everything.get(done or 0),
                 filed=everything.get(filed or 0), max_reason=MAX_REASON)


@bp.get("/console/requests")
@login_required("operator")
def console() -> Response:
    """Pending requests (current and requested content side by side), then recent decisions."""
    return _console(done=request.args.get("done", type=int),
                    filed=request.args.get("filed", type=int))


@bp.post("/console/requests/<int:request_no>/approve")
@login_required("operator")
def approve(request_no: int) -> Response:
    who = _who()
    cert_requests.approve(get_kyso().authority, _request_no(request_no),
                          actor=f"account:{who.username}", audit_request_id=request_id())
    return cast(Response, redirect(url_for("requests.console", done=request_no), code=303))


@bp.post("/console/requests/<int:request_no>/reject")
@login_required("operator")
def reject(request_no: int) -> Response:
    who = _who()
    number = _request_no(request_no)
    reason = request.form.get("reason", "").strip()
    if not reason:
        return _console(400, error=gettext("Give the reason for the rejection: the official "
                                           "sees it."))
    if len(reason) > MAX_REASON:
        return _console(400, error=gettext("The reason is too long (at most %(n)s "
                                           "characters).", n=MAX_REASON))
    cert_requests.reject(get_kyso().authority, number, reason,
                         actor=f"account:{who.username}", audit_request_id=request_id())
    return cast(Response, redirect(url_for("requests.console", done=number), code=303))


@bp.get("/console/requests/new")
@login_required("operator")
def new_form() -> Response:
    """An operator files a renewal or change for an official (the same key: no PIN here)."""
    serial = request.args.get("serial", "").strip()
    if not serial:
        return _page("requests/operator_new.html", serial=None, current=None,
                     certificate=None, form={}, kind="renewal", key="same")
    serial, current, rec = _certificate(serial, None)
    return _page("requests/operator_new.html", serial=serial, current=current, certificate=rec,
                 form=current, kind="renewal", key="same", pending=_open_request(serial))


@bp.post("/console/requests/new")
@login_required("operator")
def new() -> Response:
    serial = request.args.get("serial") or request.form.get("serial", "")
    if not serial.strip():
        return error_response(400, "missing_serial", gettext(
            "Give the serial of the certificate to renew."))
    serial, current, rec = _certificate(serial.strip(), None)
    return _file(serial, who=_who(), official_id=None, via="operator",
                 template="requests/operator_new.html", current=current, rec=rec)
