"""Sealing of officials' HSM-wrapped keys under a key derived from their signing PIN (argon2id)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ca.errors import InvalidRequest

MIN_PIN_LENGTH = 6
MAX_PIN_LENGTH = 128


@dataclass(frozen=True)
class KdfParams:
    """argon2id cost; stored beside each sealed key so costs can rise without breaking old keys."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 2

    def encode(self) -> str:
        return f"argon2id$t={self.time_cost}$m={self.memory_kib}$p={self.parallelism}"

    @classmethod
    def decode(cls, text: str) -> KdfParams:
        name, *parts = text.split("$")
        if name != "argon2id":
            raise ValueError(f"unsupported KDF {name!r}")
        values = dict(p.split("=", 1) for p in parts)
        return cls(int(values["t"]), int(values["m"]), int(values["p"]))


class WrongPin(Exception):
    """The PIN does not open the sealed key (or the sealed key was tampered with)."""


def check_pin_policy(pin: str) -> None:
    if len(pin) < MIN_PIN_LENGTH:
        raise InvalidRequest(f"the signing PIN must have at least {MIN_PIN_LENGTH} characters")
    if len(pin) > MAX_PIN_LENGTH:
        raise InvalidRequest(f"the signing PIN must have at most {MAX_PIN_LENGTH} characters")
    if len(set(pin)) == 1:
        raise InvalidRequest("the signing PIN must not repeat one character")


def _derive(pin: str, salt: bytes, params: KdfParams) -> bytes:
    return hash_secret_raw(
        pin.encode("utf-8"),
        salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=32,
        type=Type.ID,
    )


def seal(pin: str, secret: bytes, aad: bytes, params: KdfParams) -> tuple[bytes, bytes]:
    """Return (salt, nonce‖ciphertext) of `secret` under argon2id(pin), bound to `aad`."""
    salt = os.urandom(16)
    nonce = os.urandom(12)
    return salt, nonce + AESGCM(_derive(pin, salt, params)).encrypt(nonce, secret, aad)


def unseal(pin: str, salt: bytes, sealed: bytes, aad: bytes, params: KdfParams) -> bytes:
    try:
        return AESGCM(_derive(pin, salt, params)).decrypt(sealed[:12], sealed[12:], aad)
    except InvalidTag:
        raise WrongPin() from None
