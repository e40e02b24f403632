"""Errors raised by the hsm package, each with a stable code, an HTTP status and a safe message."""

from __future__ import annotations


class HsmError(Exception):
    """Base class: anything that went wrong talking to the HSM."""

    code: str = "hsm_error"
    http_status: int = 500
    default_message: str = "HSM operation failed"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class TokenUnavailable(HsmError):
    code = "hsm_unavailable"
    http_status = 503
    default_message = "HSM token is unavailable"


class KeyNotFound(HsmError):
    code = "hsm_key_not_found"
    http_status = 404
    default_message = "key not found in HSM"


class KeyExists(HsmError):
    """A key with that label is already in the token; keys are never overwritten."""

    code = "hsm_key_exists"
    http_status = 409
    default_message = "a key with that label already exists in the HSM"


class HsmPinIncorrect(HsmError):
    code = "hsm_pin_incorrect"
    http_status = 403
    default_message = "HSM login failed: PIN incorrect or locked"


class KeyNotExportable(HsmError):
    code = "hsm_key_not_exportable"
    http_status = 500
    default_message = "HSM private keys cannot be exported"


class MechanismUnsupported(HsmError):
    code = "hsm_mechanism_unsupported"
    http_status = 500
    default_message = "operation or mechanism not supported by this HSM key"
