"""The console's bulk change after a reorganization: upload a mapping, dry run, apply as a
background batch with a progress bar, resume, final report. The work is ca/reorg.py's."""

from __future__ import annotations

import hmac
import logging
import threading
from dataclasses import dataclass
from typing import Any, cast

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext, lazy_gettext
from werkzeug.exceptions import RequestEntityTooLarge

from ca import reorg
from ca.errors import (
    CAError,
    InvalidRequest,
    MappingRejected,
    NotFound,
    RowProblem,
    StateConflict,
)
from web import get_kyso
from web.auth import current_account, login_required
from web.console import reason_label, requests_url, when
from web.errors import error_response, wants_json

bp = Blueprint("reorg", __name__, url_prefix="/console/reorg")
log = logging.getLogger("kyso.web")

# The mapping's largest size (UTF-8 bytes). The dry-run page sends the text back as a form
# field, and Flask refuses a form field over MAX_FORM_MEMORY_SIZE (500 000 bytes by
# default) before any view runs: the smaller of the two applies.
MAX_MAPPING_BYTES = 1_000_000
MAX_BATCH_ID_DIGITS = 12
BATCHES_LISTED = 50
# Certificates per chunk of a batch run: the progress bar moves after each chunk.
CHUNK_SIZE = 20

BATCH_STATUS_LABELS = {
    "planned": lazy_gettext("Not started"),
    "running": lazy_gettext("Running"),
    "waiting": lazy_gettext("Waiting for the officials' PINs"),
    "done": lazy_gettext("Done"),
    "failed": lazy_gettext("Finished with errors"),
}
ITEM_STATUS_LABELS = {
    "pending": lazy_gettext("Waiting"),
    "waiting": lazy_gettext("Waiting for the official's PIN"),
    "issued": lazy_gettext("New certificate issued, old one not yet revoked"),
    "done": lazy_gettext("Done"),
    "failed": lazy_gettext("Failed"),
}
FIELD_LABELS = {
    "organization": lazy_gettext("Organization"),
    "unit": lazy_gettext("Unit"),
    "locality": lazy_gettext("Locality"),
}


# -- the batch threads of this process ------------------------------------------------------

_threads: dict[int, threading.Thread] = {}
_thread_errors: dict[int, str] = {}
_threads_lock = threading.Lock()


def running_here(batch_id: int) -> bool:
    """Whether a thread of this process is running the batch now."""
    with _threads_lock:
        thread = _threads.get(batch_id)
        return thread is not None and thread.is_alive()


def _run_batch(authority: Any, batch_id: int, actor: str) -> None:
    try:
        reorg.run(authority, batch_id, actor=actor, chunk_size=CHUNK_SIZE)
    except StateConflict as exc:  # another process runs it: its progress shows here too
        log.info("reorganization batch %s not run here: %s", batch_id, exc.message)
        with _threads_lock:
            _thread_errors[batch_id] = exc.message
    except Exception as exc:  # noqa: BLE001 - a thread has no caller: the log and the page say it
        log.exception("reorganization batch %s stopped", batch_id)
        with _threads_lock:
            _thread_errors[batch_id] = (exc.message if isinstance(exc, CAError)
                                        else type(exc).__name__)


def _launch(batch_id: int, actor: str) -> bool:
    """Run the batch in a background thread of this worker, unless one already runs it. The
    thread gets the Kyso of this process, captured here (it has no app context)."""
    authority = get_kyso().authority
    with _threads_lock:
        thread = _threads.get(batch_id)
        if thread is not None and thread.is_alive():
            return False
        _thread_errors.pop(batch_id, None)
        thread = threading.Thread(target=_run_batch, args=(authority, batch_id, actor),
                                  name=f"kyso-reorg-{batch_id}", daemon=True)
        _threads[batch_id] = thread
        thread.start()
    return True


# -- helpers --------------------------------------------------------------------------------

class _Refused(Exception):
    """The mapping given cannot be used (not UTF-8 text, empty, too large...)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _actor() -> str:
    who = current_account()
    assert who is not None  # login_required
    return f"web:{who.username}"


def mapping_limit() -> int:
    form_limit = current_app.config.get("MAX_FORM_MEMORY_SIZE")
    return min(MAX_MAPPING_BYTES, form_limit) if form_limit else MAX_MAPPING_BYTES


def _limit_text() -> str:
    return f"{mapping_limit() // 1000} KB"


def normalize(text: str) -> str:
    """The mapping as kyso keeps and hashes it: no BOM, lines ending in LF (browsers send
    form fields back with CRLF, so the text shown and the text applied hash alike)."""
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


def _decode(data: bytes) -> str:
    if len(data) > mapping_limit():
        raise _Refused(413, "mapping_too_large", gettext(
            "The mapping is larger than %(limit)s, the most a reorganization accepts. Split it "
            "into several batches.", limit=_limit_text()))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(400, "mapping_not_utf8", gettext(
            "The mapping is not UTF-8 text. Save the spreadsheet as “CSV UTF-8” and upload "
            "it again.")) from None
    if "\x00" in text:
        raise _Refused(400, "mapping_not_csv", gettext(
            "The file is not a CSV text file (it contains binary data).")) from None
    text = normalize(text)
    if not text.strip():
        raise _Refused(400, "mapping_empty", gettext(
            "The mapping is empty: choose a CSV file or paste its text."))
    return text


def _mapping_from_upload() -> tuple[str, bool]:
    """The mapping of the upload form, the CSV file or else the pasted text; and whether it
    was pasted (a refused paste comes back in the text box, a refused file does not)."""
    upload = request.files.get("mapping")
    pasted = request.form.get("mapping_text", "")
    if upload is not None and upload.filename:
        if pasted.strip():
            raise _Refused(400, "mapping_twice", gettext(
                "Give the mapping once: either a CSV file or pasted text, not both."))
        return _decode(upload.stream.read(mapping_limit() + 1)), False
    return _decode(pasted.encode("utf-8")), True


def _batch_no(text: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_BATCH_ID_DIGITS):
        raise NotFound(f"no reorganization batch {text[:20]!r}")
    return int(text)


def _html(body: str, status: int = 200) -> Response:
    response = Response(body, status=status, mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"  # names, serials, a mapping
    return response


def _render(template: str, status: int = 200, **context: Any) -> Response:
    context.setdefault("requests_url", requests_url())
    return _html(render_template(
        template, when=when, reason_label=reason_label, batch_status=batch_status_label,
        item_status=item_status_label, field_labels=FIELD_LABELS,
        limit_text=_limit_text(), **context), status)


def batch_status_label(status: str) -> str:
    return str(BATCH_STATUS_LABELS.get(status, status))


def item_status_label(status: str) -> str:
    return str(ITEM_STATUS_LABELS.get(status, status))


def _index_page(status: int = 200, error: str | None = None,
                problems: list[RowProblem] | None = None, text: str = "") -> Response:
    if error is not None and wants_json():
        code = "mapping_rejected" if problems else "mapping_refused"
        return error_response(status, code, error)
    batches = reorg.list_batches(get_kyso().authority, limit=BATCHES_LISTED)
    return _render("console/reorg.html", status, batches=batches, error=error,
                   problems=problems or [], text=text)


def _rejected(exc: MappingRejected, text: str) -> Response:
    return _index_page(422, gettext(
        "The mapping was refused: %(n)s row(s) must be corrected. Nothing was changed.",
        n=len(exc.problems)), exc.problems, text)


@bp.errorhandler(_Refused)
def _refused(exc: _Refused) -> Response:
    return _index_page(exc.status, exc.message)


@bp.errorhandler(RequestEntityTooLarge)
def _too_large(exc: RequestEntityTooLarge) -> Response:
    return error_response(413, "mapping_too_large", gettext(
        "The mapping is larger than %(limit)s, the most a reorganization accepts. Split it "
        "into several batches.", limit=_limit_text()))


@bp.errorhandler(NotFound)
def _not_found(exc: NotFound) -> Response:
    return error_response(404, "batch_not_found", gettext(
        "There is no reorganization batch with this number."))


# -- the upload form and the batches --------------------------------------------------------

@bp.get("")
@login_required("operator")
def index() -> Response:
    return _index_page()


# -- the dry run ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DryRun:
    """What the dry-run page shows (plain values, no library object in the template)."""

    plan: reorg.Plan
    text: str
    sha256: str
    rows: int


@bp.post("/dry-run")
@login_required("operator")
def dry_run() -> Response:
    """Parse and plan the mapping; nothing is written. The page carries the text and its
    SHA-256, so the confirmation applies exactly what was shown."""
    text, pasted = _mapping_from_upload()
    try:
        planned = reorg.dry_run(get_kyso().authority, text)
    except MappingRejected as exc:
        return _rejected(exc, text if pasted else "")
    run = DryRun(planned, text, reorg.mapping_sha256(text), len(planned.rows))
    if wants_json():
        return cast(Response, jsonify({**planned.as_dict(), "mapping_sha256": run.sha256}))
    return _render("console/reorg_dry_run.html", run=run)


# -- applying, the batch page, progress, resume ---------------------------------------------

@bp.post("/apply")
@login_required("operator")
def apply() -> Response:
    """Start the batch of the mapping confirmed on the dry-run page and run it in the
    background; its page shows the progress."""
    text = _decode(request.form.get("mapping_text", "").encode("utf-8"))
    given = request.form.get("mapping_sha256", "").strip().lower()
    if not hmac.compare_digest(given.encode(), reorg.mapping_sha256(text).encode()):
        return error_response(400, "mapping_changed", gettext(
            "The mapping differs from the one shown by the dry run. Run the dry run again and "
            "confirm what it shows."))
    rekey = request.form.get("rekey") == "1"
    actor = _actor()
    try:
        batch_id = reorg.start(get_kyso().authority, text, rekey=rekey, actor=actor)
    except MappingRejected as exc:  # the certificates changed since the dry run
        return _rejected(exc, text)
    except StateConflict as exc:
        return error_response(409, exc.code, gettext(
            "This mapping cannot be applied now: it was already applied, or some of its "
            "certificates are in an unfinished batch (%(detail)s).", detail=exc.message))
    except CAError as exc:
        return error_response(exc.http_status if 400 <= exc.http_status < 500 else 409,
                              exc.code, exc.message)
    _launch(batch_id, actor)
    return cast(Response, redirect(url_for("reorg.batch", batch_id=batch_id), 303))


def _resumable(summary: reorg.BatchSummary) -> bool:
    return (summary.status in ("planned", "running", "failed") and summary.remaining > 0
            and not running_here(summary.id))


def _progress(summary: reorg.BatchSummary) -> dict[str, Any]:
    here = running_here(summary.id)
    with _threads_lock:
        error = _thread_errors.get(summary.id)
    return {"id": summary.id, "status": summary.status,
            "status_text": batch_status_label(summary.status), "total": summary.total,
            "progress_text": gettext("%(done)s of %(total)s", done=summary.done,
                                     total=summary.total),
            "done": summary.done, "failed": summary.failed, "remaining": summary.remaining,
            "running_here": here, "error": error,
            # The page stops polling (and reloads once) when no thread here runs it and
            # no other process does (status not `running`), or the run here stopped.
            "finished": not here and (summary.status != "running" or error is not None
                                      or summary.remaining == 0)}


@bp.get("/<batch_id>")
@login_required("operator")
def batch(batch_id: str) -> Response:
    view = reorg.show(get_kyso().authority, _batch_no(batch_id))
    return _render("console/reorg_batch.html", view=view, summary=view.batch,
                   progress=_progress(view.batch), resumable=_resumable(view.batch),
                   mapping_sha256=view.batch.mapping_sha256)


@bp.get("/<batch_id>/progress.json")
@login_required("operator")
def progress(batch_id: str) -> Response:
    summary = reorg.summary(get_kyso().authority, _batch_no(batch_id))
    response = cast(Response, jsonify(_progress(summary)))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/<batch_id>/resume")
@login_required("operator")
def resume(batch_id: str) -> Response:
    number = _batch_no(batch_id)
    summary = reorg.summary(get_kyso().authority, number)
    if running_here(number):  # already going: its page shows it
        return cast(Response, redirect(url_for("reorg.batch", batch_id=number), 303))
    if not _resumable(summary):
        return error_response(409, "batch_finished", gettext(
            "This batch has nothing left to run (%(status)s).",
            status=batch_status_label(summary.status)))
    _launch(number, _actor())
    return cast(Response, redirect(url_for("reorg.batch", batch_id=number), 303))


@bp.post("/<batch_id>/retry")
@login_required("operator")
def retry(batch_id: str) -> Response:
    """The batch's failed certificates tried again (run here; in a --rekey batch they wait
    for their officials' PINs again)."""
    number = _batch_no(batch_id)
    if running_here(number):  # already going: its page shows it
        return cast(Response, redirect(url_for("reorg.batch", batch_id=number), 303))
    actor = _actor()
    try:
        retried = reorg.retry(get_kyso().authority, number, actor=actor)
    except (InvalidRequest, StateConflict) as exc:
        return error_response(409, exc.code, gettext(
            "There is nothing to retry in this batch now (%(detail)s).", detail=exc.message))
    if not retried.rekey:  # a --rekey batch waits for its officials' PINs
        _launch(number, actor)
    return cast(Response, redirect(url_for("reorg.batch", batch_id=number), 303))
