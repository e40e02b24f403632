import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from hsm import HsmError, KeySpec


def test_parse_all_names():
    assert [KeySpec.parse(n).name for n in KeySpec.NAMES] == [
        "rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384"
    ]
    rsa = KeySpec.parse("RSA-3072")
    assert (rsa.kind, rsa.bits, rsa.curve) == ("rsa", 3072, None)
    p384 = KeySpec.parse("ec-p384")
    assert p384.kind == "ec" and p384.bits == 384 and isinstance(p384.curve, ec.SECP384R1)


def test_unknown_spec():
    with pytest.raises(HsmError) as info:
        KeySpec.parse("dsa-1024")
    assert info.value.http_status == 400
