"""CRL distribution points: /crl/<ca>.crl (full) and /crl/delta/<ca>.crl, DER, from storage.

Never built per request: the newest signed CRL is read from the database (all web processes
and servers share it). Caches may keep it until its nextUpdate, but at most MAX_AGE seconds so
a revocation reaches relying parties within minutes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

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


def generate_due(kyso: Any) -> None:
    """The CRL scheduler's job: every CRL that is due. Processes (and servers) race harmlessly:
    the CA row lock lets one of them do each CRL."""
    for crl in kyso.crls.run_due():
        log.info("CRL %s #%d of %s: %d entries", crl.kind, crl.number, crl.ca_name,
                 crl.entries)
