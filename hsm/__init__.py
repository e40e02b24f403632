"""PKCS#11 access: token discovery, login, session pool, key generation and signing."""

from hsm.errors import (
    HsmError,
    HsmPinIncorrect,
    KeyExists,
    KeyNotExportable,
    KeyNotFound,
    MechanismUnsupported,
    TokenUnavailable,
)
from hsm.keys import HsmECPrivateKey, HsmPrivateKey, HsmRSAPrivateKey
from hsm.keyspec import KeySpec
from hsm.softhsm import SoftHsmToken, create_softhsm_token
from hsm.token import Token, init_user_pin, token_present

__all__ = [
    "HsmECPrivateKey",
    "HsmError",
    "HsmPinIncorrect",
    "HsmPrivateKey",
    "HsmRSAPrivateKey",
    "KeyExists",
    "KeyNotExportable",
    "KeyNotFound",
    "KeySpec",
    "MechanismUnsupported",
    "SoftHsmToken",
    "Token",
    "TokenUnavailable",
    "create_softhsm_token",
    "init_user_pin",
    "token_present",
]
