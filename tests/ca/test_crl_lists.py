"""CRLs at the library level: full and delta contents, numbering that survives failures, what
the schedule finds due. (Serving and openssl checks: tests/web/test_crl.py.)"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from helpers import issue_official_csr

from ca.crl import CrlPolicy, CrlService, generate, latest
from ca.errors import InvalidRequest
from ca.lint import lint_crl

POLICY = CrlPolicy(after_change=timedelta(0))


@pytest.fixture(scope="module")
def crl_ca(kyso_app):  # type: ignore[no-untyped-def]
    """A CA of its own, so other tests' revocations do not show up here."""
    kyso_app.authority.create_issuing("crl-test", "CN=CRL Test CA,O=Kyso Test,C=VN",
                                      parent="root", key_spec="ec-p256")
    return "crl-test"


@pytest.fixture()
def service(kyso_app) -> CrlService:  # type: ignore[no-untyped-def]
    return CrlService(kyso_app.authority, kyso_app.sessions, kyso_app.readers, POLICY,
                      kyso_app.settings.publish_dir)


def number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def entry(crl: x509.CertificateRevocationList, serial: str) -> x509.RevokedCertificate | None:
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16))


def reason(revoked: x509.RevokedCertificate) -> x509.ReasonFlags:
    return revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason


def make(service: CrlService, ca: str) -> dict[str, x509.CertificateRevocationList]:
    return {c.kind: x509.load_der_x509_crl(c.der) for c in service.generate(ca)}


def test_full_and_delta_crls_follow_revoke_hold_and_release(
        kyso_app, authority, service: CrlService, crl_ca: str) -> None:  # type: ignore[no-untyped-def]
    issuer_cert = authority.issuer(crl_ca).certificate
    first = make(service, crl_ca)
    assert set(first) == {"full"} and len(first["full"]) == 0  # no earlier full CRL: no delta
    revoked = issue_official_csr(authority, crl_ca)
    held = issue_official_csr(authority, crl_ca)
    compromised_since = authority.clock() - timedelta(days=2)
    authority.revoke(revoked.serial, "keyCompromise", invalidity_date=compromised_since)
    authority.hold(held.serial)

    second = make(service, crl_ca)
    full, delta = second["full"], second["delta"]
    # Issued together: the same number and thisUpdate, and the same information (5.2.3).
    assert number(full) == number(delta) == number(first["full"]) + 1
    assert full.last_update_utc == delta.last_update_utc
    indicator = delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    assert indicator.critical and indicator.value.crl_number == number(first["full"])
    for crl in (full, delta):
        gone = entry(crl, revoked.serial)
        assert gone is not None and reason(gone) is x509.ReasonFlags.key_compromise
        invalidity = gone.extensions.get_extension_for_class(x509.InvalidityDate).value
        assert invalidity.invalidity_date_utc == compromised_since.replace(microsecond=0)
        on_hold = entry(crl, held.serial)
        assert on_hold is not None and reason(on_hold) is x509.ReasonFlags.certificate_hold

    authority.release(held.serial)
    third = make(service, crl_ca)
    released = entry(third["delta"], held.serial)
    assert released is not None and reason(released) is x509.ReasonFlags.remove_from_crl
    assert entry(third["delta"], revoked.serial) is None  # no change since the base
    assert entry(third["full"], revoked.serial) is not None
    assert entry(third["full"], held.serial) is None
    for crl in (first["full"], full, delta, third["full"], third["delta"]):
        assert crl.is_signature_valid(issuer_cert.public_key())  # type: ignore[arg-type]
        assert crl.issuer == issuer_cert.subject
        assert lint_crl(crl.public_bytes(serialization.Encoding.DER)).ok


def test_rsa_ca_crl_verifies(authority, service: CrlService) -> None:  # type: ignore[no-untyped-def]
    crl = make(service, "issuing-rsa")["full"]
    assert crl.is_signature_valid(authority.issuer("issuing-rsa").certificate.public_key())


def test_a_failed_signature_never_gives_its_number_away(kyso_app, authority,  # type: ignore[no-untyped-def]
                                                         crl_ca: str) -> None:
    good = authority.issuer(crl_ca)

    class Broken:
        """The HSM fails in the middle of signing."""

        def public_key(self):  # type: ignore[no-untyped-def]
            return good.key.public_key()

        def sign(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError("HSM went away")

    with kyso_app.readers() as s:
        before = latest(s, good.record_id).number  # type: ignore[union-attr]
    broken = dataclasses.replace(good, key=Broken())
    with pytest.raises(OSError):
        generate(kyso_app.sessions, broken, now=authority.clock(), next_update=timedelta(1),
                 actor="test")
    crls = generate(kyso_app.sessions, good, now=authority.clock(), next_update=timedelta(1),
                    actor="test")
    assert crls and crls[0].number == before + 2  # before + 1 stays reserved, unused
    with kyso_app.readers() as s:
        assert latest(s, good.record_id).number == before + 2  # type: ignore[union-attr]


def test_the_schedule_finds_changes_and_expiry(kyso_app, authority, crl_ca: str) -> None:  # type: ignore[no-untyped-def]
    service = CrlService(authority, kyso_app.sessions, kyso_app.readers, POLICY,
                         kyso_app.settings.publish_dir)
    service.run_due()
    made = [c for c in service.run_due() if c.ca_name == crl_ca]
    assert made == []  # nothing changed since
    cert = issue_official_csr(authority, crl_ca)
    authority.revoke(cert.serial, "superseded")
    made = [c for c in service.run_due() if c.ca_name == crl_ca]
    assert sorted(c.kind for c in made) == ["delta", "full"]
    full = next(c for c in made if c.kind == "full")
    delta = next(c for c in made if c.kind == "delta")
    assert entry(x509.load_der_x509_crl(full.der), cert.serial) is not None
    assert entry(x509.load_der_x509_crl(delta.der), cert.serial) is not None
    assert delta.number == full.number and delta.base_number < full.number
    # A CRL close to its nextUpdate is refreshed even without a change.
    later = CrlService(authority, kyso_app.sessions, kyso_app.readers, POLICY,
                       kyso_app.settings.publish_dir,
                       clock=lambda: authority.clock() + timedelta(hours=30))
    assert "full" in {c.kind for c in later.run_due() if c.ca_name == crl_ca}


def test_offline_or_unknown_cas_and_bad_requests(kyso_app, crl_ca: str) -> None:  # type: ignore[no-untyped-def]
    issuer = kyso_app.authority.issuer(crl_ca)
    with pytest.raises(InvalidRequest, match="nextUpdate"):
        generate(kyso_app.sessions, issuer, now=kyso_app.authority.clock(),
                 next_update=timedelta(0), actor="test")
