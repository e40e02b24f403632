"""The public repository: CA certificates and chains for download, service URLs, health check."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from flask import Blueprint, Response, current_app, jsonify, render_template
from flask_babel import gettext, lazy_gettext

from ca import store
from ca.models import CARecord
from kyso.settings import Settings
from web import get_kyso

bp = Blueprint("repository", __name__)
log = logging.getLogger("kyso.web")

try:
    VIETNAM = ZoneInfo("Asia/Ho_Chi_Minh")
except ZoneInfoNotFoundError:  # no tzdata on the host: Vietnam has had no DST since 1975
    VIETNAM = timezone(timedelta(hours=7), "ICT")  # type: ignore[assignment]

KIND_LABELS = {"root": lazy_gettext("Root CA"), "issuing": lazy_gettext("Issuing CA")}
STATUS_LABELS = {"active": lazy_gettext("Active"), "retired": lazy_gettext("Retired"),
                 "revoked": lazy_gettext("Revoked")}


def vietnam_time(moment: datetime, with_time: bool = True) -> str:
    """dd/mm/yyyy (HH:MM) in Vietnam time, the way people here read dates."""
    local = moment.astimezone(VIETNAM)
    return local.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


@dataclass(frozen=True)
class CAView:
    """What the page shows about one CA (plain values, no ORM object in templates)."""

    name: str
    kind: str
    subject: str
    serial: str
    not_before: str
    not_after: str
    status: str
    fingerprint: str
    expired: bool


def _ca_view(record: CARecord, now: datetime) -> CAView:
    cert = x509.load_der_x509_certificate(record.cert_der)
    return CAView(
        name=record.name,
        kind=KIND_LABELS.get(record.kind, record.kind),
        subject=record.subject,
        serial=record.serial,
        not_before=vietnam_time(record.not_before),
        not_after=vietnam_time(record.not_after),
        status=STATUS_LABELS.get(record.status, record.status),
        fingerprint=fingerprint(cert),
        expired=record.not_after <= now,
    )


def _settings() -> Settings:
    settings: Settings = current_app.config["KYSO_SETTINGS"]
    return settings


def _ca_certificate(name: str) -> x509.Certificate:
    with get_kyso().readers() as session:
        record = store.get_ca(session, name)  # NotFound -> 404 through web.errors
        return x509.load_der_x509_certificate(record.cert_der)


def _download(body: bytes, mimetype: str, filename: str) -> Response:
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/")
def index() -> str:
    now = datetime.now(tz=VIETNAM)
    with get_kyso().readers() as session:
        cas = [_ca_view(record, now) for record in store.list_cas(session)]
    settings = _settings()
    base = settings.base_url.rstrip("/")
    ca_name = gettext("CA-name")  # placeholder shown in the URL patterns
    return render_template(
        "index.html",
        cas=cas,
        ocsp_url=settings.ocsp_url(),
        tsa_url=f"{base}/tsa",
        crl_url=settings.crl_url(f"<{ca_name}>"),
        delta_crl_url=f"{base}/crl/delta/<{ca_name}>.crl",
        generated_at=vietnam_time(now),
    )


@bp.get("/ca/<name>.crt")
def ca_der(name: str) -> Response:
    cert = _ca_certificate(name)
    return _download(cert.public_bytes(serialization.Encoding.DER), "application/pkix-cert",
                     f"{name}.crt")


@bp.get("/ca/<name>.pem")
def ca_pem(name: str) -> Response:
    cert = _ca_certificate(name)
    return _download(cert.public_bytes(serialization.Encoding.PEM), "application/x-pem-file",
                     f"{name}.pem")


@bp.get("/ca/<name>/chain.pem")
def ca_chain(name: str) -> Response:
    chain = get_kyso().authority.chain(name)  # leaf-most first, up to the root
    body = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    return _download(body, "application/x-pem-file", f"{name}-chain.pem")


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        # A raw DBAPI round trip: proves the database answers without opening a
        # transaction (on SQLite every ORM transaction takes the write lock at BEGIN).
        connection = get_kyso().engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("SELECT 1")
            cursor.fetchall()
            cursor.close()
        finally:
            connection.close()
    except Exception:  # any failure to answer means "not healthy"; the log has the reason
        log.warning("health check: database unreachable", exc_info=True)
        return jsonify({"status": "unavailable", "database": "unreachable"}), 503
    return jsonify({"status": "ok"}), 200
