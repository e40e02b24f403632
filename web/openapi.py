"""The OpenAPI 3.1 document of the JSON API (/api/v1/openapi.json), kept beside web/api.py."""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

API_VERSION = "1.0.0"

# Vocabularies of the verification report (signer/verify.py, signer/report.py); the tests
# compare each list with its source, so a new code cannot slip out undocumented.
INDICATIONS = ["TOTAL-PASSED", "TOTAL-FAILED", "INDETERMINATE"]
SUB_INDICATIONS = [  # ETSI EN 319 102-1 (pyHanko's AdESFailure / AdESIndeterminate)
    "FORMAT_FAILURE", "HASH_FAILURE", "SIG_CRYPTO_FAILURE", "REVOKED", "NOT_YET_VALID",
    "SIG_CONSTRAINTS_FAILURE", "CHAIN_CONSTRAINTS_FAILURE", "CERTIFICATE_CHAIN_GENERAL_FAILURE",
    "CRYPTO_CONSTRAINTS_FAILURE", "EXPIRED", "POLICY_PROCESSING_ERROR",
    "SIGNATURE_POLICY_NOT_AVAILABLE", "TIMESTAMP_ORDER_FAILURE", "NO_SIGNING_CERTIFICATE_FOUND",
    "NO_CERTIFICATE_CHAIN_FOUND", "REVOKED_NO_POE", "REVOKED_CA_NO_POE",
    "OUT_OF_BOUNDS_NO_POE", "OUT_OF_BOUNDS_NOT_REVOKED", "REVOCATION_OUT_OF_BOUNDS_NO_POE",
    "CRYPTO_CONSTRAINTS_FAILURE_NO_POE", "NO_POE", "TRY_LATER", "SIGNED_DATA_NOT_FOUND",
    "GENERIC",
]
REASON_CODES = [  # the reason.* messages of signer/report.py
    "modified_after_signing", "docmdp_violated", "byte_range_invalid", "signature_unreadable",
    "unsupported_format", "certification_not_first", "hash_mismatch", "signature_invalid",
    "certificate_revoked", "signed_after_revocation", "ca_revoked", "certificate_expired",
    "certificate_not_yet_valid", "no_trusted_chain", "no_signing_certificate",
    "certificate_constraints", "certificate_chain_failure", "revocation_unknown",
    "no_proof_of_existence", "weak_algorithm", "timestamp_order", "signature_constraints",
    "timestamp_invalid", "seed_value", "validation_error", "validation_failed",
    "format_failure", "ades", "unsigned_changes_at_end", "validation_data_at_end",
]
SIGNATURE_KINDS = ["signature", "document_timestamp"]
PADES_LEVELS = ["B-B", "B-T", "B-LT", "B-LTA"]
SIGN_KINDS = ["personal", "organization"]
MODIFICATION_LEVELS = ["none", "lta_updates", "form_filling", "annotations", "other"]
COVERAGE_LEVELS = ["entire_file", "entire_revision", "contiguous_block", "unclear"]
REVOCATION_STATUSES = ["good", "revoked", "unknown"]
REVOCATION_SOURCES = ["dss", "cms", "fetched"]
REPORT_REVOCATION_REASONS = [  # RFC 5280 CRLReason, as asn1crypto names them
    "unspecified", "key_compromise", "ca_compromise", "affiliation_changed", "superseded",
    "cessation_of_operation", "certificate_hold", "remove_from_crl", "privilege_withdrawn",
    "aa_compromise",
]

# Vocabularies of the CA database (ca/models.py, ca/authority.py).
CERTIFICATE_STATUSES = ["pending", "valid", "revoked", "hold", "failed"]
CERTIFICATE_REVOCATION_REASONS = [  # RFC 5280 names, as stored (cryptography's ReasonFlags)
    "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
    "cessationOfOperation", "certificateHold", "privilegeWithdrawn", "aACompromise",
    "removeFromCRL",
]
CA_KINDS = ["root", "issuing"]
# Vocabularies of certificate requests (ca/requests.py).
REQUEST_KINDS = ["renewal", "change", "new"]
REQUEST_STATUSES = ["pending", "issuing", "approved", "rejected", "cancelled"]
REQUEST_KEYS = ["same", "new"]
REQUEST_FILED_VIA = ["portal", "operator", "api"]
REQUEST_CONTENT_FIELDS = ["name", "title", "organization", "unit", "locality", "province",
                          "email"]
REQUEST_CHANGEABLE_FIELDS = ["name", "title", "organization", "unit", "locality", "email"]
MAX_REQUEST_ID = 2**31 - 1
CA_STATUSES = ["active", "retired", "revoked"]

SERIAL_PATTERN = "^[0-9A-Fa-f]+(:[0-9A-Fa-f]+)*$"
HEX_SERIAL = "^[0-9a-f]+$"
FINGERPRINT = "^[0-9A-F]{2}(:[0-9A-F]{2}){31}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null (OpenAPI 3.1 / JSON Schema 2020-12 style)."""
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    out["type"] = [schema["type"], "null"]
    if "enum" in out:
        out["enum"] = [*out["enum"], None]
    return out


def _object(properties: dict[str, Any], description: str = "") -> dict[str, Any]:
    """A closed object whose every property is always present (null when unknown)."""
    out: dict[str, Any] = {"type": "object", "properties": properties,
                           "required": list(properties), "additionalProperties": False}
    if description:
        out["description"] = description
    return out


def _enum(values: list[str], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "enum": list(values)}
    if description:
        out["description"] = description
    return out


STRING = {"type": "string"}
BOOLEAN = {"type": "boolean"}
COUNT = {"type": "integer", "minimum": 0}
TIME = {"type": "string", "format": "date-time", "description": "ISO 8601, UTC."}
URL = {"type": "string", "format": "uri"}


def _schemas() -> dict[str, Any]:
    return {
        "Error": _object({
            "error": _object({
                "code": {"type": "string", "pattern": "^[a-z0-9_]+$",
                         "description": "Stable machine code (e.g. not_found, not_a_pdf)."},
                "message": {"type": "string",
                            "description": "Safe to show: Vietnamese, English in brackets."},
                "request_id": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$",
                               "description": "Also in the X-Request-ID response header."},
            }),
        }, "Every error of the API has this shape."),
        "Reason": _object({
            "code": _enum(REASON_CODES, "Why the verdict is what it is."),
            "detail": {"type": "string", "description": "Technical detail (English), may be "
                                                        "empty."},
        }),
        "CertificateInfo": _object({
            "common_name": _nullable(STRING),
            "organization": _nullable(STRING),
            "serial": {"type": "string", "pattern": HEX_SERIAL},
            "issuer_common_name": _nullable(STRING),
            "subject": STRING,
            "not_before": TIME,
            "not_after": TIME,
        }, "The signer's (or TSA's) certificate."),
        "TimestampInfo": _object({
            "time": TIME,
            "valid": {"type": "boolean", "description": "Token intact, its signature correct."},
            "trusted": {"type": "boolean",
                        "description": "And its TSA chains to a trust anchor, not revoked."},
            "tsa": _nullable(STRING),
        }),
        "DocumentTimestampRef": _object({
            "field_name": STRING,
            "time": TIME,
            "indication": _enum(INDICATIONS),
        }),
        "Integrity": _object({
            "digest_ok": _nullable(BOOLEAN),
            "signature_ok": _nullable(BOOLEAN),
            "digest_algorithm": _nullable(STRING),
            "signature_algorithm": _nullable(STRING),
        }),
        "Revocation": _object({
            "status": _enum(REVOCATION_STATUSES, "Of the signer's certificate at signing time."),
            "revoked_at": _nullable(TIME),
            "reason": _nullable(_enum(REPORT_REVOCATION_REASONS)),
            "ca_revoked": BOOLEAN,
            "sources": {"type": "array", "items": _enum(REVOCATION_SOURCES),
                        "description": "dss, cms: embedded in the file; fetched: our OCSP "
                                       "responder or CRLs."},
        }),
        "Modification": _object({
            "level": _enum(MODIFICATION_LEVELS, "What changed after this signature's revision."),
            "coverage": _enum(COVERAGE_LEVELS),
            "changed_fields": {"type": "array", "items": STRING},
            "details": {"type": "array", "items": STRING},
            "docmdp_permission": {"type": ["integer", "null"], "enum": [1, 2, 3, None]},
            "permitted": BOOLEAN,
        }),
        "SignatureReport": _object({
            "field_name": STRING,
            "kind": _enum(SIGNATURE_KINDS),
            "revision": _nullable(COUNT),
            "sub_filter": _nullable(STRING),
            "signer": _nullable(_ref("CertificateInfo")),
            "claimed_signing_time": _nullable(TIME),
            "timestamp": _nullable(_ref("TimestampInfo")),
            "document_timestamps": {"type": "array", "items": _ref("DocumentTimestampRef")},
            "integrity": _ref("Integrity"),
            "certificate_path": {"type": "array", "items": STRING,
                                 "description": "Subject CNs, signer first, anchor last."},
            "path_trusted": BOOLEAN,
            "revocation": _ref("Revocation"),
            "pades_level": _nullable(_enum(PADES_LEVELS, "The PAdES level actually reached.")),
            "modification": _ref("Modification"),
            "certified": BOOLEAN,
            "indication": _enum(INDICATIONS),
            "sub_indication": _nullable(_enum(SUB_INDICATIONS,
                                              "ETSI EN 319 102-1 sub-indication.")),
            "reasons": {"type": "array", "items": _ref("Reason")},
            "best_signature_time": _nullable(TIME),
        }, "One signature or document timestamp."),
        "VerificationReport": _object({
            "signatures": {"type": "array", "items": _ref("SignatureReport"),
                           "description": "Signatures and document timestamps, file order."},
            "signature_count": COUNT,
            "document_timestamp_count": COUNT,
            "revisions": COUNT,
            "last_revision_covered": BOOLEAN,
            "validation_time": TIME,
            "indication": _enum(INDICATIONS, "The worst of the signatures'."),
            "file_size": COUNT,
            "certified": BOOLEAN,
            "notes": {"type": "array", "items": _ref("Reason")},
            "passed": {"type": "boolean", "description": "indication is TOTAL-PASSED."},
        }, "The report of signer.report.report_to_json (same as `kyso verify --json`)."),
        "CertificateStatus": _object({
            "serial": {"type": "string", "pattern": HEX_SERIAL},
            "status": _enum(CERTIFICATE_STATUSES, "hold: suspended (certificateHold)."),
            "expired": {"type": "boolean", "description": "not_after has passed."},
            "not_after": TIME,
            "revoked_at": _nullable(TIME),
            "revocation_reason": _nullable(_enum(CERTIFICATE_REVOCATION_REASONS)),
            "invalidity_date": _nullable(TIME),
        }),
        "Certificate": _object({
            "serial": {"type": "string", "pattern": HEX_SERIAL},
            "status": _enum(CERTIFICATE_STATUSES),
            "expired": BOOLEAN,
            "ca": {"type": "string", "description": "Name of the issuing CA (see /cas)."},
            "issuer": {"type": "string", "description": "Subject of the issuing CA."},
            "profile": STRING,
            "subject": STRING,
            "organization": _nullable(STRING),
            "key_spec": STRING,
            "not_before": TIME,
            "not_after": TIME,
            "revoked_at": _nullable(TIME),
            "revocation_reason": _nullable(_enum(CERTIFICATE_REVOCATION_REASONS)),
            "invalidity_date": _nullable(TIME),
            "sha256_fingerprint": _nullable({"type": "string", "pattern": FINGERPRINT}),
            "pem": _nullable({"type": "string", "pattern": "^-----BEGIN CERTIFICATE-----"}),
        }, "Null fingerprint and PEM: never signed (pending or failed)."),
        "CertificateRequestContent": _object(
            {name: _nullable(STRING) for name in REQUEST_CONTENT_FIELDS},
            "The certificate content asked for: subject attributes by name (title T, "
            "organization O, unit OU, locality L, province ST) and the e-mail address of the "
            "SAN; null: absent."),
        "CertificateRequest": _object({
            "id": {"type": "integer", "minimum": 1},
            "kind": _enum(REQUEST_KINDS, "renewal: same content; change: new content; new: "
                                         "a first certificate."),
            "status": _enum(REQUEST_STATUSES, "issuing: approved, the certificate is being "
                                              "made."),
            "serial": _nullable({"type": "string", "pattern": HEX_SERIAL,
                                 "description": "The certificate it renews (null for new)."}),
            "content": _ref("CertificateRequestContent"),
            "key": _enum(REQUEST_KEYS, "The certificate's key, or a new one (asked for in "
                                       "the portal, with the official's PIN)."),
            "filed_via": _enum(REQUEST_FILED_VIA),
            "requested_at": TIME,
            "decided_at": _nullable(TIME),
            "reason": _nullable({"type": "string", "description": "Why it was rejected."}),
            "new_serial": _nullable({"type": "string", "pattern": HEX_SERIAL,
                                     "description": "The new certificate, once approved "
                                                    "(the old one is then revoked)."}),
        }, "A renewal or change-of-content request, decided by an operator."),
        "NewCertificateRequest": {
            "type": "object",
            "properties": {
                "kind": _enum(["renewal", "change"]),
                "serial": {"type": "string", "pattern": SERIAL_PATTERN, "minLength": 1,
                           "maxLength": 128,
                           "description": "A certificate of the token's official."},
                "changes": {
                    "type": "object",
                    "properties": {name: _nullable({"type": "string", "maxLength": 254})
                                   for name in REQUEST_CHANGEABLE_FIELDS},
                    "additionalProperties": False,
                    "description": "For kind change (at least one field): the new values; "
                                   "an empty string or null removes an optional attribute. "
                                   "Not allowed for kind renewal.",
                },
                "key": {"type": "string", "enum": ["same"], "default": "same",
                        "description": "Only the certificate's key over the API: a new key "
                                       "needs the official's PIN (in the portal)."},
            },
            "required": ["kind", "serial"],
            "additionalProperties": False,
        },
        "CA": _object({
            "name": STRING,
            "kind": _enum(CA_KINDS),
            "parent": _nullable(STRING),
            "subject": STRING,
            "serial": {"type": "string", "pattern": HEX_SERIAL},
            "status": _enum(CA_STATUSES),
            "key_spec": STRING,
            "not_before": TIME,
            "not_after": TIME,
            "sha256_fingerprint": {"type": "string", "pattern": FINGERPRINT},
            "certificate_url": URL,
            "certificate_pem_url": URL,
            "chain_url": URL,
            "crl_url": URL,
            "delta_crl_url": _nullable(URL),
            "ocsp_url": URL,
        }),
    }


_ERRORS = {
    400: "Bad request: a missing body, file or signing PIN, a malformed serial or parameter, "
         "or a certificate request that is not well-formed JSON of the documented shape.",
    401: "No API token, or an unknown, revoked or expired one (code invalid_token).",
    403: "The token's scope lacks the operation (token_scope), or the signing PIN is wrong "
         "(pin_incorrect: the message says how many attempts are left).",
    404: "No such certificate (for certificate requests: no such certificate or request of "
         "the token's official).",
    409: "The certificate already has a pending request (request_pending), or it is revoked "
         "or expired (conflict).",
    413: "The PDF is larger than the service accepts.",
    415: "Not a PDF, or another Content-Type than application/pdf, application/octet-stream "
         "or multipart/form-data (application/json for certificate requests).",
    422: "A PDF that cannot be verified (damaged, encrypted or without any signature), or "
         "signing refused (signing_refused: the official's certificate is revoked, on hold or "
         "expired; a bad placement; pdf_damaged, pdf_encrypted), or a certificate request "
         "whose content the certificate profile refuses (subject_rejected, invalid_request).",
    423: "The official's signing key is locked after too many wrong PINs (key_locked).",
    429: "Too many signing requests from this address (Retry-After says when to retry).",
    503: "The service has no trust anchor (no active root CA), or the timestamp authority "
         "needed for B-T and above is unavailable (tsa_unavailable).",
}


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {"200": ok}
    for status in errors:
        out[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    return out


def _json(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
            "content": {"application/json": {"schema": schema}}}


_REQUEST_ID_HEADER = {"description": "The request id (the caller's X-Request-ID when sane).",
                      "schema": {"type": "string"}}

_SERIAL_PARAMETER = {
    "name": "serial", "in": "path", "required": True,
    "description": "Certificate serial in hexadecimal: upper or lower case, colons allowed "
                   "(01:A2:...), at most 40 significant digits.",
    "schema": {"type": "string", "pattern": SERIAL_PATTERN, "minLength": 1, "maxLength": 128},
}


_PIN_PARAMETER = {
    "name": "X-Signing-PIN", "in": "header", "required": True,
    "description": "The official's own signing PIN, for this operation (never stored). "
                   "Wrong PINs count towards locking the official's key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 256},
}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_SIGN_PARAMETERS = [
    _PIN_PARAMETER,
    _query("level", "PAdES baseline level (B-T and above need the timestamp authority).",
           {"type": "string", "enum": PADES_LEVELS, "default": "B-LT"}),
    _query("visible", "A visible signature: PAGE,X,Y,W,H in PDF points from the bottom-left "
                      "corner (e.g. 1,350,50,200,80). Invisible when neither this nor field.",
           {"type": "string", "maxLength": 200}),
    _query("field", "An existing empty signature field to sign into.",
           {"type": "string", "maxLength": 128}),
    _query("kind", "A personal signature or the organization's.",
           {"type": "string", "enum": SIGN_KINDS, "default": "personal"}),
]


def _paths() -> dict[str, Any]:
    pdf = {"type": "string", "format": "binary"}
    return {
        "/sign": {"post": {
            "operationId": "signPdf",
            "summary": "Sign a PDF for the token's official",
            "description": "Signs one PDF with the key of the official the API token belongs "
                           "to (no parameter names another official), after the official's "
                           "PIN in X-Signing-PIN opens it. The certificate is checked first: "
                           "a revoked, held or expired one is refused (422) before the PIN "
                           "is tried. Parameters come from the query string or, for "
                           "multipart requests, from form fields. Rate limited per client "
                           "address.",
            "security": [{"apiToken": []}],
            "parameters": _SIGN_PARAMETERS,
            "requestBody": {"required": True, "content": {
                "application/pdf": {"schema": pdf},
                "application/octet-stream": {"schema": pdf},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {
                        "file": pdf,
                        "level": {"type": "string", "enum": PADES_LEVELS},
                        "visible": {"type": "string", "maxLength": 200},
                        "field": {"type": "string", "maxLength": 128},
                        "kind": {"type": "string", "enum": SIGN_KINDS},
                    }, "required": ["file"]},
                    "encoding": {"file": {"contentType": "application/pdf"}},
                },
            }},
            "responses": _responses({
                "description": "The signed PDF (an incremental update of the one sent).",
                "headers": {
                    "X-Request-ID": _REQUEST_ID_HEADER,
                    "X-Signature-Level": {"description": "The PAdES level made.",
                                          "schema": {"type": "string", "enum": PADES_LEVELS}},
                    "X-Certificate-Serial": {"description": "Serial (hex) of the signing "
                                                            "certificate.",
                                             "schema": {"type": "string",
                                                        "pattern": HEX_SERIAL}},
                },
                "content": {"application/pdf": {"schema": pdf}},
            }, 400, 401, 403, 413, 415, 422, 423, 429, 503),
        }},
        "/verify": {"post": {
            "operationId": "verifyPdf",
            "summary": "Verify the signatures of a PDF",
            "description": "Every signature and document timestamp, against the "
                           "installation's root CAs, with revocation data from the file and "
                           "from our OCSP responder and CRLs. A report with TOTAL-FAILED or "
                           "INDETERMINATE is still a 200: the document was verified.",
            "requestBody": {"required": True, "content": {
                "application/pdf": {"schema": pdf},
                "application/octet-stream": {"schema": pdf},
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": {"file": pdf},
                               "required": ["file"]},
                    "encoding": {"file": {"contentType": "application/pdf"}},
                },
            }},
            "responses": _responses(_json("The verification report.",
                                          _ref("VerificationReport")),
                                    400, 413, 415, 422, 503),
        }},
        "/certificates/{serial}": {"get": {
            "operationId": "getCertificate",
            "summary": "A certificate issued here: status, validity, fingerprint, PEM",
            "parameters": [_SERIAL_PARAMETER],
            "responses": _responses(_json("The certificate.", _ref("Certificate")), 400, 404),
        }},
        "/certificates/{serial}/status": {"get": {
            "operationId": "getCertificateStatus",
            "summary": "Just the status of a certificate (cheap, for polling)",
            "parameters": [_SERIAL_PARAMETER],
            "responses": _responses(_json("The status.", _ref("CertificateStatus")), 400, 404),
        }},
        "/certificates/{serial}.pem": {"get": {
            "operationId": "getCertificatePem",
            "summary": "The certificate, PEM",
            "parameters": [_SERIAL_PARAMETER],
            "responses": _responses({
                "description": "The certificate (application/x-pem-file).",
                "headers": {"X-Request-ID": _REQUEST_ID_HEADER},
                "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
            }, 400, 404),
        }},
        "/cas": {"get": {
            "operationId": "listCas",
            "summary": "The certificate authorities, with where to fetch certificates, CRLs "
                       "and OCSP answers",
            "responses": _responses(_json("Every CA, oldest first.",
                                          {"type": "array", "items": _ref("CA")})),
        }},
        "/certificate-requests": {"post": {
            "operationId": "fileCertificateRequest",
            "summary": "Ask for a renewal or a change of content of the official's certificate",
            "description": "Files a request for a new certificate replacing one of the token's "
                           "official's certificates: the same content (renewal) or changed "
                           "content (change), with the same key. The new content is checked "
                           "at once; an operator then approves it (the new certificate is "
                           "issued, then the old one revoked) or rejects it with a reason. "
                           "Needs a token with scope sign. One pending request per "
                           "certificate.",
            "security": [{"apiToken": []}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": _ref("NewCertificateRequest")}}},
            "responses": {
                "201": {"description": "The request, pending.",
                        "headers": {"X-Request-ID": _REQUEST_ID_HEADER,
                                    "Location": {"description": "Where to follow it.",
                                                 "schema": {"type": "string"}}},
                        "content": {"application/json": {
                            "schema": _ref("CertificateRequest")}}},
                **{k: v for k, v in _responses({}, 400, 401, 403, 404, 409, 413, 415,
                                               422).items() if k != "200"},
            },
        }},
        "/certificate-requests/{request_no}": {"get": {
            "operationId": "getCertificateRequest",
            "summary": "A request of the token's official: its status and, once approved, "
                       "the new certificate's serial",
            "security": [{"apiToken": []}],
            "parameters": [{"name": "request_no", "in": "path", "required": True,
                            "description": "The request's id.",
                            "schema": {"type": "integer", "minimum": 1,
                                       "maximum": MAX_REQUEST_ID}}],
            "responses": _responses(_json("The request.", _ref("CertificateRequest")),
                                    401, 404),
        }},
        "/openapi.json": {"get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "responses": _responses(_json("OpenAPI 3.1.", {"type": "object"})),
        }},
    }


@cache
def _document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kyso JSON API",
            "version": API_VERSION,
            "description": "For relying systems of Ho Chi Minh City (the document-management "
                           "system, portals, other agencies): verify signed PDFs, look up "
                           "certificates and their status, find the CAs (no authentication), "
                           "sign PDFs for an official (an API token made in the portal, "
                           "Authorization: Bearer kyso_..., plus the official's PIN), and ask "
                           "for the renewal of the official's certificate (the same token). "
                           "Errors are JSON {\"error\": {\"code\", \"message\", "
                           "\"request_id\"}}; another method than the documented one is a 405 "
                           "with an Allow header.",
        },
        "servers": [{"url": "/api/v1"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": {f"Error{status}": _json(text, _ref("Error"))
                          for status, text in _ERRORS.items()},
            "securitySchemes": {"apiToken": {
                "type": "http", "scheme": "bearer",
                "description": "An API token (kyso_...) made at /account/tokens by an account "
                               "with the official role; scope sign for /sign and for filing "
                               "certificate requests."}},
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI document (a fresh copy: callers may change it)."""
    return copy.deepcopy(_document())
