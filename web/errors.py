"""One place that turns errors into responses: JSON for API clients, a small page for people."""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, current_app, g, jsonify, render_template, request
from flask_babel import gettext, lazy_gettext
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ca.errors import CAError

log = logging.getLogger("kyso.web")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Titles shown to people; the message under it comes from the error itself.
TITLES = {
    400: lazy_gettext("Bad request"),
    403: lazy_gettext("Forbidden"),
    404: lazy_gettext("Not found"),
    405: lazy_gettext("Method not allowed"),
    409: lazy_gettext("Conflict"),
    413: lazy_gettext("Upload too large"),
    415: lazy_gettext("Unsupported file type"),
    422: lazy_gettext("Request not accepted"),
    423: lazy_gettext("Locked"),
    429: lazy_gettext("Too many requests"),
    500: lazy_gettext("Server error"),
    503: lazy_gettext("Service temporarily unavailable"),
}


def request_id() -> str:
    """The id of the current request: the caller's X-Request-ID if sane, else a fresh one."""
    rid: str | None = g.get("request_id")
    if rid is None:
        given = request.headers.get("X-Request-ID", "")
        rid = given if _REQUEST_ID.match(given) else secrets.token_hex(8)
        g.request_id = rid
    return rid


def wants_json() -> bool:
    """API paths always get JSON; elsewhere the Accept header decides (browsers get HTML)."""
    if request.path == "/api" or request.path.startswith("/api/"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def error_response(status: int, code: str, message: str) -> Response:
    """The single shape of every error: `{"error": {"code", "message", "request_id"}}`."""
    rid = request_id()
    message = str(message)
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message, "request_id": rid}})
    else:
        title = str(TITLES.get(status, lazy_gettext("Error")))
        response = Response(
            render_template("error.html", status=status, title=title, code=code,
                            message=message, request_id=rid),
            mimetype="text/html",
        )
    response.status_code = status
    return response


def _http_code(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


def handle_ca_error(exc: CAError) -> Response:
    return error_response(exc.http_status, exc.code, exc.message)


def upload_limit_mb() -> int:
    """The upload limit of this app, in MB ([web] max_upload_mb)."""
    return int(current_app.config["KYSO_SETTINGS"].web.max_upload_mb)


def too_large_message() -> str:
    return gettext("The file is larger than %(limit)s MB, the most this service accepts.",
                   limit=upload_limit_mb())


def csrf_message() -> str:
    return gettext("The form could not be accepted: its security token is missing, invalid "
                   "or expired. Reload the page and send the form again.")


def handle_csrf_error(exc: CSRFError) -> Response:
    # Flask-WTF's reason ("The CSRF token is missing.") goes to the log, not to the page.
    log.info("CSRF check failed for %s %s: %s", request.method, request.path, exc.description)
    return error_response(400, "csrf_failed", csrf_message())


def handle_rate_limit(exc: RateLimitExceeded) -> Response:
    item = exc.limit.limit
    log.info("rate limit %s reached for %s %s", item, request.method, request.path)
    return error_response(429, "too_many_requests", gettext(
        "Too many requests: at most %(amount)s in %(seconds)s seconds from one address. "
        "Wait a little and try again.", amount=item.amount, seconds=item.get_expiry()))


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    messages = {
        404: lambda: gettext("This resource does not exist."),
        405: lambda: gettext("This method is not supported at this address."),
        413: too_large_message,
    }
    message = messages[status]() if status in messages else exc.description or ""
    response = error_response(status, _http_code(exc), message)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


def handle_unexpected(exc: Exception) -> Response:
    # The traceback goes to the server log under the request id; the client sees only the id.
    rid = request_id()
    log.error("unhandled error in %s %s [request %s]", request.method, request.path, rid,
              exc_info=exc)
    return error_response(
        500, "internal_error",
        gettext("An internal error occurred. Request id: %(rid)s.", rid=rid),
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(CAError, handle_ca_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(RateLimitExceeded, handle_rate_limit)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)

    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response
