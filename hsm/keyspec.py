"""Key specifications understood by the HSM layer: "rsa-2048" … "ec-p384"."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec

from hsm.errors import HsmError

_CURVES: dict[str, tuple[type[ec.EllipticCurve], int, str]] = {
    # name -> (cryptography curve class, bits, named curve used in CKA_EC_PARAMS)
    "ec-p256": (ec.SECP256R1, 256, "secp256r1"),
    "ec-p384": (ec.SECP384R1, 384, "secp384r1"),
}
_RSA_BITS = {"rsa-2048": 2048, "rsa-3072": 3072, "rsa-4096": 4096}


class UnknownKeySpec(HsmError):
    code = "hsm_unknown_key_spec"
    http_status = 400
    default_message = "unknown key specification"


@dataclass(frozen=True)
class KeySpec:
    """A key algorithm and size. Build with ``KeySpec.parse("ec-p256")``."""

    name: str
    kind: str  # "rsa" or "ec"
    bits: int

    NAMES = (*_RSA_BITS, *_CURVES)

    @classmethod
    def parse(cls, text: str) -> KeySpec:
        name = text.strip().lower()
        if name in _RSA_BITS:
            return cls(name=name, kind="rsa", bits=_RSA_BITS[name])
        if name in _CURVES:
            return cls(name=name, kind="ec", bits=_CURVES[name][1])
        raise UnknownKeySpec(f"unknown key spec {text!r}; expected one of {', '.join(cls.NAMES)}")

    @property
    def curve(self) -> ec.EllipticCurve | None:
        """A cryptography curve instance for EC specs, None for RSA."""
        return _CURVES[self.name][0]() if self.kind == "ec" else None

    @property
    def curve_name(self) -> str | None:
        """The named curve ("secp256r1") for EC specs, None for RSA."""
        return _CURVES[self.name][2] if self.kind == "ec" else None

    def __str__(self) -> str:
        return self.name
