"""Errors of the OCSP responder: each maps to an OCSPResponseStatus or an HTTP status."""

from __future__ import annotations


class OcspError(Exception):
    """Base class: `code` is stable, `http_status` what the HTTP layer answers, str() is safe."""

    code = "ocsp_error"
    http_status = 200

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedRequest(OcspError):
    """Answered with OCSPResponseStatus malformedRequest (HTTP 200, RFC 6960 4.2.1)."""

    code = "malformed_request"


class ResponderUnavailable(OcspError):
    """No usable responder (key or certificate) for a CA: `unauthorized` or `tryLater`."""

    code = "responder_unavailable"
