"""Revocation (every RFC 5280 reason, hold and release) and renewal (same key or rekey)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from helpers import issue_official_csr, make_csr

from ca.authority import REASONS
from ca.errors import InvalidRequest, NotFound, StateConflict
from ca.issuance import spki_sha256


@pytest.mark.parametrize("reason", [r for r in REASONS if r != "certificatehold"])
def test_revoke_with_every_reason(authority, reason):
    issued = issue_official_csr(authority)
    rec = authority.revoke(issued.serial, reason)
    assert rec.status == "revoked"
    assert rec.revocation_reason == REASONS[reason].value
    assert authority.certificate(issued.serial).revoked_at is not None


def test_reason_names_are_forgiving_but_unknown_ones_are_refused(authority):
    issued = issue_official_csr(authority)
    assert authority.revoke(issued.serial.upper(), "key-compromise").revocation_reason == \
        "keyCompromise"
    other = issue_official_csr(authority)
    with pytest.raises(InvalidRequest, match="keyCompromise"):
        authority.revoke(other.serial, "lost-my-laptop")
    assert authority.certificate(other.serial).status == "valid"


def test_revoking_twice_is_a_clear_error(authority):
    issued = issue_official_csr(authority)
    authority.revoke(issued.serial, "superseded")
    with pytest.raises(StateConflict, match="already revoked"):
        authority.revoke(issued.serial, "keyCompromise")
    assert authority.certificate(issued.serial).revocation_reason == "superseded"


def test_unknown_or_malformed_serial(authority, counts):
    before = counts()
    with pytest.raises(NotFound, match="no certificate"):
        authority.revoke("0123456789abcdef", "unspecified")
    with pytest.raises(InvalidRequest, match="not a certificate serial"):
        authority.revoke("xyz", "unspecified")
    assert counts() == before


def test_invalidity_date_is_kept_and_cannot_be_in_the_future(authority):
    issued = issue_official_csr(authority)
    with pytest.raises(InvalidRequest, match="future"):
        authority.revoke(issued.serial, "keyCompromise",
                         invalidity_date=datetime.now(UTC) + timedelta(days=1))
    when = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    rec = authority.revoke(issued.serial, "keyCompromise", invalidity_date=when)
    assert rec.invalidity_date == when


def test_hold_and_release(authority):
    issued = issue_official_csr(authority)
    held = authority.revoke(issued.serial, "certificateHold")
    assert held.status == "hold" and held.revocation_reason == "certificateHold"
    with pytest.raises(StateConflict):
        authority.hold(issued.serial)
    released = authority.release(issued.serial)
    assert released.status == "valid" and released.revoked_at is None
    with pytest.raises(StateConflict, match="not on hold"):
        authority.release(issued.serial)


def test_held_certificate_revoked_for_good_keeps_its_hold_time(authority):
    issued = issue_official_csr(authority)
    held_at = authority.hold(issued.serial).revoked_at
    rec = authority.revoke(issued.serial, "keyCompromise")
    assert rec.status == "revoked" and rec.revoked_at == held_at


def test_renew_same_key_links_the_predecessor(authority):
    old = issue_official_csr(authority)
    new = authority.renew(old.serial)
    assert new.serial != old.serial
    assert new.subject == old.subject
    assert spki_sha256(new.certificate.public_key()) == spki_sha256(old.certificate.public_key())
    record = authority.certificate(new.serial)
    assert record.predecessor_id == authority.certificate(old.serial).id
    assert new.certificate.not_valid_after_utc >= old.certificate.not_valid_after_utc
    assert authority.certificate(old.serial).status == "valid"  # revoking it is issue 7's batch


def test_rekey_needs_a_new_csr(authority):
    old = issue_official_csr(authority)
    with pytest.raises(InvalidRequest, match="CSR"):
        authority.renew(old.serial, rekey=True)
    new = authority.renew(old.serial, rekey=True, csr=make_csr(ec.generate_private_key(
        ec.SECP384R1())))
    assert spki_sha256(new.certificate.public_key()) != spki_sha256(old.certificate.public_key())


def test_revoked_certificate_cannot_be_renewed(authority):
    old = issue_official_csr(authority)
    authority.revoke(old.serial, "keyCompromise")
    with pytest.raises(StateConflict, match="revoked"):
        authority.renew(old.serial)
