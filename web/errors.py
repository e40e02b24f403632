"""One place that turns errors into responses: JSON for API clients, a small page for people."""

from __future__ import annotations

import logging
import re
import secrets

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from ca.errors import CAError

log = logging.getLogger("kyso.web")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Titles shown to people; the message under it comes from the error itself.
TITLES = {
    400: "Yêu cầu không hợp lệ",
    403: "Không được phép",
    404: "Không tìm thấy",
    405: "Phương thức không được hỗ trợ",
    409: "Xung đột trạng thái",
    422: "Yêu cầu không được chấp nhận",
    423: "Đã bị khóa",
    500: "Lỗi máy chủ",
    503: "Dịch vụ tạm thời không sẵn sàng",
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
    if wants_json():
        response = jsonify({"error": {"code": code, "message": message, "request_id": rid}})
    else:
        title = TITLES.get(status, "Lỗi")
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


def handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    messages = {
        404: "Không có tài nguyên này. (not found)",
        405: "Phương thức này không được hỗ trợ cho địa chỉ này. (method not allowed)",
    }
    response = error_response(status, _http_code(exc), messages.get(status, exc.description or ""))
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
        f"Đã xảy ra lỗi nội bộ. Mã yêu cầu: {rid}. (internal error, request id {rid})",
    )


def init_app(app: Flask) -> None:
    app.register_error_handler(CAError, handle_ca_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(Exception, handle_unexpected)

    @app.before_request
    def _assign_request_id() -> None:
        request_id()

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id()
        return response
