"""The operators' console: officials, certificates, revocation, CRL and OCSP status."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import format_datetime, gettext, lazy_gettext
from sqlalchemy.exc import IntegrityError
from werkzeug.routing import BuildError

from ca import accounts, store
from ca.errors import CAError, InvalidRequest, NotFound, StateConflict
from ca.issuance import normalize_serial
from ca.keyseal import MAX_PIN_LENGTH, MIN_PIN_LENGTH, check_pin_policy
from web import get_kyso
from web.auth import current_account, login_required
from web.errors import error_response
from web.repository import KIND_LABELS, VIETNAM
from web.repository import STATUS_LABELS as CA_STATUS_LABELS

bp = Blueprint("console", __name__, url_prefix="/console")

PAGE_SIZE = 50
EXPIRING_SOON_DAYS = 30
RESPONDER_WARN_DAYS = 30
MAX_QUERY = 200
MAX_FIELD = 128  # the officials table's text columns
MAX_EMAIL = 254
MAX_SERIAL = 80
MAX_PAGE = 100_000
MAX_EXPIRING_DAYS = 3650
# Readable initial passwords: no 0/O, 1/l/I; 4 groups of 4 (about 92 bits).
_PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

STATUS_LABELS = {
    "valid": lazy_gettext("Valid"),
    "hold": lazy_gettext("On hold"),
    "revoked": lazy_gettext("Revoked"),
    "expired": lazy_gettext("Expired"),
    "pending": lazy_gettext("Pending (not signed yet)"),
    "failed": lazy_gettext("Failed (never signed)"),
}
# RFC 5280 5.3.1 reasons an operator may choose; certificateHold is the separate hold action.
OPERATOR_REASONS = ("unspecified", "keyCompromise", "affiliationChanged", "superseded",
                    "cessationOfOperation", "privilegeWithdrawn")
REASON_LABELS = {
    "unspecified": lazy_gettext("Unspecified"),
    "keyCompromise": lazy_gettext("Key compromise"),
    "cACompromise": lazy_gettext("CA compromise"),
    "affiliationChanged": lazy_gettext("Affiliation changed"),
    "superseded": lazy_gettext("Superseded"),
    "cessationOfOperation": lazy_gettext("Cessation of operation"),
    "certificateHold": lazy_gettext("Certificate hold"),
    "privilegeWithdrawn": lazy_gettext("Privilege withdrawn"),
    "aACompromise": lazy_gettext("AA compromise"),
}
DONE_MESSAGES = {
    "revoked": lazy_gettext("The certificate has been revoked."),
    "held": lazy_gettext("The certificate has been put on hold."),
    "released": lazy_gettext("The certificate has been released from hold and is valid again."),
}


# -- helpers -----------------------------------------------------------------------------------

def _now() -> datetime:
    return datetime.now(UTC)


def _actor() -> str:
    who = current_account()
    assert who is not None  # login_required
    return f"web:{who.username}"


def when(moment: datetime | None) -> str:
    """dd/mm/yyyy HH:MM:SS in Vietnam time (the app's Babel time zone); '' for None."""
    return format_datetime(moment, "dd/MM/yyyy HH:mm:ss") if moment is not None else ""


def display_status(status: str, not_after: datetime, now: datetime) -> str:
    """valid | hold | revoked | expired (| pending | failed): a valid certificate past its
    notAfter is shown as expired."""
    return "expired" if status == "valid" and not_after <= now else status


def status_label(status: str) -> str:
    return str(STATUS_LABELS.get(status, status))


def reason_label(reason: str | None) -> str:
    return str(REASON_LABELS.get(reason, reason)) if reason else ""


def requests_url() -> str | None:
    """The console page of the pending certificate requests, when that blueprint has one."""
    endpoints = current_app.view_functions
    names = ["requests.console_requests"] if "requests.console_requests" in endpoints else []
    names += sorted(e for e in endpoints if e.startswith("requests.console"))
    for name in names:
        try:
            return url_for(name)
        except BuildError:  # needs arguments: not a list page
            continue
    return None


def _render(template: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("requests_url", requests_url())
    response = Response(render_template(template, when=when, status_label=status_label,
                                        reason_label=reason_label, **context),
                        status=status, mimetype="text/html")
    # Names, serials, a one-time password: nothing here belongs in a shared cache.
    response.headers["Cache-Control"] = "no-store"
    return response


def _not_found() -> Response:
    return error_response(404, "not_found", gettext("There is no certificate with this serial."))


def _canonical_serial(text: str) -> str | None:
    if len(text) > MAX_SERIAL:
        return None
    try:
        return normalize_serial(text)
    except InvalidRequest:
        return None


def _int_arg(name: str, low: int, high: int, errors: list[str], message: str) -> int | None:
    raw = request.args.get(name, "").strip()
    if not raw:
        return None
    # ASCII digits only ("²".isdigit() holds), and short: int() of 5000 digits raises.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 12) or not low <= int(raw) <= high:
        errors.append(message)
        return None
    return int(raw)


def _printable(*values: str) -> bool:
    """No control characters (PostgreSQL refuses NUL in text; none belongs in a name)."""
    return all(v.isprintable() for v in values)


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


# -- index -------------------------------------------------------------------------------------

@bp.get("/")
@login_required("operator")
def index() -> Response:
    now = _now()
    with get_kyso().readers() as s:
        counts = store.certificate_counts(
            s, now=now, soon=now + timedelta(days=EXPIRING_SOON_DAYS))
    return _render("console/index.html", counts=counts, soon_days=EXPIRING_SOON_DAYS)


# -- certificates ------------------------------------------------------------------------------

@dataclass
class CertificateFilters:
    """The list's filters as given (strings, for the form) and as parsed."""

    q: str = ""
    status: str = ""
    organization: str = ""
    expiring_days: int | None = None
    official: int | None = None
    page: int = 1
    errors: list[str] = field(default_factory=list)

    def args(self, **override: Any) -> dict[str, Any]:
        """Query arguments reproducing these filters (for pagination links)."""
        values: dict[str, Any] = {"q": self.q, "status": self.status,
                                  "organization": self.organization,
                                  "expiring_days": self.expiring_days,
                                  "official": self.official, "page": self.page}
        values.update(override)
        return {k: v for k, v in values.items()
                if v not in ("", None) and not (k == "page" and v == 1)}


def _certificate_filters() -> CertificateFilters:
    f = CertificateFilters()
    errors = f.errors
    f.q = request.args.get("q", "").strip()
    if len(f.q) > MAX_QUERY:
        errors.append(gettext("The search text is too long (at most %(n)s characters).",
                              n=MAX_QUERY))
        f.q = f.q[:MAX_QUERY]
    f.status = request.args.get("status", "").strip()
    if f.status and f.status not in store.CONSOLE_STATUSES:
        errors.append(gettext("Unknown status filter: choose valid, on hold, revoked or "
                              "expired."))
        f.status = ""
    f.organization = request.args.get("organization", "").strip()
    if len(f.organization) > MAX_FIELD:
        errors.append(gettext("The organization is too long (at most %(n)s characters).",
                              n=MAX_FIELD))
        f.organization = f.organization[:MAX_FIELD]
    if not _printable(f.q, f.organization):
        errors.append(gettext("The search contains control characters."))
        f.q = f.organization = ""
    f.expiring_days = _int_arg("expiring_days", 1, MAX_EXPIRING_DAYS, errors, gettext(
        "“Expiring within” takes a number of days from 1 to %(n)s.", n=MAX_EXPIRING_DAYS))
    f.official = _int_arg("official", 1, 2**31 - 1, errors,
                          gettext("The official filter takes an official's number."))
    f.page = _int_arg("page", 1, MAX_PAGE, errors, gettext(
        "The page number must be between 1 and %(n)s.", n=MAX_PAGE)) or 1
    return f


@dataclass(frozen=True)
class CertificateRow:
    serial: str
    subject: str
    organization: str
    official_name: str
    ca_name: str
    profile: str
    status: str
    not_after: str
    soon: bool


@bp.get("/certificates")
@login_required("operator")
def certificates() -> Response:
    f = _certificate_filters()
    now = _now()
    rows: list[CertificateRow] = []
    total = 0
    official_name = None
    with get_kyso().readers() as s:
        orgs = store.organizations(s)
        if f.official is not None:
            try:
                official_name = store.get_official(s, f.official).name
            except NotFound:
                f.errors.append(gettext("There is no official number %(id)s.", id=f.official))
        if not f.errors:
            found, total = store.search_certificates(
                s, now=now, text=f.q or None, status=f.status or None,
                organization=f.organization or None,
                expiring_before=(now + timedelta(days=f.expiring_days)
                                 if f.expiring_days else None),
                official_id=f.official, offset=(f.page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
            soon = now + timedelta(days=EXPIRING_SOON_DAYS)
            rows = [CertificateRow(
                serial=c.serial, subject=c.subject, organization=c.organization or "",
                official_name=c.official_name or "", ca_name=c.ca_name, profile=c.profile,
                status=display_status(c.status, c.not_after, now), not_after=when(c.not_after),
                soon=c.status == "valid" and now < c.not_after <= soon) for c in found]
    return _render("console/certificates.html", 400 if f.errors else 200, f=f, rows=rows,
                   total=total, pages=_pages(total), statuses=store.CONSOLE_STATUSES,
                   organizations=orgs, official_name=official_name, page_size=PAGE_SIZE)


@dataclass(frozen=True)
class CertificateLink:
    serial: str
    status: str


@dataclass(frozen=True)
class CertificateView:
    serial: str
    subject: str
    profile: str
    key_spec: str
    ca_name: str
    ca_subject: str
    status: str  # display status
    stored_status: str
    revocation_reason: str | None
    revoked_at: str
    invalidity_date: str
    status_changed_at: str
    not_before: str
    not_after: str
    issued_at: str
    official_id: int | None
    official_name: str | None
    official_title: str | None
    official_organization: str | None
    has_pem: bool
    predecessor: CertificateLink | None
    successors: tuple[CertificateLink, ...]


def _certificate_view(serial: str) -> CertificateView | None:
    now = _now()
    with get_kyso().readers() as s:
        rec = store.find_certificate(s, serial)
        if rec is None:
            return None
        ca = store.get_ca_by_id(s, rec.ca_id)
        official = store.get_official(s, rec.official_id) if rec.official_id else None
        before = (store.find_certificate_by_id(s, rec.predecessor_id)
                  if rec.predecessor_id else None)
        after = store.certificate_successors(s, rec.id)
        return CertificateView(
            serial=rec.serial, subject=rec.subject, profile=rec.profile,
            key_spec=rec.key_spec, ca_name=ca.name, ca_subject=ca.subject,
            status=display_status(rec.status, rec.not_after, now), stored_status=rec.status,
            revocation_reason=rec.revocation_reason, revoked_at=when(rec.revoked_at),
            invalidity_date=when(rec.invalidity_date),
            status_changed_at=when(rec.status_changed_at), not_before=when(rec.not_before),
            not_after=when(rec.not_after), issued_at=when(rec.issued_at),
            official_id=rec.official_id, official_name=official.name if official else None,
            official_title=official.title if official else None,
            official_organization=official.organization if official else None,
            has_pem=rec.cert_der is not None,
            predecessor=(CertificateLink(before.serial,
                                         display_status(before.status, before.not_after, now))
                         if before is not None else None),
            successors=tuple(CertificateLink(c.serial,
                                             display_status(c.status, c.not_after, now))
                             for c in after))


def _detail(serial: str, status: int = 200, error: str | None = None,
            form: dict[str, str] | None = None) -> Response:
    view = _certificate_view(serial)
    if view is None:
        return _not_found()
    done = request.args.get("done", "") if status == 200 else ""
    return _render("console/certificate.html", status, cert=view, error=error,
                   done=str(DONE_MESSAGES[done]) if done in DONE_MESSAGES else None,
                   reasons=OPERATOR_REASONS, form=form or {})


@bp.get("/certificates/<serial>")
@login_required("operator")
def certificate(serial: str) -> Response:
    canonical = _canonical_serial(serial)
    if canonical is None:
        return _not_found()
    return _detail(canonical)


@bp.get("/certificates/<serial>/pem")
@login_required("operator")
def certificate_pem(serial: str) -> Response:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    canonical = _canonical_serial(serial)
    if canonical is None:
        return _not_found()
    with get_kyso().readers() as s:
        rec = store.find_certificate(s, canonical)
        der = rec.cert_der if rec is not None else None
    if der is None:
        return _not_found() if rec is None else error_response(
            404, "not_signed", gettext("This certificate was never signed: no PEM exists."))
    pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    response = Response(pem, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = f'attachment; filename="{canonical}.pem"'
    response.headers["Cache-Control"] = "no-store"
    return response


def _conflict_message(action: str, serial: str, exc: StateConflict) -> str:
    """The refusal in the page's language, from the certificate's state now."""
    view = _certificate_view(serial)
    if view is None:
        return exc.message
    if action == "revoke" and view.stored_status == "revoked":
        return gettext("This certificate is already revoked (%(reason)s, %(at)s).",
                       reason=reason_label(view.revocation_reason), at=view.revoked_at)
    if action == "hold":
        return gettext("Only a valid certificate can be put on hold; this one is "
                       "%(status)s.", status=status_label(view.status))
    if action == "release":
        return gettext("This certificate is not on hold (it is %(status)s): there is "
                       "nothing to release.", status=status_label(view.status))
    if view.stored_status == "failed":
        return gettext("This certificate was never signed.")
    return exc.message


def _act(serial: str, action: str, call: Callable[[str], object],
         form: dict[str, str] | None = None) -> Response:
    """Run a revoke / hold / release; redirect to the detail page, or re-render it with the
    refusal (409 for the certificate's state, 400 for the request)."""
    canonical = _canonical_serial(serial)
    if canonical is None:
        return _not_found()
    try:
        call(canonical)
    except NotFound:
        return _not_found()
    except StateConflict as exc:
        return _detail(canonical, 409, _conflict_message(action, canonical, exc), form)
    except CAError as exc:
        return _detail(canonical, 400, exc.message, form)
    done = {"revoke": "revoked", "hold": "held", "release": "released"}[action]
    return cast(Response, redirect(url_for("console.certificate", serial=canonical,
                                           done=done) + "#cert-status", code=303))


def _invalidity_date(text: str) -> datetime:
    """A datetime-local value (Vietnam time, minutes or seconds) as UTC."""
    if len(text) > 32:
        raise ValueError(text)
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=VIETNAM)
    return parsed.astimezone(UTC)


@bp.post("/certificates/<serial>/revoke")
@login_required("operator")
def revoke(serial: str) -> Response:
    reason = request.form.get("reason", "")
    invalidity_text = request.form.get("invalidity_date", "").strip()
    form = {"reason": reason if reason in OPERATOR_REASONS else "",
            "invalidity_date": invalidity_text[:32]}
    canonical = _canonical_serial(serial)
    if canonical is None:
        return _not_found()
    if reason not in OPERATOR_REASONS:
        return _detail(canonical, 400, gettext("Choose one of the offered revocation "
                                               "reasons."), form)
    if not request.form.get("confirm"):
        return _detail(canonical, 400, gettext(
            "Tick the confirmation box: a revocation cannot be undone."), form)
    invalidity: datetime | None = None
    if invalidity_text:
        try:
            invalidity = _invalidity_date(invalidity_text)
        except ValueError:
            return _detail(canonical, 400, gettext(
                "The invalidity date is not a date and time (dd/mm/yyyy hh:mm)."), form)
        if invalidity > _now():
            return _detail(canonical, 400, gettext(
                "The invalidity date cannot be in the future."), form)
    actor = _actor()
    return _act(serial, "revoke", lambda s: get_kyso().authority.revoke(
        s, reason, invalidity_date=invalidity, actor=actor), form)


@bp.post("/certificates/<serial>/hold")
@login_required("operator")
def hold(serial: str) -> Response:
    actor = _actor()
    return _act(serial, "hold", lambda s: get_kyso().authority.hold(s, actor=actor))


@bp.post("/certificates/<serial>/release")
@login_required("operator")
def release(serial: str) -> Response:
    actor = _actor()
    return _act(serial, "release", lambda s: get_kyso().authority.release(s, actor=actor))


# -- officials ---------------------------------------------------------------------------------

@bp.get("/officials")
@login_required("operator")
def officials() -> Response:
    errors: list[str] = []
    q = request.args.get("q", "").strip()
    organization = request.args.get("organization", "").strip()
    if len(q) > MAX_QUERY or len(organization) > MAX_FIELD:
        errors.append(gettext("The search text is too long (at most %(n)s characters).",
                              n=MAX_QUERY if len(q) > MAX_QUERY else MAX_FIELD))
        q, organization = q[:MAX_QUERY], organization[:MAX_FIELD]
    if not _printable(q, organization):
        errors.append(gettext("The search contains control characters."))
        q = organization = ""
    page = _int_arg("page", 1, MAX_PAGE, errors, gettext(
        "The page number must be between 1 and %(n)s.", n=MAX_PAGE)) or 1
    found: list[store.OfficialListing] = []
    total = 0
    with get_kyso().readers() as s:
        orgs = store.organizations(s)
        if not errors:
            found, total = store.search_officials(
                s, text=q or None, organization=organization or None,
                offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    args = {k: v for k, v in (("q", q), ("organization", organization)) if v}
    return _render("console/officials.html", 400 if errors else 200, errors=errors, q=q,
                   organization=organization, officials=found, total=total, page=page,
                   pages=_pages(total), args=args, organizations=orgs)


OFFICIAL_FIELDS = ("name", "title", "organization", "unit", "locality", "email", "username",
                   "ca")
REQUIRED_FIELDS = ("name", "organization", "email", "username", "ca")


def _issuing_cas() -> list[str]:
    """The CAs that can issue an official's certificate here: active, online, issuing."""
    kyso = get_kyso()
    with kyso.readers() as s:
        return [c.name for c in store.list_cas(s)
                if c.kind == "issuing" and c.status == "active"
                and kyso.authority.is_online(c)]


def _new_official_page(status: int = 200, errors: list[str] | None = None,
                       form: dict[str, str] | None = None) -> Response:
    cas = _issuing_cas()
    values = dict(form or {})
    if not values.get("ca") and len(cas) == 1:
        values["ca"] = cas[0]
    return _render("console/official_new.html", status, errors=errors or [], form=values,
                   cas=cas, min_pin=MIN_PIN_LENGTH, min_password=accounts.MIN_PASSWORD)


@bp.get("/officials/new")
@login_required("operator")
def new_official() -> Response:
    return _new_official_page()


def _check_username(username: str) -> str | None:
    """Why the username cannot be used (the rules of ca.accounts.create_account), or None."""
    if not username or len(username) > accounts.MAX_USERNAME or not username.isprintable() \
            or any(c.isspace() for c in username):
        return gettext("A username has 1 to %(n)s characters and no spaces.",
                       n=accounts.MAX_USERNAME)
    with get_kyso().readers() as s:
        if accounts.find(s, username) is not None:
            return gettext("The username %(u)s is taken: choose another.", u=username)
    return None


def _initial_password() -> str:
    raw = "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(16))
    return "-".join(raw[i:i + 4] for i in range(0, 16, 4))


@bp.post("/officials/new")
@login_required("operator")
def create_official() -> Response:
    form = {k: request.form.get(k, "").strip() for k in OFFICIAL_FIELDS}
    # The PIN is read once and never put back into a page, a log or the audit details.
    pin = request.form.get("pin", "")
    pin_confirm = request.form.get("pin_confirm", "")
    errors: list[str] = []
    missing = [k for k in REQUIRED_FIELDS if not form[k]]
    if missing:
        errors.append(gettext("Fill in every required field (marked *)."))
    for k in OFFICIAL_FIELDS:
        limit = MAX_EMAIL if k == "email" else MAX_FIELD
        if len(form[k]) > limit:
            errors.append(gettext("A field is too long (at most %(n)s characters).", n=limit))
            form[k] = form[k][:limit]
            break
    if not _printable(*form.values()):
        errors.append(gettext("A field contains control characters."))
    if form["email"] and ("@" not in form["email"] or any(c.isspace() for c in form["email"])):
        errors.append(gettext("The e-mail address is not valid."))
    if form["ca"] and form["ca"] not in _issuing_cas():
        errors.append(gettext("Choose one of the offered issuing CAs."))
    if form["username"]:
        problem = _check_username(form["username"])
        if problem:
            errors.append(problem)
    if not pin:
        errors.append(gettext("The official must type a signing PIN (twice)."))
    elif pin != pin_confirm:
        errors.append(gettext("The two PINs differ: the official must type the same PIN "
                              "twice."))
    else:
        try:
            check_pin_policy(pin)
        except InvalidRequest:
            errors.append(gettext(
                "The signing PIN must have %(min)s to %(max)s characters and must not repeat "
                "one character.", min=MIN_PIN_LENGTH, max=MAX_PIN_LENGTH))
    if errors:
        shown = {k: "".join(c for c in v if c.isprintable()) for k, v in form.items()}
        return _new_official_page(400, errors, shown)
    password = _initial_password()
    accounts.check_password_rules(password)
    actor = _actor()
    kyso = get_kyso()
    try:
        created = kyso.authority.add_official(
            name=form["name"], title=form["title"] or None,
            organization=form["organization"], unit=form["unit"] or None,
            locality=form["locality"] or None, email=form["email"], pin=pin,
            ca_name=form["ca"], actor=actor)
    except CAError as exc:
        status = 400 if isinstance(exc, InvalidRequest) else exc.http_status
        return _new_official_page(status, [gettext(
            "The official could not be created: %(why)s", why=exc.message)], form)
    del pin, pin_confirm
    try:
        with kyso.sessions.begin() as s:
            _, totp_secret = accounts.create_account(
                s, username=form["username"], password=password, roles=("official",),
                key=accounts.totp_key(current_app.config["SECRET_KEY"]),
                display_name=form["name"], official_id=created.official_id, actor=actor)
    except (CAError, IntegrityError) as exc:
        # Taken meanwhile by another request (the unique index): the official exists anyway.
        why = exc.message if isinstance(exc, CAError) else gettext(
            "The username %(u)s is taken: choose another.", u=form["username"])
        return _render("console/official_created.html", 409, official_id=created.official_id,
                       serial=created.certificate.serial, name=form["name"],
                       account_error=why, username=form["username"])
    return _render("console/official_created.html", 201, official_id=created.official_id,
                   serial=created.certificate.serial, name=form["name"], account_error=None,
                   username=form["username"], password=password,
                   totp_uri=accounts.provisioning_uri(totp_secret, form["username"]),
                   totp_secret=totp_secret)


# -- CRL and OCSP status -----------------------------------------------------------------------

@dataclass(frozen=True)
class CrlView:
    number: int
    this_update: str
    next_update: str
    warning: str | None


@dataclass(frozen=True)
class CaStatus:
    name: str
    kind: str
    status: str
    online: bool
    full: CrlView | None
    delta: CrlView | None
    crl_warning: str | None
    responder_serial: str | None
    responder_not_after: str
    responder_warning: str | None
    responses: int
    oldest_next_update: str
    stale_responses: int


def _crl_view(crl: Any, now: datetime, window: timedelta) -> CrlView | None:
    if crl is None:
        return None
    warning = None
    if crl.next_update <= now:
        warning = gettext("Overdue: nextUpdate has passed and no newer CRL was made.")
    elif crl.next_update - now <= window:
        warning = gettext("Due: nextUpdate is within the refresh window; a new CRL should "
                          "follow shortly.")
    return CrlView(crl.number, when(crl.this_update), when(crl.next_update), warning)


@bp.get("/status", endpoint="status")
@login_required("operator")
def ca_status() -> Response:
    kyso = get_kyso()
    now = _now()
    crls = kyso.crls
    window = crls.policy.refresh_before
    rows: list[CaStatus] = []
    with kyso.readers() as s:
        cas = list(store.list_cas(s))
        responders = {ca.id: store.ocsp_responder_certificates(s, ca.id, now) for ca in cas}
        stats = {ca.id: store.ocsp_response_stats(s, ca.id, now) for ca in cas}
    for ca in cas:
        # What `kyso crl show` reads: the newest signed CRL of each kind.
        full = _crl_view(crls.current(ca.name, "full"), now, window)
        delta = _crl_view(crls.current(ca.name, "delta"), now, window)
        responder = responders[ca.id][0] if responders[ca.id] else None
        responder_warning = None
        if responder is None:
            responder_warning = gettext("No OCSP responder certificate in force: OCSP "
                                        "requests about this CA's certificates get no answer.")
        elif responder[3] - now <= timedelta(days=RESPONDER_WARN_DAYS):
            responder_warning = gettext(
                "Expires within %(n)s days (renewed automatically for an online CA).",
                n=RESPONDER_WARN_DAYS)
        st = stats[ca.id]
        rows.append(CaStatus(
            name=ca.name, kind=str(KIND_LABELS.get(ca.kind, ca.kind)),
            status=str(CA_STATUS_LABELS.get(ca.status, ca.status)),
            online=kyso.authority.is_online(ca), full=full, delta=delta,
            crl_warning=None if full is not None else gettext("No CRL published yet."),
            responder_serial=responder[0] if responder else None,
            responder_not_after=when(responder[3]) if responder else "",
            responder_warning=responder_warning, responses=st.count,
            oldest_next_update=when(st.oldest_next_update), stale_responses=st.stale))
    return _render("console/status.html", cas=rows, generated_at=when(now),
                   window_hours=int(window.total_seconds() // 3600),
                   responder_warn_days=RESPONDER_WARN_DAYS)
