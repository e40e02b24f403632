"""Errors of the signer package: a stable code, an HTTP status and a safe message each."""

from __future__ import annotations


class SignerError(Exception):
    """Base class: `code` is stable, `http_status` is what the web layer answers, str() is safe."""

    code = "signer_error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TsaUnavailable(SignerError):
    """The timestamp authority cannot sign: key or certificate missing, wrong or expired."""

    code = "tsa_unavailable"
    http_status = 503


class TsaRejected(SignerError):
    """A request the TSA answered with a rejection (in-process callers get this exception;
    over HTTP the same rejection is a TimeStampResp). `failure` is the PKIFailureInfo bit."""

    code = "tsa_rejected"
    http_status = 422

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure
