"""Key generation, signing with every supported padding/curve, and use by x509 builders."""

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from hsm import (
    HsmECPrivateKey,
    HsmError,
    HsmRSAPrivateKey,
    KeyNotExportable,
    KeyNotFound,
    KeySpec,
)

DATA = b"Quyet dinh so 123/QD-UBND"
RSA_NAMES = ["rsa-2048", "rsa-3072", "rsa-4096"]
PSS_SALTS = [padding.PSS.DIGEST_LENGTH, padding.PSS.MAX_LENGTH, 0, 20]


def test_generated_keys_match_spec(keys):
    for name, key in keys.items():
        spec = KeySpec.parse(name)
        assert key.spec == spec and key.label == f"key-{name}" and len(key.key_id) == 16
        if spec.kind == "rsa":
            assert isinstance(key, HsmRSAPrivateKey) and isinstance(key, rsa.RSAPrivateKey)
            assert key.key_size == spec.bits == key.public_key().key_size
        else:
            assert isinstance(key, HsmECPrivateKey) and isinstance(key, ec.EllipticCurvePrivateKey)
            assert key.curve.name == spec.curve.name and key.key_size == spec.bits


@pytest.mark.parametrize("name", RSA_NAMES)
@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384(), hashes.SHA512()])
def test_rsa_pkcs1v15(keys, name, algorithm):
    key = keys[name]
    signature = key.sign(DATA, padding.PKCS1v15(), algorithm)
    key.public_key().verify(signature, DATA, padding.PKCS1v15(), algorithm)


@pytest.mark.parametrize("salt", PSS_SALTS)
@pytest.mark.parametrize("algorithm", [hashes.SHA256(), hashes.SHA384()])
def test_rsa_pss(keys, salt, algorithm):
    key = keys["rsa-2048"]
    pss = padding.PSS(mgf=padding.MGF1(algorithm), salt_length=salt)
    signature = key.sign(DATA, pss, algorithm)
    key.public_key().verify(signature, DATA, pss, algorithm)
    if salt is padding.PSS.MAX_LENGTH:  # the salt really is the maximum, not just accepted
        strict = padding.PSS(padding.MGF1(algorithm), 2048 // 8 - algorithm.digest_size - 2)
        key.public_key().verify(signature, DATA, strict, algorithm)


def test_rsa_pss_auto_salt_refused(keys):
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.AUTO)
    with pytest.raises(ValueError):
        keys["rsa-2048"].sign(DATA, pss, hashes.SHA256())


@pytest.mark.parametrize(
    ("name", "algorithm"),
    [("ec-p256", hashes.SHA256()), ("ec-p384", hashes.SHA384()), ("ec-p256", hashes.SHA384())],
)
def test_ecdsa(keys, name, algorithm):
    key = keys[name]
    signature = key.sign(DATA, ec.ECDSA(algorithm))
    key.public_key().verify(signature, DATA, ec.ECDSA(algorithm))


def test_prehashed(keys):
    digest = hashlib.sha256(DATA).digest()
    pre = Prehashed(hashes.SHA256())
    ec_sig = keys["ec-p256"].sign(digest, ec.ECDSA(pre))
    keys["ec-p256"].public_key().verify(ec_sig, DATA, ec.ECDSA(hashes.SHA256()))
    rsa_key = keys["rsa-2048"]
    rsa_sig = rsa_key.sign(digest, padding.PKCS1v15(), pre)
    rsa_key.public_key().verify(rsa_sig, DATA, padding.PKCS1v15(), hashes.SHA256())
    pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
    pss_sig = rsa_key.sign(digest, pss, pre)
    rsa_key.public_key().verify(pss_sig, DATA, pss, hashes.SHA256())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


@pytest.mark.parametrize("name", ["rsa-2048", "ec-p256", "ec-p384"])
def test_certificate_crl_and_pss_certificate(keys, name):
    key = keys[name]
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(f"HSM {name}"))
        .issuer_name(_name(f"HSM {name}"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert.verify_directly_issued_by(cert)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(cert.subject)
        .last_update(now)
        .next_update(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    assert crl.is_signature_valid(key.public_key())
    if name.startswith("rsa"):
        pss = padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH)
        pss_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("pss"))
            .issuer_name(cert.subject)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256(), rsa_padding=pss)
        )
        pss_cert.verify_directly_issued_by(cert)


def test_ocsp_response_signed_by_hsm_key(keys):
    from cryptography.x509 import ocsp

    key = keys["ec-p256"]
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    cert = (
        x509.CertificateBuilder().subject_name(_name("ocsp")).issuer_name(_name("ocsp"))
        .public_key(key.public_key()).serial_number(7).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256())
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(cert, cert, hashes.SHA1(), ocsp.OCSPCertStatus.GOOD, now,
                      now + dt.timedelta(hours=1), None, None)
        .responder_id(ocsp.OCSPResponderEncoding.HASH, cert)
        .sign(key, hashes.SHA256())
    )
    key.public_key().verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256())
    )


def test_private_material_not_exportable(keys):
    for key in keys.values():
        with pytest.raises(KeyNotExportable):
            key.private_numbers()
        with pytest.raises(KeyNotExportable):
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


def test_find_key_by_label_and_id(token, keys):
    for name, key in keys.items():
        by_label = token.find_key(label=f"key-{name}")
        by_id = token.find_key(key_id=key.key_id)
        assert by_label.key_id == by_id.key_id == key.key_id
        assert by_label.spec == key.spec
        assert by_label.public_key() == key.public_key()
        sig = by_id.sign(DATA, ec.ECDSA(hashes.SHA256())) if key.spec.kind == "ec" else (
            by_id.sign(DATA, padding.PKCS1v15(), hashes.SHA256()))
        assert sig
    assert token.has_key("key-ec-p256") and not token.has_key("no-such-key")


def test_key_not_found(token):
    with pytest.raises(KeyNotFound) as info:
        token.find_key(label="no-such-key")
    assert info.value.http_status == 404 and info.value.code
    with pytest.raises(KeyNotFound):
        token.find_key(key_id=b"\x00" * 16)


def test_refuses_to_recreate_label(token, keys):
    before = keys["ec-p256"].public_key()
    with pytest.raises(HsmError) as info:
        token.generate_key_pair(KeySpec.parse("ec-p256"), "key-ec-p256")
    assert info.value.code == "hsm_key_exists"
    with pytest.raises(HsmError):
        token.generate_key_pair(KeySpec.parse("rsa-2048"), "key-ec-p256")
    assert token.find_key(label="key-ec-p256").public_key() == before


def test_explicit_key_id(token):
    key = token.generate_key_pair(KeySpec.parse("ec-p256"), "explicit-id", key_id=b"kid-1")
    assert key.key_id == b"kid-1"
    assert token.find_key(key_id=b"kid-1").label == "explicit-id"
