"""HSM-resident private keys exposed as cryptography private key objects (sign only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric import padding as _padding
from cryptography.hazmat.primitives.asymmetric.utils import (
    NoDigestInfo,
    Prehashed,
    encode_dss_signature,
)
from pkcs11 import MGF, Mechanism

from hsm.errors import KeyNotExportable, MechanismUnsupported
from hsm.keyspec import KeySpec

# (mechanism, data, mechanism_param) -> raw signature; supplied by Token, which owns sessions.
RawSigner = Callable[[Mechanism, bytes, Any], bytes]

# DER DigestInfo prefixes (RFC 8017 §9.2 note 1): PKCS#1 v1.5 signs prefix || digest.
_DIGEST_INFO = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_PSS_HASH = {
    "sha1": (Mechanism.SHA_1, MGF.SHA1),
    "sha224": (Mechanism.SHA224, MGF.SHA224),
    "sha256": (Mechanism.SHA256, MGF.SHA256),
    "sha384": (Mechanism.SHA384, MGF.SHA384),
    "sha512": (Mechanism.SHA512, MGF.SHA512),
}


def _digest(data: bytes, algorithm: hashes.HashAlgorithm | Prehashed) -> tuple[bytes, str]:
    """Hash in software (cheap) so one raw HSM mechanism serves every hash and Prehashed."""
    if isinstance(algorithm, Prehashed):
        if len(data) != algorithm.digest_size:
            raise ValueError("prehashed data length does not match the digest size")
        return bytes(data), algorithm._algorithm.name
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize(), algorithm.name


class HsmPrivateKey:
    """Common part of HSM keys: identity, cached public key and the raw signing callback."""

    def __init__(
        self,
        *,
        label: str | None,
        key_id: bytes,
        spec: KeySpec,
        public_key: Any,
        signer: RawSigner,
    ) -> None:
        self.label = label
        self.key_id = key_id
        self.spec = spec
        self._public_key = public_key
        self._signer = signer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} label={self.label!r} spec={self.spec.name}>"

    def private_numbers(self) -> Any:
        raise KeyNotExportable()

    def private_bytes(
        self,
        encoding: serialization.Encoding,
        format: serialization.PrivateFormat,
        encryption_algorithm: serialization.KeySerializationEncryption,
    ) -> bytes:
        raise KeyNotExportable()

    def __copy__(self) -> Any:
        return self

    def __deepcopy__(self, memo: dict) -> Any:
        return self


class HsmRSAPrivateKey(HsmPrivateKey, rsa.RSAPrivateKey):
    """RSA key in the HSM. PKCS#1 v1.5 and PSS; hashing is done here, signing in the HSM."""

    def public_key(self) -> rsa.RSAPublicKey:
        return self._public_key

    @property
    def key_size(self) -> int:
        return self._public_key.key_size

    def decrypt(self, ciphertext: bytes, padding: _padding.AsymmetricPadding) -> bytes:
        raise MechanismUnsupported("HSM keys are for signing only")

    def sign(
        self,
        data: bytes,
        padding: _padding.AsymmetricPadding,
        algorithm: hashes.HashAlgorithm | Prehashed | NoDigestInfo,
    ) -> bytes:
        if isinstance(padding, _padding.PKCS1v15):
            if isinstance(algorithm, NoDigestInfo):
                return self._signer(Mechanism.RSA_PKCS, bytes(data), None)
            digest, name = _digest(data, algorithm)
            prefix = _DIGEST_INFO.get(name)
            if prefix is None:
                raise MechanismUnsupported(f"hash {name} not supported for RSA PKCS#1 v1.5")
            return self._signer(Mechanism.RSA_PKCS, prefix + digest, None)
        if isinstance(padding, _padding.PSS):
            if isinstance(algorithm, NoDigestInfo):
                raise MechanismUnsupported("PSS needs a hash algorithm")
            digest, name = _digest(data, algorithm)
            if name not in _PSS_HASH:
                raise MechanismUnsupported(f"hash {name} not supported for RSA-PSS")
            mgf = padding.mgf
            if not isinstance(mgf, _padding.MGF1):
                raise MechanismUnsupported("only MGF1 is supported for RSA-PSS")
            mgf_name = mgf._algorithm.name
            if mgf_name not in _PSS_HASH:
                raise MechanismUnsupported(f"MGF1 hash {mgf_name} not supported")
            salt = self._pss_salt_length(padding, len(digest))
            param = (_PSS_HASH[name][0], _PSS_HASH[mgf_name][1], salt)
            return self._signer(Mechanism.RSA_PKCS_PSS, digest, param)
        raise MechanismUnsupported(f"padding {padding.name} not supported")

    def _pss_salt_length(self, pss: _padding.PSS, digest_len: int) -> int:
        salt = pss._salt_length
        # emLen = ceil((modBits - 1) / 8); the largest salt is emLen - hLen - 2 (RFC 8017 9.1.1).
        max_salt = math.ceil((self.key_size - 1) / 8) - digest_len - 2
        if isinstance(salt, _padding._MaxLength):
            return max_salt
        if isinstance(salt, _padding._DigestLength):
            return digest_len
        if isinstance(salt, _padding._Auto):
            raise ValueError("PSS salt length AUTO is only valid for verification")
        if not 0 <= salt <= max_salt:
            raise ValueError("PSS salt length too large for this key")
        return salt



class HsmECPrivateKey(HsmPrivateKey, ec.EllipticCurvePrivateKey):
    """EC key in the HSM. ECDSA: hash here, CKM_ECDSA in the HSM, DER-encode r||s."""

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public_key

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public_key.curve

    @property
    def key_size(self) -> int:
        return self._public_key.curve.key_size

    def exchange(self, algorithm: ec.ECDH, peer_public_key: ec.EllipticCurvePublicKey) -> bytes:
        raise MechanismUnsupported("HSM keys are for signing only")

    def sign(self, data: bytes, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise MechanismUnsupported("only ECDSA is supported")
        digest, _ = _digest(data, signature_algorithm.algorithm)
        raw = self._signer(Mechanism.ECDSA, digest, None)
        half = len(raw) // 2
        return encode_dss_signature(
            int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big")
        )
