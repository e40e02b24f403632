"""The officials' portal: their certificates, signing PDFs with their own PIN."""

from __future__ import annotations

import io
import json
import logging
import math
import os
import re
import secrets
import shutil
import threading
import time
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for
from flask_babel import format_datetime, format_decimal, gettext, lazy_gettext
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import RequestEntityTooLarge

from ca import lifecycle, reorg, store
from ca.errors import CAError, KeyLocked, PinIncorrect
from ca.models import CertificateRecord
from signer.errors import SignerError
from web import get_kyso
from web.auth import CurrentAccount, current_account, login_required
from web.errors import csrf_message, error_response, too_large_message, wants_json
from web.security import limiter, upload_limit_bytes

if TYPE_CHECKING:
    from werkzeug.datastructures import FileStorage

    from kyso.signing import BatchItem

bp = Blueprint("portal", __name__, url_prefix="/portal")
log = logging.getLogger("kyso.web")

# Uploads wait this long for their signature; older batches (and their signed copies) go.
BATCH_TTL = timedelta(hours=4)
SWEEP_EVERY_SECONDS = 600
MAX_DOCUMENTS = 20
MAX_NAME_CHARS = 120
MAX_PIN_CHARS = 256
MAX_NUMBER_CHARS = 32
PREVIEW_WIDTH = 700  # pixels
MAX_PREVIEW_HEIGHT = 2000
DEFAULT_BOX = (200.0, 80.0)  # points
BOX_MARGIN = 36.0  # the default box sits this far from the bottom-right corner
WORK_DIR = "web-work"
MANIFEST = "batch.json"
PREVIEW = "preview.png"

_BATCH_ID = re.compile(r"[A-Za-z0-9_-]{24}")
_SERIAL = re.compile(r"[0-9a-f]{1,64}")
# pdfium is not thread-safe: one rendering at a time in a process.
_PDFIUM = threading.Lock()
_sweep_lock = threading.Lock()
_last_sweep = 0.0

LEVEL_LABELS = {
    "B-B": lazy_gettext("B-B — basic signature"),
    "B-T": lazy_gettext("B-T — with a trusted timestamp"),
    "B-LT": lazy_gettext("B-LT — with long-term validation data (recommended)"),
    "B-LTA": lazy_gettext("B-LTA — long-term, with an archive timestamp"),
}
REASON_LABELS = {
    "unspecified": lazy_gettext("unspecified"),
    "keyCompromise": lazy_gettext("key compromise"),
    "cACompromise": lazy_gettext("CA compromise"),
    "affiliationChanged": lazy_gettext("affiliation changed"),
    "superseded": lazy_gettext("superseded"),
    "cessationOfOperation": lazy_gettext("cessation of operation"),
    "privilegeWithdrawn": lazy_gettext("privilege withdrawn"),
}


# -- refusals -------------------------------------------------------------------------------

class _Unlinked(Exception):
    """The account holds the official role but signs for no official."""


class _BatchGone(Exception):
    """No such batch of this account (never made, another account's, or expired)."""


@bp.errorhandler(_Unlinked)
def _unlinked(exc: _Unlinked) -> Response:
    message = gettext("Your account is not linked to an official record, so it has no "
                      "certificates and cannot sign. Ask an administrator to link it.")
    if wants_json():
        return error_response(403, "no_official", message)
    return _html(render_template("portal/unlinked.html", message=message), 403)


@bp.errorhandler(_BatchGone)
def _batch_gone(exc: _BatchGone) -> Response:
    return error_response(404, "batch_not_found", gettext(
        "This signing batch does not exist or has expired. Upload the documents again."))


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    if _official_account() is None or wants_json():
        return error_response(413, "request_entity_too_large", too_large_message())
    return _upload_page(413, too_large_message())


@bp.errorhandler(CSRFError)
def _csrf_failed(exc: CSRFError) -> Response:
    # The upload form again (with a fresh token) is all a person needs; elsewhere the page.
    if request.endpoint == "portal.upload" and _official_account() is not None \
            and not wants_json():
        return _upload_page(400, csrf_message())
    return error_response(400, "csrf_failed", csrf_message())


# -- small helpers --------------------------------------------------------------------------

def _html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"  # someone's certificates and documents
    return response


def _official_account() -> tuple[CurrentAccount, int] | None:
    who = current_account()
    if who is None or not who.has("official") or who.official_id is None:
        return None
    return who, who.official_id


def _official() -> tuple[CurrentAccount, int]:
    """The logged-in official (login_required ran before); _Unlinked when not linked."""
    who = current_account()
    assert who is not None  # login_required
    if who.official_id is None:
        raise _Unlinked()
    return who, who.official_id


def _date(moment: datetime, with_time: bool = False) -> str:
    """dd/mm/yyyy in Vietnam time (Babel's default time zone is Asia/Ho_Chi_Minh)."""
    return format_datetime(moment, "dd/MM/yyyy HH:mm" if with_time else "dd/MM/yyyy")


def _sign_rate_limit() -> str:
    return str(current_app.config["KYSO_SETTINGS"].web.sign_rate_limit)


def display_name(raw: str) -> str:
    """An uploaded file's name for display and downloads only (never a path here): the last
    path part, NFC, without control or bidi characters, at most MAX_NAME_CHARS."""
    name = unicodedata.normalize("NFC", raw.replace("\\", "/").rsplit("/", 1)[-1])
    name = "".join(ch for ch in name if ch.isprintable()).strip().lstrip(".")
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        ext = ext if dot and len(ext) <= 8 else ""
        name = name[:MAX_NAME_CHARS - len(ext) - 2] + "…" + (f".{ext}" if ext else "")
    return name or "document.pdf"


def signed_name(name: str) -> str:
    stem = name[:-4] if name.lower().endswith(".pdf") else name
    return f"{stem}-signed.pdf"


def content_disposition(filename: str) -> str:
    """attachment with an ASCII fallback and the exact name as RFC 5987 filename*."""
    fallback = filename.replace("đ", "d").replace("Đ", "D")
    fallback = unicodedata.normalize("NFKD", fallback).encode("ascii", "ignore").decode()
    fallback = re.sub(r"[^A-Za-z0-9._ ()-]+", "_", fallback).strip() or "document.pdf"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


# -- my certificates ------------------------------------------------------------------------

@dataclass(frozen=True)
class CertificateView:
    """One certificate as the page shows it (plain strings, no ORM object in templates)."""

    serial: str
    name: str
    subject: str
    organization: str
    state: str  # valid | hold | revoked | expired | not_yet_valid: the CSS class
    state_text: str
    not_before: str
    not_after: str
    expires_in_days: int | None  # set when the expiry banner warns about it
    renewable: bool


@dataclass(frozen=True)
class ExpiryNotice:
    """One line of the expiry banner: a current certificate within the largest
    [lifecycle] warn_days threshold (ca.lifecycle decides which, as for the mails)."""

    serial: str
    days_left: int  # whole days (0: less than a day)
    not_after: str
    renew_url: str | None  # None: no renewal page here, or a request is already open
    request_pending: bool


def _expiry_notices(official_id: int, now: datetime | None = None) -> list[ExpiryNotice]:
    """The portal's banner: the official's certificates expiring within the largest
    warning threshold, soonest first (the same rule as the warning mails)."""
    now = now or datetime.now(UTC)
    warn_days = current_app.config["KYSO_SETTINGS"].lifecycle.warn_days
    renewable = "requests.renew_form" in current_app.view_functions
    notices = []
    with get_kyso().readers() as s:
        for item in lifecycle.official_expiry_warnings(s, official_id, now, warn_days):
            pending = store.open_request_for(s, item.serial) is not None
            notices.append(ExpiryNotice(
                serial=item.serial, days_left=item.days_left,
                not_after=_date(item.not_after, True), request_pending=pending,
                renew_url=(url_for("requests.renew_form", serial=item.serial)
                           if renewable and not pending else None)))
    return notices


def _certificate_view(record: CertificateRecord, now: datetime,
                      expiring: dict[str, int] | None = None) -> CertificateView:
    """`expiring`: serial -> days left of the certificates the banner warns about."""
    assert record.cert_der is not None
    cert = x509.load_der_x509_certificate(record.cert_der)
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    expires_in: int | None = None
    if record.status == "revoked":
        reason = record.revocation_reason or "unspecified"
        state, text = "revoked", gettext(
            "Revoked on %(date)s (reason: %(reason)s)",
            date=_date(record.revoked_at, True) if record.revoked_at else "-",
            reason=str(REASON_LABELS.get(reason, reason)))
    elif record.status == "hold":
        state, text = "hold", gettext("On hold (temporarily suspended)")
    elif record.not_after <= now:
        state, text = "expired", gettext("Expired on %(date)s", date=_date(record.not_after))
    elif record.not_before > now:
        state, text = "not_yet_valid", gettext("Not yet valid")
    else:
        state, text = "valid", gettext("Valid")
        expires_in = (expiring or {}).get(record.serial)
    return CertificateView(
        serial=record.serial,
        name=str(names[0].value) if names else record.subject,
        subject=record.subject,
        organization=record.organization or "",
        state=state,
        state_text=text,
        not_before=_date(record.not_before),
        not_after=_date(record.not_after),
        expires_in_days=expires_in,
        renewable=state in ("valid", "hold", "expired"),
    )


@bp.get("/")
@login_required("official")
def certificates() -> Response:
    return _certificates_page()


def _certificates_page(status: int = 200, *, error: str | None = None,
                       done: list[str] | None = None) -> Response:
    _, official_id = _official()
    now = datetime.now(UTC)
    notices = _expiry_notices(official_id, now)
    expiring = {n.serial: n.days_left for n in notices}
    kyso = get_kyso()
    with kyso.readers() as s:
        views = [_certificate_view(r, now, expiring)
                 for r in reversed(store.official_certificates(s, official_id))
                 if r.cert_der is not None]  # pending: reserved, never signed
    waiting = reorg.waiting_rekeys(kyso.authority, official_id)
    return _html(render_template(
        "portal/certificates.html", certificates=views, expiry_notices=notices,
        renew_available="requests.renew_form" in current_app.view_functions,
        rekeys=waiting, rekey_batches=sorted({w.batch_id for w in waiting}),
        rekey_error=error, rekey_done=done or []), status)


@bp.post("/rekey/<int:reorg_batch>")
@login_required("official")
@limiter.limit(lambda: str(current_app.config["KYSO_SETTINGS"].web.sign_rate_limit))
def complete_rekey(reorg_batch: int) -> Response:
    """A reorganization batch made with --rekey waits for each official: their PIN opens the
    current key, a new key is made in the HSM sealed under the same PIN, and the new
    certificates are issued for it (the old ones then revoked). Only the official can do it."""
    who, official_id = _official()
    pin = request.form.get("pin", "")
    if not pin or len(pin) > MAX_PIN_CHARS:
        return _certificates_page(400, error=gettext("Enter your signing PIN."))
    try:
        serials = reorg.complete_rekey(get_kyso().authority, reorg_batch, official_id, pin,
                                       actor=f"web:{who.username}")
    except PinIncorrect:
        return _certificates_page(403, error=gettext(
            "Wrong signing PIN: no new key was made. %(left)s attempt(s) left before your "
            "signing key is locked.", left=_attempts_left(official_id)))
    except KeyLocked:
        return _certificates_page(423, error=gettext(
            "Your signing key is locked after too many wrong PINs. An operator must unlock "
            "it."))
    except CAError as exc:
        status = exc.http_status if 400 <= exc.http_status < 500 else 409
        return _certificates_page(status, error=gettext(
            "The new key could not be completed: %(why)s", why=exc.message))
    return _certificates_page(done=serials)


@bp.get("/certificates/<serial>/chain.pem")
@login_required("official")
def chain_pem(serial: str) -> Response:
    """The certificate followed by its CA chain up to the root, as PEM."""
    _, official_id = _official()
    serial = serial.strip().lower().replace(":", "").lstrip("0")
    kyso = get_kyso()
    record, ca_name = None, ""
    if _SERIAL.fullmatch(serial):
        with kyso.readers() as s:
            record = store.find_certificate(s, serial)
            ca_name = store.get_ca_by_id(s, record.ca_id).name if record else ""
    if record is None or record.official_id != official_id or record.cert_der is None:
        return error_response(404, "not_found", gettext(
            "You have no certificate with this serial number."))
    chain = [x509.load_der_x509_certificate(record.cert_der), *kyso.authority.chain(ca_name)]
    body = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    response = Response(body, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = content_disposition(f"{record.serial}-chain.pem")
    response.headers["Cache-Control"] = "no-store"
    return response


# -- batches on disk ------------------------------------------------------------------------

@dataclass
class Batch:
    """An account's uploaded documents waiting for (or done with) their signature."""

    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def documents(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self.manifest["documents"])

    @property
    def results(self) -> list[dict[str, Any]] | None:
        return cast(list[dict[str, Any]] | None, self.manifest.get("results"))

    def save(self) -> None:
        _write_private(self.path / MANIFEST,
                       json.dumps(self.manifest, ensure_ascii=False).encode("utf-8"))


def _work_root() -> Path:
    return Path(get_kyso().settings.data_dir) / WORK_DIR


def _write_private(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0600), atomically: readers see the old or the new file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _expired(manifest: dict[str, Any], now: float) -> bool:
    """Older than BATCH_TTL since the upload or, when signed, since the signing (so the
    signed copies can still be fetched)."""
    times = [t for t in (manifest.get("created"), manifest.get("signed_at"))
             if isinstance(t, int | float)]
    return not times or now - max(times) > BATCH_TTL.total_seconds()


def sweep(root: Path, now: float | None = None) -> int:
    """Delete the batches under `root` older than BATCH_TTL (with their signed copies);
    the number deleted."""
    now = time.time() if now is None else now
    gone = 0
    if not root.is_dir():
        return 0
    for account_dir in root.iterdir():
        if not account_dir.is_dir():
            continue
        for batch_dir in account_dir.iterdir():
            try:
                manifest = json.loads((batch_dir / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                # Half-made (or broken) batch: judged by the directory's age.
                manifest = {"created": batch_dir.stat().st_mtime}
            if _expired(manifest, now):
                shutil.rmtree(batch_dir, ignore_errors=True)
                gone += 1
        try:
            account_dir.rmdir()  # only when empty
        except OSError:
            pass
    return gone


def _sweep_now_and_then() -> None:
    """Opportunistic clean-up (at most every SWEEP_EVERY_SECONDS per process): no scheduler
    is needed for files nobody came back for."""
    global _last_sweep
    now = time.time()
    with _sweep_lock:
        if now - _last_sweep < SWEEP_EVERY_SECONDS:
            return
        _last_sweep = now
    try:
        sweep(_work_root(), now)
    except OSError as exc:
        log.warning("portal: cleaning %s failed: %s", _work_root(), exc)


def _load_batch(who: CurrentAccount, batch_id: str) -> Batch:
    """The account's batch; _BatchGone for a malformed, unknown, foreign or expired id (the
    directory of each account holds only its own batches)."""
    if not _BATCH_ID.fullmatch(batch_id):
        raise _BatchGone()
    path = _work_root() / str(who.id) / batch_id
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise _BatchGone() from None
    if _expired(manifest, time.time()):
        shutil.rmtree(path, ignore_errors=True)
        raise _BatchGone()
    return Batch(batch_id, path, manifest)


# -- the upload -----------------------------------------------------------------------------

def _upload_page(status: int = 200, error: str | None = None,
                 rejected: list[dict[str, str]] | None = None) -> Response:
    if error is not None and wants_json():
        return error_response(status, "upload_refused", error)
    official = _official_account()
    return _html(render_template(
        "portal/upload.html", error=error, rejected=rejected or [],
        expiry_notices=_expiry_notices(official[1]) if official is not None else [],
        file_message=file_message, max_mb=current_app.config["KYSO_SETTINGS"].web.max_upload_mb,
        max_documents=MAX_DOCUMENTS), status)


def file_message(code: str) -> str:
    """Why an upload was refused, for people (the technical detail is shown beside it)."""
    messages = {
        "empty_file": lambda: gettext("The file is empty."),
        "not_a_pdf": lambda: gettext("The file is not a PDF document."),
        "pdf_damaged": lambda: gettext("The PDF cannot be read: the file is damaged or "
                                       "incomplete."),
        "pdf_encrypted": lambda: gettext("The PDF is protected by a password. Upload a copy "
                                         "without password protection."),
        "pdf_too_large": too_large_message,
        "too_many_files": lambda: gettext("Too many files: at most %(n)s documents are signed "
                                          "in one batch.", n=MAX_DOCUMENTS),
    }
    return messages[code]() if code in messages else gettext("The file cannot be used.")


@dataclass(frozen=True)
class _Accepted:
    name: str
    data: bytes
    pages: int | None


def _check_upload(upload: FileStorage, limit: int) -> _Accepted | dict[str, str]:
    from signer.pdfinput import open_pdf

    name = display_name(upload.filename or "")
    data = upload.read(limit + 1)
    if not data:
        return {"name": name, "code": "empty_file", "detail": ""}
    try:
        reader = open_pdf(data, limit)  # size, header, truncation, damage, encryption
    except SignerError as exc:
        return {"name": name, "code": exc.code, "detail": exc.message}
    try:
        pages: int | None = int(reader.root["/Pages"]["/Count"])
    except Exception:  # noqa: BLE001 - the count is only shown; signing will say more
        pages = None
    return _Accepted(name, data, pages)


def _render_preview(data: bytes) -> tuple[bytes, dict[str, float]] | None:
    """The first page as a PNG about PREVIEW_WIDTH pixels wide, and its box in points (the
    crop box, which is what is drawn); None when pdfium cannot draw it."""
    import pypdfium2 as pdfium

    with _PDFIUM:
        try:
            pdf = pdfium.PdfDocument(data)
        except Exception as exc:  # noqa: BLE001 - pdfium's errors have no common base
            log.info("portal: no preview: %s", exc)
            return None
        try:
            page = pdf[0]
            left, bottom, right, top = page.get_cropbox()
            width, height = right - left, top - bottom
            if page.get_rotation() in (90, 270):
                width, height = height, width
            if width <= 0 or height <= 0:
                return None
            scale = min(PREVIEW_WIDTH / width, MAX_PREVIEW_HEIGHT / height)
            image = page.render(scale=scale, fill_color=(255, 255, 255, 255)).to_pil()
            out = io.BytesIO()
            image.save(out, "PNG")
            return out.getvalue(), {
                "left": left, "bottom": bottom, "width": width, "height": height,
                "rotation": page.get_rotation(), "px_width": image.width,
                "px_height": image.height}
        except Exception as exc:  # noqa: BLE001
            log.info("portal: no preview: %s", exc)
            return None
        finally:
            pdf.close()


@bp.get("/sign")
@login_required("official")
def sign() -> Response:
    _official()
    _sweep_now_and_then()
    return _upload_page()


@bp.post("/sign")
@limiter.limit(_sign_rate_limit)
@login_required("official")
def upload() -> Response:
    """Store the usable uploads as a new batch and go to its page; refused files are listed
    there (or, when none is usable, on the form again)."""
    who, _ = _official()
    _sweep_now_and_then()
    limit = upload_limit_bytes(current_app.config["KYSO_SETTINGS"])
    uploads = [u for u in request.files.getlist("pdf") if u.filename]
    if not uploads:
        return _upload_page(400, gettext("Choose one or more PDF files to sign."))
    accepted: list[_Accepted] = []
    rejected: list[dict[str, str]] = []
    for upload_file in uploads:
        if len(accepted) >= MAX_DOCUMENTS:
            rejected.append({"name": display_name(upload_file.filename or ""),
                             "code": "too_many_files", "detail": ""})
            continue
        checked = _check_upload(upload_file, limit)
        if isinstance(checked, _Accepted):
            accepted.append(checked)
        else:
            rejected.append(checked)
    if not accepted:
        return _upload_page(400, gettext("None of the files can be signed."), rejected)
    batch_id = secrets.token_urlsafe(18)
    path = _work_root() / str(who.id) / batch_id
    for directory in (path.parent.parent, path.parent, path):
        directory.mkdir(mode=0o700, exist_ok=directory != path)
    documents = []
    for n, doc in enumerate(accepted):
        _write_private(path / f"{n}.pdf", doc.data)
        documents.append({"name": doc.name, "file": f"{n}.pdf", "size": len(doc.data),
                          "pages": doc.pages})
    preview = _render_preview(accepted[0].data)
    if preview is not None:
        _write_private(path / PREVIEW, preview[0])
    batch = Batch(batch_id, path, {
        "created": time.time(), "documents": documents, "rejected": rejected,
        "preview": preview[1] if preview else None, "results": None})
    batch.save()
    return cast(Response, redirect(url_for("portal.batch", batch_id=batch_id), 303))


# -- the batch page and signing -------------------------------------------------------------

def _default_form(batch: Batch) -> dict[str, str]:
    page = batch.manifest.get("preview") or {"left": 0, "bottom": 0, "width": 595,
                                               "height": 842}
    w, h = DEFAULT_BOX
    x = max(page["left"], page["left"] + page["width"] - w - BOX_MARGIN)
    y = page["bottom"] + BOX_MARGIN
    return {"mode": "visible", "kind": "personal", "level": "B-LT", "page": "1",
            "x": f"{x:g}", "y": f"{y:g}", "w": f"{w:g}", "h": f"{h:g}"}


def _size_text(size: int) -> str:
    return f"{format_decimal(size / 1024, '#,##0.#')} KB"


def _batch_page(batch: Batch, status: int = 200, error: str | None = None,
                code: str = "", detail: str | None = None,
                form: dict[str, str] | None = None) -> Response:
    if error is not None and wants_json():
        return error_response(status, code, error)
    from kyso.signing import DEFAULT_LEVEL, LEVELS

    form = dict(form or _default_form(batch))
    if form.get("level") not in LEVELS:
        form["level"] = DEFAULT_LEVEL
    return _html(render_template(
        "portal/batch.html", batch=batch, documents=batch.documents,
        rejected=batch.manifest.get("rejected") or [], file_message=file_message,
        preview=batch.manifest.get("preview"), form=form,
        levels=[(lv, str(LEVEL_LABELS[lv])) for lv in LEVELS], size_text=_size_text,
        error=error, detail=detail, signed=batch.results is not None,
        default_box=DEFAULT_BOX), status)


@bp.get("/sign/<batch_id>")
@login_required("official")
def batch(batch_id: str) -> Response:
    who, _ = _official()
    return _batch_page(_load_batch(who, batch_id))


@bp.get("/sign/<batch_id>/preview.png")
@login_required("official")
def preview(batch_id: str) -> Response:
    who, _ = _official()
    found = _load_batch(who, batch_id)
    try:
        data = (found.path / PREVIEW).read_bytes()
    except OSError:
        return error_response(404, "no_preview", gettext(
            "There is no preview of this document."))
    response = Response(data, mimetype="image/png")
    response.headers["Cache-Control"] = "private, no-store"
    return response


class _FormError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _number(text: str, integer: bool = False) -> float:
    text = text.strip().replace(",", ".")  # a decimal comma, as typed in Vietnam
    if not text or len(text) > MAX_NUMBER_CHARS:
        raise ValueError(text)
    value = float(int(text)) if integer else float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _sign_request(form: dict[str, str]) -> Any:
    """The SignRequest of the form (kyso.signing.build_sign_request, as `kyso sign` builds
    it); _FormError with a message for people when a field is missing or wrong."""
    from kyso.signing import KINDS, LEVELS, build_sign_request

    if form["mode"] not in ("visible", "invisible"):
        raise _FormError(gettext("Choose a visible or an invisible signature."))
    if form["kind"] not in KINDS:
        raise _FormError(gettext("Choose a personal signature or the organization's seal."))
    if form["level"] not in LEVELS:
        raise _FormError(gettext("Choose a signature level from the list."))
    visible = None
    if form["mode"] == "visible":
        try:
            page = int(_number(form["page"], integer=True))
            x, y, w, h = (_number(form[k]) for k in ("x", "y", "w", "h"))
        except ValueError:
            raise _FormError(gettext(
                "For a visible signature, enter the page (a whole number from 1) and the "
                "box's X, Y, width and height in points.")) from None
        visible = f"{page},{x!r},{y!r},{w!r},{h!r}"
    try:
        return build_sign_request(form["level"], form["kind"], visible=visible)
    except SignerError:
        raise _FormError(gettext(
            "The signature box must start on the page (page from 1, X and Y from 0) and be "
            "at least 20 × 10 points.")) from None


def _form_values() -> dict[str, str]:
    keys = ("mode", "kind", "level", "page", "x", "y", "w", "h")
    return {k: request.form.get(k, "")[:MAX_NUMBER_CHARS * 2] for k in keys}


def _items(batch: Batch) -> Iterator[BatchItem]:
    from kyso.signing import BatchItem

    # One document in memory at a time, as the batch reaches it.
    for n, doc in enumerate(batch.documents):
        yield BatchItem(str(n), (batch.path / doc["file"]).read_bytes())


def _clear_results(batch: Batch) -> None:
    for old in batch.path.glob("*-signed.pdf"):
        old.unlink(missing_ok=True)
    batch.manifest["results"] = None


def _unusable_message(official_id: int) -> str:
    """Why the official cannot sign, in words: the state of their newest certificate."""
    now = datetime.now(UTC)
    with get_kyso().readers() as s:
        issued = [r for r in store.official_certificates(s, official_id) if r.cert_der]
        newest = _certificate_view(issued[-1], now) if issued else None
    if newest is None:
        return gettext("You have no certificate to sign with, so nothing was signed and your "
                       "PIN was not tried. Contact an operator.")
    return gettext("Your signing certificate cannot be used: %(state)s. Nothing was signed "
                   "and your PIN was not tried. Contact an operator.",
                   state=newest.state_text)


def _attempts_left(official_id: int) -> int:
    kyso = get_kyso()
    with kyso.readers() as s:
        failed = store.get_official(s, official_id).failed_pin_attempts
    return max(0, int(kyso.authority.pin_max_attempts) - int(failed))


@bp.post("/sign/<batch_id>")
@limiter.limit(_sign_rate_limit)
@login_required("official")
def sign_batch(batch_id: str) -> Response:
    """Sign every document of the batch with one PIN check; then the results page."""
    from kyso.signing import sign_documents, signing_certificate

    who, official_id = _official()
    found = _load_batch(who, batch_id)
    form = _form_values()
    try:
        sign_request = _sign_request(form)
    except _FormError as exc:
        return _batch_page(found, 400, exc.message, "invalid_form", form=form)
    pin = request.form.get("pin", "")
    if not pin:
        return _batch_page(found, 400, gettext("Enter your signing PIN."), "missing_pin",
                           form=form)
    if len(pin) > MAX_PIN_CHARS:
        return _batch_page(found, 400, gettext("The PIN is too long."), "invalid_pin",
                           form=form)
    kyso = get_kyso()
    # Revoked, on hold, expired or missing: refused before the PIN is tried.
    try:
        signing_certificate(kyso, official_id)
    except (SignerError, CAError) as exc:
        return _batch_page(found, 409, _unusable_message(official_id),
                           "certificate_unusable", detail=exc.message, form=form)
    _clear_results(found)
    results: list[dict[str, Any]] = []
    try:
        for result in sign_documents(kyso, official_id, pin, _items(found), sign_request,
                                     actor=f"web:{who.username}"):
            n = int(result.name)
            if result.ok:
                assert result.data is not None
                _write_private(found.path / f"{n}-signed.pdf", result.data)
                results.append({"ok": True, "file": f"{n}-signed.pdf"})
            else:
                assert result.error is not None
                results.append({"ok": False, "code": result.error.code,
                                "detail": result.error.message})
    except PinIncorrect:
        _clear_results(found)
        return _batch_page(found, 403, gettext(
            "Wrong signing PIN: nothing was signed. %(left)s attempt(s) left before your "
            "signing key is locked.", left=_attempts_left(official_id)), "pin_incorrect",
            form=form)
    except KeyLocked:
        _clear_results(found)
        return _batch_page(found, 423, gettext(
            "Your signing key is locked after too many wrong PINs: nothing was signed. An "
            "operator must unlock it."), "key_locked", form=form)
    except (SignerError, CAError) as exc:
        # Refused for the whole batch (the level needs a service that is not available...).
        _clear_results(found)
        status = exc.http_status if 400 <= exc.http_status < 600 else 409
        return _batch_page(found, status, gettext(
            "The documents could not be signed: %(reason)s", reason=exc.message),
            exc.code, form=form)
    found.manifest["results"] = results
    found.manifest["level"] = form["level"]
    found.manifest["signed_at"] = time.time()
    found.save()
    return cast(Response, redirect(url_for("portal.results", batch_id=batch_id), 303))


def document_error(code: str) -> str:
    """Why one document of a batch was not signed, for people."""
    messages = {
        "signing_refused": lambda: gettext(
            "The signature cannot be placed as asked (for example the box does not fit on "
            "the page, or the page does not exist), or the document does not allow it."),
        "invalid_appearance": lambda: gettext(
            "The signature box is too small for the signature's text. Make the box larger."),
        "pdf_damaged": lambda: gettext("The PDF cannot be read: the file is damaged or "
                                       "incomplete."),
        "pdf_encrypted": lambda: gettext("The PDF is protected by a password."),
        "tsa_unavailable": lambda: gettext("The timestamp service is temporarily unavailable."),
        "tsa_rejected": lambda: gettext("The timestamp service refused the request."),
    }
    return messages[code]() if code in messages else gettext("The document was not signed.")


@bp.get("/sign/<batch_id>/done")
@login_required("official")
def results(batch_id: str) -> Response:
    who, _ = _official()
    found = _load_batch(who, batch_id)
    if found.results is None:
        return cast(Response, redirect(url_for("portal.batch", batch_id=batch_id)))
    rows = list(zip(found.documents, found.results, strict=True))
    return _html(render_template(
        "portal/results.html", batch=found, rows=rows, document_error=document_error,
        signed_name=signed_name, level=found.manifest.get("level", ""),
        ok_count=sum(1 for r in found.results if r["ok"])))


def _signed_file(found: Batch, n: int) -> tuple[str, Path] | None:
    if found.results is None or not 1 <= n <= len(found.results):
        return None
    result = found.results[n - 1]
    if not result["ok"]:
        return None
    return signed_name(found.documents[n - 1]["name"]), found.path / result["file"]


@bp.get("/sign/<batch_id>/signed/<int:n>")
@login_required("official")
def signed(batch_id: str, n: int) -> Response:
    who, _ = _official()
    found = _load_batch(who, batch_id)
    target = _signed_file(found, n)
    if target is None:
        return error_response(404, "not_found", gettext("There is no signed copy of this "
                                                        "document."))
    name, path = target
    response = Response(path.read_bytes(), mimetype="application/pdf")
    response.headers["Content-Disposition"] = content_disposition(name)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/sign/<batch_id>/signed.zip")
@login_required("official")
def signed_zip(batch_id: str) -> Response:
    who, _ = _official()
    found = _load_batch(who, batch_id)
    files = [t for t in (_signed_file(found, n) for n in range(1, len(found.documents) + 1))
             if t is not None]
    if not files:
        return error_response(404, "not_found", gettext("There is no signed document in "
                                                        "this batch."))
    out = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in files:
            unique, k = name, 2
            while unique in used:  # two uploads of the same name
                unique = f"{name[:-4]} ({k}).pdf"
                k += 1
            used.add(unique)
            archive.write(path, unique)
    response = Response(out.getvalue(), mimetype="application/zip")
    response.headers["Content-Disposition"] = content_disposition("signed-documents.zip")
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/sign/<batch_id>/delete")
@login_required("official")
def delete_batch(batch_id: str) -> Response:
    """Delete the uploads and the signed copies now (they go by themselves after a while)."""
    who, _ = _official()
    found = _load_batch(who, batch_id)
    shutil.rmtree(found.path, ignore_errors=True)
    return cast(Response, redirect(url_for("portal.sign"), 303))
