"""HTTP for the responder (RFC 6960 appendix A, RFC 5019 section 5/6): a raw WSGI app, lean
enough that a repeated request costs one dict lookup. POST application/ocsp-request at
/ocsp, GET /ocsp/<base64, url-encoded>. Mounted beside the Flask app (web/) or run alone."""

from __future__ import annotations

import base64
import binascii
import itertools
import logging
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from ocsp.errors import MalformedRequest
from ocsp.protocol import parse_request
from ocsp.refresh import Policy
from ocsp.responder import ERROR_ANSWERS, Answer, Responder

log = logging.getLogger("kyso.ocsp")

PREFIX = "/ocsp"
MAX_GET_PATH = 4096
MAX_SLASH_GUESSES = 256
_NO_STORE = ("Cache-Control", "no-store")

StartResponse = Callable[..., Any]


def _text(start_response: StartResponse, status: str, message: str,
          extra: tuple[tuple[str, str], ...] = ()) -> list[bytes]:
    body = (message + "\n").encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(body))),
                            ("X-Content-Type-Options", "nosniff"), _NO_STORE, *extra])
    return [body]


def _der_complete(data: bytes) -> bool:
    """A DER SEQUENCE whose declared length is exactly the data's (cheap pre-check)."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return 2 + first == len(data)
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        return False
    return 2 + n + int.from_bytes(data[2:2 + n], "big") == len(data)


def _b64(text: str) -> bytes | None:
    if "=" not in text:  # some clients drop the padding
        text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_get_path(encoded: str) -> list[bytes]:
    """Candidate DER requests for the raw path after /ocsp/: url-decoded ('%2F', '%2B',
    '%3D'), '+' that became a space put back, and -- when a proxy or router merged '//' into
    '/' -- the slashes put back (each '/' and the start are tried, the length check of the
    DER picks). Exact decoding first."""
    text = unquote(encoded).replace(" ", "+")
    first = _b64(text)
    if first is not None and _der_complete(first):
        return [first]
    out: list[bytes] = []
    positions = [0] + [i for i, ch in enumerate(text) if ch == "/"]
    tried = 0
    for missing in (1, 2, 3):
        for combo in itertools.combinations_with_replacement(positions, missing):
            tried += 1
            if tried > MAX_SLASH_GUESSES:
                return out
            pieces, last = [], 0
            for pos in combo:
                pieces.append(text[last:pos])
                pieces.append("/")
                last = pos
            pieces.append(text[last:])
            data = _b64("".join(pieces))
            if data is not None and _der_complete(data):
                out.append(data)
    return out


class OcspApp:
    """The WSGI application. `responder` returns this process's Responder (built lazily after
    gunicorn forks)."""

    def __init__(self, responder: Callable[[], Responder], policy: Policy) -> None:
        self._responder = responder
        self.policy = policy

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            return self._handle(environ, start_response)
        except Exception:  # noqa: BLE001 - never a 500 for OCSP: internalError, logged
            log.exception("OCSP: unexpected error")
            return self._send(start_response, ERROR_ANSWERS["internal"], environ)

    def _handle(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "POST":
            return self._post(environ, start_response)
        if method == "GET":
            return self._get(environ, start_response)
        return _text(start_response, "405 Method Not Allowed",
                     "OCSP: use POST (application/ocsp-request) or GET /ocsp/<base64>",
                     (("Allow", "GET, POST"),))

    def _raw_path(self, environ: dict[str, Any]) -> str:
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw is None:  # a server without the raw path: rebuild it (already unescaped)
            raw = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
        raw = raw.split("?", 1)[0]
        if "://" in raw[:16]:  # absolute-form request target
            raw = "/" + raw.split("://", 1)[1].partition("/")[2]
        return raw

    def _get(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        raw = self._raw_path(environ)
        if len(raw) > MAX_GET_PATH:
            return _text(start_response, "414 URI Too Long",
                         "OCSP: request too long for GET; use POST")
        return self._send(start_response, self._get_answer(raw), environ)

    def _get_answer(self, raw: str) -> Answer:
        path = "/" + raw.lstrip("/")
        if path.startswith(PREFIX + "/"):
            encoded = path[len(PREFIX) + 1:]
        elif path == PREFIX:
            encoded = ""
        else:  # the app alone, answering at its root
            encoded = path[1:]
        responder = self._responder()
        answer = responder.cached(encoded)
        if answer is None:
            answer = self._answer_get(responder, encoded)
        return answer

    def _answer_get(self, responder: Responder, encoded: str) -> Answer:
        if not encoded:
            return ERROR_ANSWERS["malformed"]
        for der in decode_get_path(encoded):
            try:
                request = parse_request(der, max_certs=self.policy.max_request_certs)
            except MalformedRequest:
                continue
            return responder.answer(request, encoded)
        return ERROR_ANSWERS["malformed"]

    def _post(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        ctype = environ.get("CONTENT_TYPE", "").split(";", 1)[0].strip().lower()
        if ctype != "application/ocsp-request":
            return _text(start_response, "415 Unsupported Media Type",
                         "OCSP: POST needs Content-Type: application/ocsp-request")
        limit = self.policy.max_request_bytes
        length_text = environ.get("CONTENT_LENGTH") or ""
        stream = environ["wsgi.input"]
        if length_text:
            try:
                length = int(length_text)
            except ValueError:
                return _text(start_response, "400 Bad Request", "OCSP: bad Content-Length")
            if length > limit:
                return _text(start_response, "413 Content Too Large",
                             f"OCSP: request larger than {limit} bytes",
                             (("Connection", "close"),))
            body = stream.read(length) if length > 0 else b""
        else:  # chunked or unknown length: read at most one byte past the limit
            body = stream.read(limit + 1)
            if len(body) > limit:
                return _text(start_response, "413 Content Too Large",
                             f"OCSP: request larger than {limit} bytes",
                             (("Connection", "close"),))
        return self._send(start_response, self._post_answer(body), environ)

    def _post_answer(self, body: bytes) -> Answer:
        responder = self._responder()
        answer = responder.cached(body) if body else None
        if answer is None:
            answer = responder.respond(body, body)
        return answer

    def _cache_control(self, answer: Answer, now: float) -> str:
        age = max(0, int(answer.next_update - now))
        if self.policy.http_max_age:
            age = min(age, self.policy.http_max_age)
        if answer.max_age is not None:
            age = min(age, answer.max_age)
        return f"max-age={age}, public, no-transform, must-revalidate"

    def _send(self, start_response: StartResponse, answer: Answer,
              environ: dict[str, Any]) -> Iterable[bytes]:
        if answer.cacheable:
            control = ("Cache-Control", self._cache_control(answer, time.time()))
            if answer.etag and environ.get("HTTP_IF_NONE_MATCH") == answer.etag:
                start_response("304 Not Modified", [("ETag", answer.etag), control])
                return [b""]
            start_response("200 OK", [*answer.headers, control])
        else:
            start_response("200 OK", [*answer.headers, _NO_STORE])
        return [answer.body]

    # -- the fast path of ocsp.worker.OcspWorker ------------------------------------------

    @property
    def max_body(self) -> int:
        return self.policy.max_request_bytes

    def http_fast(self, method: bytes, target: bytes, version: bytes,
                  headers: dict[bytes, bytes], body: bytes) -> bytes | None:
        """The whole HTTP response (status line to body, `Connection: close`) to a plain GET
        under /ocsp or POST to /ocsp, exactly as the WSGI path answers it; None for anything
        else (other paths, content types, sizes), which gunicorn then serves through
        __call__. Never raises for bad input (malformed requests are OCSP answers)."""
        raw = target.decode("ascii").split("?", 1)[0]
        if method == b"GET":
            if len(raw) > MAX_GET_PATH or not raw.startswith(PREFIX):
                return None
            answer = self._get_answer(raw)
        else:
            if raw != PREFIX:
                return None
            ctype = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if ctype != b"application/ocsp-request":
                return None
            answer = self._post_answer(body)
        now = time.time()
        head = [version, b" 200 OK\r\nServer: gunicorn\r\nDate: ", _http_date(now),
                b"\r\nConnection: close\r\n"]
        if answer.cacheable:
            control = self._cache_control(answer, now).encode()
            if answer.etag and headers.get(b"if-none-match") == answer.etag_bytes:
                return b"".join((version, b" 304 Not Modified\r\nServer: gunicorn\r\nDate: ",
                                 _http_date(now), b"\r\nConnection: close\r\nETag: ",
                                 answer.etag_bytes, b"\r\nCache-Control: ", control,
                                 b"\r\n\r\n"))
            head += [answer.header_bytes, b"Cache-Control: ", control, b"\r\n\r\n",
                     answer.body]
        else:
            head += [answer.header_bytes, b"Cache-Control: no-store\r\n\r\n", answer.body]
        return b"".join(head)


_date_cache: list[Any] = [0, b""]


def _http_date(now: float) -> bytes:
    """The Date header value (RFC 9110 IMF-fixdate), formatted once a second."""
    second = int(now)
    if _date_cache[0] != second:
        _date_cache[0] = second
        _date_cache[1] = formatdate(second, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[no-any-return]
