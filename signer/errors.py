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


class SigningRefused(SignerError):
    """A document or request the signer will not sign (certificate unusable, bad placement,
    field already signed...): the message says what to change."""

    code = "signing_refused"
    http_status = 422


class InvalidAppearance(SignerError):
    """The visible signature cannot be drawn as asked: an image that is not a PNG or is too
    large, text the font cannot show, or a box too small for the text."""

    code = "invalid_appearance"
    http_status = 422


class NotAPdf(SignerError):
    """The input is not a PDF document (no %PDF- header)."""

    code = "not_a_pdf"
    http_status = 415


class PdfDamaged(SignerError):
    """The PDF cannot be read: truncated, or its structure is broken."""

    code = "pdf_damaged"
    http_status = 422


class PdfEncrypted(SignerError):
    """The PDF is encrypted and opening it needs a password."""

    code = "pdf_encrypted"
    http_status = 422


class PdfTooLarge(SignerError):
    """The file is larger than the verifier accepts."""

    code = "pdf_too_large"
    http_status = 413


class NoSignatures(SignerError):
    """The PDF has no signed signature field and no document timestamp."""

    code = "no_signatures"
    http_status = 422
