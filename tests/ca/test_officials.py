"""Sole control: an official's key signs only with their PIN, and never leaves in clear."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11_tool import list_objects

from ca import store
from ca.errors import InvalidRequest, KeyLocked, PinIncorrect, StateConflict
from ca.issuance import spki_sha256
from hsm import HsmError

PIN = "246813579"
DOCUMENT = "Quyết định số 123/QĐ-UBND".encode()


def add(authority, pin: str = PIN, **kw):  # type: ignore[no-untyped-def]
    fields = dict(name="Trần Văn Bình", organization="Ủy ban nhân dân phường Bến Thành",
                  unit="Văn phòng", locality="Thành phố Hồ Chí Minh",
                  email="binh@benthanh.hochiminhcity.gov.vn", title="Phó Chủ tịch",
                  ca_name="issuing")
    fields.update(kw)
    return authority.add_official(pin=pin, **fields)


def sign_with(authority, official_id: int, pin: str, data: bytes = DOCUMENT) -> bytes:
    with authority.official_signing_key(official_id, pin) as key:
        return key.sign(data, ec.ECDSA(hashes.SHA256()))


def test_official_gets_a_certificate_for_an_hsm_key(authority):
    new = add(authority)
    cert = new.certificate.certificate
    assert "Trần Văn Bình" in new.certificate.subject
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["binh@benthanh.hochiminhcity.gov.vn"]
    signature = sign_with(authority, new.official_id, PIN)
    cert.public_key().verify(signature, DOCUMENT, ec.ECDSA(hashes.SHA256()))
    record = authority.certificate(new.certificate.serial)
    assert record.official_id == new.official_id and record.profile == "official-signing"


def test_rsa_official_key(authority):
    from cryptography.hazmat.primitives.asymmetric import padding

    new = add(authority, key_spec="rsa-2048")
    with authority.official_signing_key(new.official_id, PIN) as key:
        sig = key.sign(DOCUMENT, padding.PKCS1v15(), hashes.SHA256())
    new.certificate.certificate.public_key().verify(sig, DOCUMENT, padding.PKCS1v15(),
                                                     hashes.SHA256())


def test_everything_but_the_pin_cannot_sign(authority, kyso_app):
    """An attacker with the database, var/ and the token's user PIN, but not the official's PIN."""
    new = add(authority)
    with kyso_app.sessions() as s:
        key_rec = store.active_official_key(s, new.official_id)
        sealed = key_rec.sealed_key
    token = kyso_app.token()
    from hsm import KeySpec

    # The stored blob is sealed under the PIN-derived key: the HSM cannot unwrap it as is ...
    for candidate in (sealed, sealed[12:], sealed[12:-16]):
        with pytest.raises(HsmError), token.unwrapped_key(
            candidate, KeySpec.parse("ec-p256"), authority.wrapping_key_label
        ) as key:
            key.sign(DOCUMENT, ec.ECDSA(hashes.SHA256()))
    # ... and guessing PINs through kyso fails, is counted, then locks the key.
    for guess in ("000000", "123456", "654321", "111111a"):
        with pytest.raises(PinIncorrect, match="attempt"):
            sign_with(authority, new.official_id, guess)
    with pytest.raises(KeyLocked):
        sign_with(authority, new.official_id, "1234567")
    # Locked means locked, even for the right PIN, until an operator unlocks (audited).
    with pytest.raises(KeyLocked):
        sign_with(authority, new.official_id, PIN)
    authority.unlock_official(new.official_id)
    with pytest.raises(StateConflict):
        authority.unlock_official(new.official_id)
    sign_with(authority, new.official_id, PIN)
    with kyso_app.sessions() as s:
        from ca.models import AuditEventRecord

        actions = [e.action for e in s.query(AuditEventRecord).filter_by(
            object=f"official:{new.official_id}")]
    assert "official.key.lock" in actions and "official.key.unlock" in actions
    assert actions.count("official.key.open") == 7


def test_a_right_pin_resets_the_failure_count(authority, kyso_app):
    new = add(authority)
    for _ in range(4):
        with pytest.raises(PinIncorrect):
            sign_with(authority, new.official_id, "wrong-pin")
    sign_with(authority, new.official_id, PIN)
    with kyso_app.sessions() as s:
        assert store.get_official(s, new.official_id).failed_pin_attempts == 0


def test_sealed_keys_are_bound_to_their_official(authority, kyso_app):
    """Swapping sealed blobs between officials (same PIN even) lets no one sign as another."""
    a, b = add(authority), add(authority, name="Lê Thị Cúc", email="cuc@example.vn")
    with kyso_app.sessions.begin() as s:
        ka = store.active_official_key(s, a.official_id)
        kb = store.active_official_key(s, b.official_id)
        ka.sealed_key, kb.sealed_key = kb.sealed_key, ka.sealed_key
        ka.kdf_salt, kb.kdf_salt = kb.kdf_salt, ka.kdf_salt
    with pytest.raises(PinIncorrect):
        sign_with(authority, a.official_id, PIN)


def test_no_official_key_in_clear_in_the_token(authority, kyso_app, ca_softhsm):
    before = _objects(ca_softhsm)
    new = add(authority)
    sign_with(authority, new.official_id, PIN)
    after = _objects(ca_softhsm)
    # Only session objects ever held the official's key: the token gained nothing.
    assert after == before
    token = kyso_app.token()
    attrs = token.key_attributes(authority.wrapping_key_label)
    assert attrs["sensitive"] and not attrs["extractable"]


def test_pin_never_stored_and_policy(authority, kyso_app, counts):
    before = counts()
    for bad in ("12345", "aaaaaaaa"):
        with pytest.raises(InvalidRequest, match="PIN"):
            add(authority, pin=bad)
    assert counts() == before
    add(authority, pin="pin-that-is-unique-9182")
    with kyso_app.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM official_keys").fetchall()
    dump = b"".join(bytes(str(row), "utf-8") for row in rows)
    assert b"pin-that-is-unique-9182" not in dump


def test_rekey_for_an_official_needs_the_pin(authority):
    new = add(authority)
    with pytest.raises(InvalidRequest, match="PIN"):
        authority.renew(new.certificate.serial, rekey=True)
    with pytest.raises(PinIncorrect):
        authority.renew(new.certificate.serial, rekey=True, pin="not-the-pin")
    renewed = authority.renew(new.certificate.serial, rekey=True, pin=PIN)
    assert spki_sha256(renewed.certificate.public_key()) != spki_sha256(
        new.certificate.certificate.public_key())
    # The new key signs with the same PIN; the old certificate's key is retired.
    sig = sign_with(authority, new.official_id, PIN)
    renewed.certificate.public_key().verify(sig, DOCUMENT, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        new.certificate.certificate.public_key().verify(sig, DOCUMENT, ec.ECDSA(hashes.SHA256()))


def test_bad_official_data_touches_nothing(authority, ca_softhsm, counts):
    authority.token.ensure_wrapping_key(authority.wrapping_key_label)
    before, objects_before = counts(), _objects(ca_softhsm)
    with pytest.raises(InvalidRequest):
        add(authority, email="not-an-email")
    with pytest.raises(Exception, match="C=VN|64"):
        add(authority, organization="x" * 200)
    assert counts() == before
    assert _objects(ca_softhsm) == objects_before


def _objects(softhsm) -> str:  # type: ignore[no-untyped-def]
    from ca_test_constants import USER_PIN

    return list_objects(softhsm.module, softhsm.label, USER_PIN, softhsm.env())


def test_certificate_public_key_matches_the_stored_key(authority, kyso_app):
    new = add(authority)
    with kyso_app.sessions() as s:
        key_rec = store.active_official_key(s, new.official_id)
    stored = serialization.load_der_public_key(key_rec.public_key_der)
    assert spki_sha256(stored) == spki_sha256(new.certificate.certificate.public_key())
