"""CRL distribution points: /crl/<ca>.crl (full) and /crl/delta/<ca>.crl, DER, from storage.

Never built per request: the newest signed CRL is read from the database (all web processes
and servers share it). Caches may keep it until its nextUpdate, but at most MAX_AGE seconds so
a revocation reaches relying parties within minutes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import UTC, datetime
from email.utils import format_datetime

from flask import Blueprint, Response, request

from ca.errors import NotFound
from web import get_kyso

bp = Blueprint("crl", __name__)
log = logging.getLogger("kyso.web.crl")
MAX_AGE = 300


def _serve(name: str, kind: str) -> Response:
    crl = get_kyso().crls.current(name, kind)
    if crl is None:
        what = "delta CRL" if kind == "delta" else "CRL"
        raise NotFound(f"no {what} published for CA {name!r}")
    now = datetime.now(UTC)
    remaining = int((crl.next_update - now).total_seconds())
    suffix = "-delta" if kind == "delta" else ""
    response = Response(crl.der, mimetype="application/pkix-crl", headers={
        "Last-Modified": format_datetime(crl.this_update, usegmt=True),
        "Expires": format_datetime(crl.next_update, usegmt=True),
        "Cache-Control": f"public, max-age={max(0, min(remaining, MAX_AGE))}",
        "Content-Disposition": f'attachment; filename="{name}{suffix}.crl"',
    })
    response.set_etag(f"{name}{suffix}-{crl.number}")
    return response.make_conditional(request)


@bp.get("/crl/<name>.crl")
def full_crl(name: str) -> Response:
    return _serve(name, "full")


@bp.get("/crl/delta/<name>.crl")
def delta_crl(name: str) -> Response:
    return _serve(name, "delta")


class CrlScheduler:
    """A daemon thread per web process that generates the CRLs that are due. Processes (and
    servers) race harmlessly: the CA row lock lets one of them do each CRL."""

    def __init__(self, get_kyso_fn: object, interval: float) -> None:
        self._get = get_kyso_fn
        self.interval = interval
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="kyso-crl", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        # Spread processes out, then look every interval (with jitter).
        self._stop.wait(random.uniform(0.5, 1.5))
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                for crl in self._get().crls.run_due():  # type: ignore[attr-defined]
                    log.info("CRL %s #%d of %s: %d entries", crl.kind, crl.number, crl.ca_name,
                             crl.entries)
            except Exception:  # keep trying; the log says why
                log.exception("CRL generation failed")
            elapsed = time.monotonic() - started
            self._stop.wait(max(0.1, self.interval * random.uniform(0.8, 1.2) - elapsed))
