"""The JSON API for relying systems (/api/v1): PDF verification, certificate lookup and status,
and signing for an official (API token + the official's PIN)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, current_app, jsonify, request, url_for
from flask_babel import gettext, lazy_gettext
from werkzeug.exceptions import RequestEntityTooLarge

from ca import api_tokens, store
from ca import requests as cert_requests
from ca.errors import CAError, NotFound
from ca.models import CARecord, CertificateRecord
from kyso.validation import revocation_source, trust_anchors
from signer.errors import SignerError
from signer.pdfinput import DEFAULT_MAX_BYTES
from web import get_kyso
from web.errors import error_response, request_id
from web.repository import fingerprint
from web.security import limiter

if TYPE_CHECKING:
    from kyso.app import Kyso

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# The verifier's own limit; an app-wide MAX_CONTENT_LENGTH lowers it.
MAX_PDF_BYTES = DEFAULT_MAX_BYTES
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file
RAW_PDF_TYPES = ("application/pdf", "application/octet-stream")
MULTIPART = "multipart/form-data"
# An X.509 serial is at most 20 octets (RFC 5280 4.1.2.2): 40 hex digits; colons allowed.
MAX_SERIAL_DIGITS = 40
MAX_SERIAL_CHARS = 128
_SERIAL = re.compile(r"[0-9A-Fa-f]+(?::[0-9A-Fa-f]+)*")

# In the request's language (Flask-Babel), then the library's English detail in brackets.
_SIGNER_MESSAGES = {
    "not_a_pdf": lazy_gettext("The uploaded file is not a PDF document."),
    "pdf_damaged": lazy_gettext("The PDF cannot be read: it is damaged or incomplete."),
    "pdf_encrypted": lazy_gettext("The PDF is password-protected and cannot be checked."),
    "pdf_too_large": lazy_gettext("The PDF is too large."),
    "no_signatures": lazy_gettext("The document has no digital signature or timestamp."),
    "signing_refused": lazy_gettext("The document cannot be signed."),
    "tsa_unavailable": lazy_gettext("The timestamp service is temporarily unavailable."),
    "tsa_rejected": lazy_gettext("The timestamp service refused the request."),
    "invalid_appearance": lazy_gettext("The signature's position or appearance is not valid."),
}
_TOKEN_MESSAGES = {
    "invalid_token": lazy_gettext("The API token is missing, wrong, revoked or expired."),
    "token_scope": lazy_gettext("This API token's scope does not allow signing."),
}
MAX_PIN_CHARS = 256
PIN_HEADER = "X-Signing-PIN"


class ApiError(Exception):
    """A refusal of this API: HTTP status, stable code, safe message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.code, exc.message)


@bp.errorhandler(SignerError)
def _signer_error(exc: SignerError) -> Response:
    said = _SIGNER_MESSAGES.get(exc.code)
    # In the request's language, then the library's technical detail.
    message = f"{said} ({exc.message})" if said else exc.message
    return error_response(exc.http_status, exc.code, message)


@bp.errorhandler(api_tokens.TokenRejected)
@bp.errorhandler(api_tokens.TokenScopeError)
def _token_error(exc: api_tokens.TokenRejected | api_tokens.TokenScopeError) -> Response:
    response = error_response(exc.http_status, exc.code,
                              f"{_TOKEN_MESSAGES[exc.code]} ({exc.message})")
    if exc.http_status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="kyso"'
    return response


# -- helpers --------------------------------------------------------------------------------

def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def normalize_serial(text: str) -> str:
    """Lowercase hex without colons or leading zeros; ApiError 400 for anything else."""
    if len(text) > MAX_SERIAL_CHARS or not _SERIAL.fullmatch(text):
        shown = text if len(text) <= 64 else text[:64] + "…"
        raise ApiError(400, "invalid_serial",
                       gettext("%(serial)s is not a hexadecimal certificate serial (e.g. "
                               "1a2b3c).", serial=repr(shown)))
    digits = text.replace(":", "").lower().lstrip("0")
    if not digits or len(digits) > MAX_SERIAL_DIGITS:
        raise ApiError(400, "invalid_serial",
                       gettext("A certificate serial is positive, at most %(n)s hex digits.",
                               n=MAX_SERIAL_DIGITS))
    return digits


def _certificate(serial: str) -> tuple[CertificateRecord, CARecord]:
    with get_kyso().readers() as s:
        record = store.get_certificate(s, normalize_serial(serial))  # NotFound -> 404
        return record, store.get_ca_by_id(s, record.ca_id)


def _status_json(rec: CertificateRecord, now: datetime) -> dict[str, Any]:
    return {
        "serial": rec.serial,
        "status": rec.status,
        "expired": rec.not_after <= now,
        "not_after": _iso(rec.not_after),
        "revoked_at": _iso(rec.revoked_at),
        "revocation_reason": rec.revocation_reason,
        "invalidity_date": _iso(rec.invalidity_date),
    }


def _certificate_json(rec: CertificateRecord, ca: CARecord, now: datetime) -> dict[str, Any]:
    """The shape of `kyso cert show --json`, without internal ids, plus the issuer's name."""
    cert = x509.load_der_x509_certificate(rec.cert_der) if rec.cert_der else None
    return {
        "serial": rec.serial,
        "status": rec.status,
        "expired": rec.not_after <= now,
        "ca": ca.name,
        "issuer": ca.subject,
        "profile": rec.profile,
        "subject": rec.subject,
        "organization": rec.organization,
        "key_spec": rec.key_spec,
        "not_before": _iso(rec.not_before),
        "not_after": _iso(rec.not_after),
        "revoked_at": _iso(rec.revoked_at),
        "revocation_reason": rec.revocation_reason,
        "invalidity_date": _iso(rec.invalidity_date),
        "sha256_fingerprint": fingerprint(cert) if cert else None,
        "pem": cert.public_bytes(serialization.Encoding.PEM).decode() if cert else None,
    }


def _ca_json(kyso: Kyso, record: CARecord, parent: str | None) -> dict[str, Any]:
    """`kyso ca show --json` without local paths and key labels, plus where to fetch things."""
    urls = kyso.authority.urls
    base = kyso.settings.base_url.rstrip("/")
    delta = kyso.settings.crl.delta and kyso.authority.is_online(record)
    return {
        "name": record.name,
        "kind": record.kind,
        "parent": parent,
        "subject": record.subject,
        "serial": record.serial,
        "status": record.status,
        "key_spec": record.key_spec,
        "not_before": _iso(record.not_before),
        "not_after": _iso(record.not_after),
        "sha256_fingerprint": fingerprint(x509.load_der_x509_certificate(record.cert_der)),
        "certificate_url": urls.ca_issuers(record.name),
        "certificate_pem_url": f"{base}/ca/{record.name}.pem",
        "chain_url": f"{base}/ca/{record.name}/chain.pem",
        "crl_url": urls.crl(record.name),
        "delta_crl_url": urls.delta_crl(record.name) if delta else None,
        "ocsp_url": urls.ocsp(),
    }


def _limits() -> tuple[int, int]:
    """(largest PDF, largest request body): the verifier's limit, lowered by the app's
    MAX_CONTENT_LENGTH when that is set."""
    app_limit: int | None = current_app.config.get("MAX_CONTENT_LENGTH")
    if app_limit is None:
        return MAX_PDF_BYTES, MAX_PDF_BYTES + MULTIPART_OVERHEAD
    return min(MAX_PDF_BYTES, app_limit), app_limit


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "request_too_large",
                    gettext("The request is too large (at most %(limit)s bytes).",
                            limit=limit))


def _uploaded_pdf(body_limit: int) -> bytes:
    """The PDF of the request: the raw body, or the `file` part of a multipart form."""
    if request.mimetype not in (*RAW_PDF_TYPES, MULTIPART):
        raise ApiError(415, "unsupported_media_type",
                       gettext("Send the PDF as application/pdf, or as the field «file» of "
                               "multipart/form-data."))
    if request.content_length is not None and request.content_length > body_limit:
        raise _too_large(body_limit)
    request.max_content_length = body_limit
    try:
        if request.mimetype != MULTIPART:
            data = request.get_data(cache=False)
            if not data:
                raise ApiError(400, "missing_body",
                               gettext("The request body is empty: send the PDF."))
            return data
        upload = request.files.get("file")
        data = upload.read() if upload is not None else b""
    except RequestEntityTooLarge:
        raise _too_large(body_limit) from None
    if not data:
        raise ApiError(400, "missing_file",
                       gettext("No file, or an empty one, in the form field «file»."))
    return data


# -- endpoints ------------------------------------------------------------------------------

@bp.post("/verify")
def verify() -> Response:
    """Verify every signature and document timestamp of a PDF: the report as JSON."""
    # pyHanko is imported on first use, like `kyso verify` does: most requests never need it.
    from signer.pdfinput import check_input
    from signer.report import report_to_json
    from signer.verify import verify_pdf

    pdf_limit, body_limit = _limits()
    data = _uploaded_pdf(body_limit)
    check_input(data, pdf_limit)  # the caller's mistakes first, then ours (no anchors)
    kyso = get_kyso()
    anchors = trust_anchors(kyso)
    if not anchors:
        raise ApiError(503, "no_trust_anchors",
                       gettext("The service has no active root CA to verify signatures "
                               "against."))
    report = verify_pdf(data, trust_roots=anchors, revocation=revocation_source(kyso),
                        max_bytes=pdf_limit)
    response = jsonify(report_to_json(report))
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/certificates/<serial>")
def certificate(serial: str) -> Response:
    record, ca = _certificate(serial)
    response = jsonify(_certificate_json(record, ca, datetime.now(UTC)))
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/certificates/<serial>/status")
def certificate_status(serial: str) -> Response:
    with get_kyso().readers() as s:
        record = store.get_certificate(s, normalize_serial(serial))
    response = jsonify(_status_json(record, datetime.now(UTC)))
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/certificates/<serial>.pem")
def certificate_pem(serial: str) -> Response:
    record, _ = _certificate(serial)
    if not record.cert_der:
        raise ApiError(404, "not_issued",
                       gettext("Certificate %(serial)s was never issued (status %(status)s).",
                               serial=record.serial, status=record.status))
    pem = x509.load_der_x509_certificate(record.cert_der).public_bytes(
        serialization.Encoding.PEM)
    response = Response(pem, mimetype="application/x-pem-file")
    response.headers["Content-Disposition"] = f'attachment; filename="{record.serial}.pem"'
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@bp.get("/cas")
def cas() -> Response:
    kyso = get_kyso()
    with kyso.readers() as s:
        records = list(store.list_cas(s))
    names = {r.id: r.name for r in records}
    response = jsonify([_ca_json(kyso, r, names.get(r.parent_id) if r.parent_id else None)
                        for r in records])
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


def _sign_rate_limit() -> str:
    return str(current_app.config["KYSO_SETTINGS"].web.sign_rate_limit)


def _bearer_token() -> api_tokens.TokenInfo:
    """The request's API token, checked (and its use recorded); TokenRejected otherwise.
    A refusal is audited and committed before it is raised."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" else ""
    if not presented:
        raise api_tokens.TokenRejected("send Authorization: Bearer kyso_...")
    refused: api_tokens.TokenRejected | None = None
    with get_kyso().sessions.begin() as s:
        try:
            info = api_tokens.verify(s, presented, request_id=request_id())
        except api_tokens.TokenRejected as exc:
            refused = exc  # the audit entry of the refusal commits with this block
    if refused is not None:
        raise refused
    return info


def _parameter(name: str) -> str | None:
    """A query parameter, or a field of a multipart form (read after the body)."""
    value = request.args.get(name)
    if value is None and request.mimetype == MULTIPART:
        value = request.form.get(name)
    return value if value not in (None, "") else None


def _sign_request(signer_module: Any) -> Any:
    Level, Kind = signer_module.Level, signer_module.Kind  # noqa: N806
    Placement, SignRequest = signer_module.Placement, signer_module.SignRequest  # noqa: N806
    level_text = _parameter("level") or Level.B_LT.value
    kind_text = _parameter("kind") or Kind.PERSONAL.value
    try:
        level = Level(level_text)
    except ValueError:
        raise ApiError(400, "invalid_level",
                       gettext("The level must be one of %(levels)s.",
                               levels=", ".join(x.value for x in Level))) from None
    try:
        kind = Kind(kind_text)
    except ValueError:
        raise ApiError(400, "invalid_kind",
                       gettext("The kind must be personal or organization.")) from None
    visible, field = _parameter("visible"), _parameter("field")
    if visible and field:
        raise ApiError(400, "invalid_placement",
                       gettext("Give visible or field, not both."))
    if field is not None and (len(field) > 128 or not field.isprintable()):
        raise ApiError(400, "invalid_placement",
                       gettext("The signature field name is at most 128 printable "
                               "characters."))
    if visible is not None:
        placement = Placement.parse_visible(visible)  # SigningRefused 422 when malformed
    elif field is not None:
        placement = Placement(field=field)
    else:
        placement = Placement()
    return SignRequest(level=level, placement=placement, kind=kind)


@bp.post("/sign")
@limiter.limit(_sign_rate_limit)
def sign() -> Response:
    """Sign one PDF for the token's official with their PIN: the signed PDF."""
    info = _bearer_token()
    if not info.has("sign"):
        raise api_tokens.TokenScopeError("this token's scope does not include sign")
    pin = request.headers.get(PIN_HEADER, "")
    if not pin:
        raise ApiError(400, "missing_pin",
                       gettext("The official's signing PIN goes in the %(header)s header.",
                               header=PIN_HEADER))
    if len(pin) > MAX_PIN_CHARS:
        raise ApiError(400, "invalid_pin", gettext("The PIN is too long."))
    # pyHanko is imported on first use, as for /verify.
    from kyso.signing import BatchItem, sign_documents, signing_certificate
    from signer import pdfsign
    from signer.pdfinput import check_input

    pdf_limit, body_limit = _limits()
    data = _uploaded_pdf(body_limit)
    check_input(data, pdf_limit)  # not a PDF, damaged, encrypted, too large: before the PIN
    sign_request = _sign_request(pdfsign)
    kyso = get_kyso()
    # Revoked, held, expired or missing certificate: refused before the PIN is tried.
    certificate = signing_certificate(kyso, info.official_id)
    results = list(sign_documents(
        kyso, info.official_id, pin, [BatchItem("document.pdf", data)], sign_request,
        actor=f"account:{info.username}"))
    result = results[0]
    if result.error is not None:
        raise result.error
    assert result.data is not None
    response = Response(result.data, mimetype="application/pdf")
    response.headers["Content-Disposition"] = 'attachment; filename="signed.pdf"'
    response.headers["X-Signature-Level"] = str(sign_request.level)
    response.headers["X-Certificate-Serial"] = certificate.serial
    response.headers["Cache-Control"] = "no-store"
    return response


# -- certificate requests (renewal / change of content) of the token's official -------------

MAX_REQUEST_BODY = 16 * 1024
MAX_REQUEST_NO = 2**31 - 1
_REQUEST_BODY_FIELDS = ("kind", "serial", "changes", "key")
# Vietnamese first, the library's English detail in brackets, as everywhere in this API.
_REQUEST_MESSAGES = {
    "not_found": lazy_gettext("The official has no such certificate or request."),
    "request_pending": lazy_gettext("This certificate already has a pending request."),
    "conflict": lazy_gettext("The certificate is revoked or expired and cannot be renewed."),
    "invalid_request": lazy_gettext("The request is not valid."),
    "subject_rejected": lazy_gettext("The certificate content is not valid."),
    "weak_key": lazy_gettext("The key is not accepted."),
    "lint_failed": lazy_gettext("The certificate failed the technical checks."),
}


def _request_error(exc: CAError) -> ApiError:
    said = _REQUEST_MESSAGES.get(exc.code) or gettext("The request cannot be processed.")
    return ApiError(exc.http_status, exc.code, f"{said} ({exc.message})")


def _request_body() -> dict[str, Any]:
    if request.mimetype != "application/json":
        raise ApiError(415, "unsupported_media_type",
                       gettext("Send the request as JSON (Content-Type: "
                               "application/json)."))
    if request.content_length is not None and request.content_length > MAX_REQUEST_BODY:
        raise _too_large(MAX_REQUEST_BODY)
    request.max_content_length = MAX_REQUEST_BODY
    try:
        body = request.get_json(silent=True)
    except RequestEntityTooLarge:
        raise _too_large(MAX_REQUEST_BODY) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json",
                       gettext("The request body must be a JSON object."))
    unknown = sorted(set(body) - set(_REQUEST_BODY_FIELDS))
    if unknown:
        raise ApiError(400, "unknown_field",
                       gettext("Unknown field(s): %(fields)s. Allowed: %(allowed)s.",
                               fields=", ".join(unknown)[:200],
                               allowed=", ".join(_REQUEST_BODY_FIELDS)))
    return body


@bp.post("/certificate-requests")
def file_certificate_request() -> Response:
    """File a renewal or change-of-content request for a certificate of the token's official
    (the same key only: a new key needs the official's PIN, in the portal)."""
    info = _bearer_token()
    if not info.has("sign"):
        raise api_tokens.TokenScopeError("this token's scope does not include sign")
    body = _request_body()
    kind = body.get("kind")
    if kind not in ("renewal", "change"):
        raise ApiError(400, "invalid_kind",
                       gettext("The kind must be renewal or change."))
    serial = body.get("serial")
    if not isinstance(serial, str):
        raise ApiError(400, "invalid_serial",
                       gettext("serial: the certificate's serial, a hexadecimal string."))
    serial = normalize_serial(serial)
    if body.get("key", "same") != "same":
        raise ApiError(400, "key_not_supported",
                       gettext("Only key \"same\" over the API: a new key needs the "
                               "official's PIN and is requested in the portal."))
    changes = body.get("changes") or {}
    if not isinstance(changes, dict):
        raise ApiError(400, "invalid_changes",
                       gettext("changes must be a JSON object."))
    if kind == "renewal" and changes:
        raise ApiError(400, "invalid_changes",
                       gettext("A renewal keeps the content: use kind change to change it."))
    if kind == "change" and not changes:
        raise ApiError(400, "invalid_changes",
                       gettext("A change needs at least one field in changes."))
    authority = get_kyso().authority
    actor = f"account:{info.username}"
    try:
        if kind == "renewal":
            filed = cert_requests.file_renewal(
                authority, serial, actor=actor, official_id=info.official_id, key="same",
                filed_via="api", request_id=request_id())
        else:
            filed = cert_requests.file_change(
                authority, serial, changes, actor=actor, official_id=info.official_id,
                key="same", filed_via="api", request_id=request_id())
    except CAError as exc:
        raise _request_error(exc) from None
    response = jsonify(filed.as_json())
    response.status_code = 201
    response.headers["Location"] = url_for("api.certificate_request", request_no=filed.id)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/certificate-requests/<int:request_no>")
def certificate_request(request_no: int) -> Response:
    """A request of the token's official: its status, and the new serial once approved."""
    info = _bearer_token()
    try:
        if request_no < 1 or request_no > MAX_REQUEST_NO:
            raise NotFound(f"no certificate request {request_no}")
        found = cert_requests.get(get_kyso().authority, request_no,
                                  official_id=info.official_id)
    except CAError as exc:
        raise _request_error(exc) from None
    response = jsonify(found.as_json())
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/openapi.json")
def openapi() -> Response:
    from web.openapi import document

    response = jsonify(document())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
