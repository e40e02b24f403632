"""Revocation (every RFC 5280 reason, hold and release) and renewal (same key or rekey)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
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


def _requests(authority, n: int):  # type: ignore[no-untyped-def]
    from helpers import OFFICIAL_SUBJECT

    csr = make_csr()
    return [authority.request_from_csr("official-signing", csr, OFFICIAL_SUBJECT,
                                       emails=(f"user{i}@example.vn",)) for i in range(n)]


def test_batch_issuance_in_chunks_with_the_lint_pool(authority):
    """Large enough for the lint worker processes and several pipelined chunks."""
    issued = authority.issue_batch("issuing", _requests(authority, 45), chunk_size=20)
    assert len({i.serial for i in issued}) == 45
    for i in issued:
        record = authority.certificate(i.serial)
        assert record.status == "valid" and record.lint_der is not None
        assert record.cert_der == i.certificate.public_bytes(serialization.Encoding.DER)
    emails = [i.certificate.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value for i in issued]
    assert [e[0].value for e in emails] == [f"user{n}@example.vn" for n in range(45)]


def test_a_refused_batch_issues_nothing(authority, counts):
    requests = _requests(authority, 3)
    bad = requests[1].__class__(**{**requests[1].__dict__, "emails": ()})  # profile needs one
    before = counts()
    with pytest.raises(InvalidRequest, match="e-mail"):
        authority.issue_batch("issuing", [requests[0], bad, requests[2]])
    assert counts() == before


def test_hsm_failure_mid_batch_records_signed_and_failed(authority, monkeypatch):
    from ca import store
    from hsm import TokenUnavailable

    issuer = authority.issuer("issuing")
    real_sign = type(issuer.key).sign
    calls = {"n": 0}

    def flaky(self, data, algorithm):
        calls["n"] += 1
        if calls["n"] > 25:
            raise TokenUnavailable()
        return real_sign(self, data, algorithm)

    monkeypatch.setattr(type(issuer.key), "sign", flaky)
    with authority.readers() as s:
        failed_before = len(store.list_certificates(s, status="failed"))
    with pytest.raises(TokenUnavailable):
        authority.issue_batch("issuing", _requests(authority, 40), chunk_size=10)
    with authority.readers() as s:
        failed = store.list_certificates(s, status="failed")
        pending = store.list_certificates(s, status="pending")
    # 25 signed and stored; every other reservation is marked failed, none left pending.
    assert len(failed) - failed_before == 15
    assert pending == []
