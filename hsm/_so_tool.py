"""Out-of-process SO step: create a CKA_TRUSTED AES wrapping key (request JSON on stdin)."""

from __future__ import annotations

import json
import secrets
import sys

import pkcs11
from pkcs11 import Attribute, KeyType

from hsm._storelock import store_lock
from hsm.token import _WRAPPING_KEY_TEMPLATE


def main() -> int:
    request = json.loads(sys.stdin.read())
    with store_lock(request["module"]):  # it writes the token's files: see hsm/_storelock.py
        return _create_trusted_key(request)


def _create_trusted_key(request: dict[str, str]) -> int:
    try:
        lib = pkcs11.lib(request["module"])
        token = lib.get_token(token_label=request["token"])
        session = token.open(rw=True, so_pin=request["so_pin"])
    except (pkcs11.PinIncorrect, pkcs11.PinLocked):
        print("pin_incorrect")
        return 1
    except pkcs11.PKCS11Error as exc:
        print(type(exc).__name__)
        return 1
    try:
        # The SO can only create public objects: CKA_PRIVATE must be False.
        session.generate_key(
            KeyType.AES, 256, id=secrets.token_bytes(16), label=request["label"], store=True,
            template={**_WRAPPING_KEY_TEMPLATE, Attribute.PRIVATE: False, Attribute.TRUSTED: True},
        )
    except pkcs11.PKCS11Error as exc:
        print(type(exc).__name__)
        return 1
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
