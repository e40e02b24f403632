"""A gunicorn sync worker with a fast path for the OCSP app (`gunicorn -k
ocsp.worker.OcspWorker web.wsgi:ocsp_app`, what `benchmarks/ocsp.py` runs).

gunicorn's sync worker spends most of an OCSP request in its own HTTP machinery: a parser
object, a WSGI environ, a response object, headers and body in two writes, and since gunicorn
23 a graceful close that half-closes the socket and then *waits for the client to hang up*
before the worker may accept the next connection (one client round trip per request).

This worker reads the request itself; when it is a plain, complete HTTP/1.x GET under /ocsp or
POST of at most `max_request_bytes` to /ocsp -- which every OCSP client sends -- it asks the
app (`OcspApp.http_fast`) for the whole response, writes it in one `sendall` and closes (no
unread bytes are left, so the close is clean: FIN, never RST). Anything else -- partial or odd
headers, chunked bodies, `Expect`, other paths and methods, errors, TLS, an access log to
write -- goes to gunicorn's own handling unchanged, with the bytes already read replayed.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from gunicorn.workers.sync import SyncWorker

log = logging.getLogger("kyso.ocsp")

MAX_HEAD = 8192  # bytes of request line + headers handled here (a GET path is at most 4 KiB)


class _Replay:
    """The client socket with bytes already read put back in front (for gunicorn's parser)."""

    def __init__(self, sock: socket.socket, data: bytes) -> None:
        self._sock = sock
        self._data = data

    def recv(self, size: int, *flags: int) -> bytes:
        if self._data:
            out, self._data = self._data[:size], self._data[size:]
            return out
        return self._sock.recv(size, *flags)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def parse_head(data: bytes) -> tuple[bytes, bytes, bytes, dict[bytes, bytes], int] | None:
    """(method, target, version, headers by lower-case name, end of head) of a complete,
    plain HTTP/1.x request head; None for anything gunicorn should judge instead."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD)
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
        return None
    method, target, version = parts
    if not target.startswith(b"/") or any(c < 0x21 or c > 0x7E for c in target):
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b" " in name or b"\t" in name:
            return None
        key = name.lower()
        if key in headers or key in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
        headers[key] = value.strip(b" \t")
    return method, target, version, headers, end + 4


class OcspWorker(SyncWorker):
    """SyncWorker + the fast path above (only for an app that offers `http_fast`)."""

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        fast = getattr(self.wsgi, "http_fast", None)
        if fast is None or self.cfg.is_ssl or self.cfg.accesslog:
            return super().handle(listener, client, addr)
        try:
            data = client.recv(MAX_HEAD)
        except OSError:
            client.close()
            return None
        if not data:
            client.close()
            return None
        try:
            out, data = self._fast(fast, client, data)
        except OSError:
            client.close()
            return None
        except Exception:  # noqa: BLE001 - let gunicorn's own path answer (and log) it
            log.exception("OCSP: fast path failed; handled by gunicorn")
            out = None
        if out is None:
            return super().handle(listener, _Replay(client, data), addr)  # type: ignore[arg-type]
        self.nr += 1
        if self.nr >= self.max_requests:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        try:
            client.sendall(out)
            try:  # a clean close needs nothing left unread (a pipelined request, say)
                pending = client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                pending = b""
            if pending:
                from gunicorn import util

                util.close_graceful(client)
                return None
        except OSError:
            pass
        client.close()
        return None

    def _fast(self, fast: Any, client: socket.socket, data: bytes) -> tuple[bytes | None, bytes]:
        head = parse_head(data)
        if head is None:
            return None, data
        method, target, version, headers, start = head
        length_text = headers.get(b"content-length")
        if length_text is None:
            length = 0
        elif length_text.isdigit() and len(length_text) < 10:
            length = int(length_text)
        else:
            return None, data
        if method == b"POST":
            if length > self.wsgi.max_body:  # gunicorn's path answers 413
                return None, data
            while len(data) - start < length:
                more = client.recv(length - (len(data) - start))
                if not more:
                    return None, data
                data += more
        elif method != b"GET" or length:
            return None, data
        if len(data) != start + length:  # pipelined bytes: gunicorn's path copes
            return None, data
        return fast(method, target, version, headers, data[start:]), data


__all__ = ["OcspWorker", "parse_head"]
