"""Officials' keys: generated in the HSM, kept only wrapped outside it, unwrapped per use."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding

from hsm import HsmError, KeyNotExportable, KeyNotFound, KeySpec

WK = "official-wrap"
DATA = b"Van ban can ky"


@pytest.fixture(scope="module")
def wrapping_key(token):
    token.ensure_wrapping_key(WK)
    token.ensure_wrapping_key(WK)  # idempotent
    return WK


def _sign_and_verify(key, public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        ecdsa = ec.ECDSA(hashes.SHA256())
        public_key.verify(key.sign(DATA, ecdsa), DATA, ecdsa)
    else:
        sig = key.sign(DATA, padding.PKCS1v15(), hashes.SHA256())
        public_key.verify(sig, DATA, padding.PKCS1v15(), hashes.SHA256())


def test_wrapping_key_attributes(token, wrapping_key):
    attrs = token.key_attributes(wrapping_key)
    assert attrs["wrap"] and attrs["unwrap"]
    assert not attrs["encrypt"] and not attrs["decrypt"] and not attrs["sign"]
    assert attrs["sensitive"] and attrs["never_extractable"] and not attrs["extractable"]
    assert attrs["token"] and attrs["private"]


@pytest.mark.parametrize("name", ["ec-p256", "ec-p384", "rsa-2048"])
def test_round_trip_and_nothing_left_behind(token, wrapping_key, token_objects, name):
    spec = KeySpec.parse(name)
    before = token_objects()
    blob, public_key = token.generate_wrapped_key_pair(spec, wrapping_key)
    assert token_objects() == before  # session objects are gone, nothing stored
    assert public_key.public_bytes  # a plain cryptography public key
    for _ in range(2):  # the blob can be used again and again
        with token.unwrapped_key(blob, spec, wrapping_key, public_key=public_key) as key:
            assert key.spec == spec and key.public_key() == public_key
            _sign_and_verify(key, public_key)
            with pytest.raises(KeyNotExportable):
                key.private_numbers()
    assert token_objects() == before


def test_unwrapped_key_is_locked_down(token, wrapping_key):
    spec = KeySpec.parse("ec-p256")
    blob, public_key = token.generate_wrapped_key_pair(spec, wrapping_key)
    import pkcs11
    from pkcs11 import Attribute

    with token.unwrapped_key(blob, spec, wrapping_key) as key:
        _sign_and_verify(key, public_key)
        # Look at the session object itself, through the held session.
        cells = key._signer.__closure__ or ()
        objs = [c.cell_contents for c in cells if isinstance(c.cell_contents, pkcs11.Key)]
        (obj,) = objs
        assert obj[Attribute.TOKEN] is False
        assert obj[Attribute.SENSITIVE] is True and obj[Attribute.EXTRACTABLE] is False
        assert obj[Attribute.SIGN] is True and obj[Attribute.DECRYPT] is False
        assert obj[Attribute.UNWRAP] is False and obj[Attribute.DERIVE] is False


def test_wrong_wrapping_key(token, wrapping_key):
    spec = KeySpec.parse("ec-p256")
    blob, _ = token.generate_wrapped_key_pair(spec, wrapping_key)
    with pytest.raises(KeyNotFound):
        token.generate_wrapped_key_pair(spec, "no-such-wrapping-key")
    with pytest.raises(KeyNotFound), token.unwrapped_key(blob, spec, "no-such-wrapping-key"):
        pass
    token.ensure_wrapping_key("other-wrap")
    with pytest.raises(HsmError), token.unwrapped_key(blob, spec, "other-wrap"):
        pass
    with pytest.raises(HsmError), token.unwrapped_key(blob, KeySpec.parse("ec-p384"), wrapping_key):
        pass
    with pytest.raises(HsmError), token.unwrapped_key(blob[:-8], spec, wrapping_key):
        pass


def test_trusted_wrapping_key(token, token_objects):
    # Needs the SO PIN (SoftHSM2 lets only the SO set CKA_TRUSTED, on public objects only).
    token.ensure_wrapping_key("trusted-wrap", trusted=True)
    token.ensure_wrapping_key("trusted-wrap", trusted=True)
    attrs = token.key_attributes("trusted-wrap")
    assert attrs["trusted"] and attrs["wrap"] and not attrs["private"]
    assert attrs["never_extractable"] and not attrs["encrypt"]
    spec = KeySpec.parse("ec-p256")
    before = token_objects()
    blob, public_key = token.generate_wrapped_key_pair(spec, "trusted-wrap")
    assert token_objects() == before
    with token.unwrapped_key(blob, spec, "trusted-wrap", public_key=public_key) as key:
        _sign_and_verify(key, public_key)
