"""TimestampAuthority on its own (software keys, an injected clock and ledger): certificate
checks, serial retries, failures inside answered as systemFailure, and the [tsa] settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from asn1crypto import tsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kyso.settings import SettingsError, load_settings
from signer.errors import TsaRejected, TsaUnavailable
from signer.tsa import (
    DuplicateSerial,
    LedgerEntry,
    TimestampAuthority,
    TsaPolicy,
    response_status,
)

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
POLICY = TsaPolicy("1.3.6.1.4.1.32473.3161.1", accuracy_seconds=0, accuracy_millis=500)


def _cert(key: ec.EllipticCurvePrivateKey, eku: list[x509.ObjectIdentifier] | None,
          critical: bool = True, days: int = 30) -> x509.Certificate:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tsa")])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
               .public_key(key.public_key()).serial_number(7)
               .not_valid_before(T0 - timedelta(days=1))
               .not_valid_after(T0 + timedelta(days=days)))
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical)
    return builder.sign(ca_key, hashes.SHA256())


class Ledger:
    def __init__(self, duplicates: int = 0, broken: bool = False) -> None:
        self.entries: list[LedgerEntry] = []
        self.duplicates = duplicates
        self.broken = broken

    def record(self, entry: LedgerEntry) -> None:
        if self.broken:
            raise RuntimeError("database is down")
        if self.duplicates:
            self.duplicates -= 1
            raise DuplicateSerial(entry.serial)
        self.entries.append(entry)


def _tsa(ledger: Ledger, clock: datetime = T0) -> TimestampAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    return TimestampAuthority(key, _cert(key, [ExtendedKeyUsageOID.TIME_STAMPING]), [],
                              POLICY, ledger, clock=lambda: clock)


def _tst(der: bytes) -> tsp.TSTInfo:
    token = tsp.TimeStampResp.load(der)["time_stamp_token"]
    return token["content"]["encap_content_info"]["content"].parsed


def test_gen_time_from_the_clock_truncated_to_the_accuracy() -> None:
    ledger = Ledger()
    stamp = _tsa(ledger).timestamp(b"\x01" * 32)
    info = _tst(stamp.response)
    assert info["gen_time"].native == T0.replace(microsecond=123000)
    assert info["accuracy"].native == {"seconds": None, "millis": 500, "micros": None}
    assert ledger.entries[0].serial == stamp.serial_hex
    assert ledger.entries[0].gen_time == stamp.gen_time


def test_a_duplicate_serial_is_drawn_again() -> None:
    ledger = Ledger(duplicates=2)
    stamp = _tsa(ledger).timestamp(b"\x01" * 48, "sha384")
    assert [e.serial for e in ledger.entries] == [stamp.serial_hex]


def test_failures_inside_are_system_failure_never_exceptions() -> None:
    request = tsp.TimeStampReq({"version": "v1", "message_imprint": {
        "hash_algorithm": {"algorithm": "sha256"}, "hashed_message": b"\x01" * 32}}).dump()
    broken = response_status(_tsa(Ledger(broken=True)).respond(request))
    assert broken.status == "rejection" and broken.failures == {"system_failure"}
    # Past the certificate's notAfter: nothing is signed.
    late = _tsa(Ledger(), clock=T0 + timedelta(days=31))
    assert response_status(late.respond(request)).failures == {"system_failure"}
    with pytest.raises(TsaUnavailable, match="not valid now"):
        late.timestamp(b"\x01" * 32)


def test_in_process_rejections_raise() -> None:
    tsa = _tsa(Ledger())
    with pytest.raises(TsaRejected) as exc:
        tsa.timestamp(b"\x01" * 20, "sha1")
    assert exc.value.failure == "bad_alg"
    with pytest.raises(TsaRejected) as exc:
        tsa.timestamp(b"\x01" * 31)
    assert exc.value.failure == "bad_data_format"
    with pytest.raises(TsaRejected) as exc:
        tsa.timestamp(b"\x01" * 32, req_policy="1.2.3")
    assert exc.value.failure == "unaccepted_policy"


@pytest.mark.parametrize("eku, critical, message", [
    (None, True, "no extended key usage"),
    ([ExtendedKeyUsageOID.TIME_STAMPING], False, "alone and critical"),
    ([ExtendedKeyUsageOID.TIME_STAMPING, ExtendedKeyUsageOID.CODE_SIGNING], True,
     "alone and critical"),
])
def test_only_a_tsa_certificate_is_accepted(eku: list[x509.ObjectIdentifier] | None,
                                            critical: bool, message: str) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TsaUnavailable, match=message):
        TimestampAuthority(key, _cert(key, eku, critical), [], POLICY, Ledger())


def test_the_certificate_must_be_for_the_key() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(TsaUnavailable, match="not for the TSA key"):
        TimestampAuthority(key, _cert(other, [ExtendedKeyUsageOID.TIME_STAMPING]), [],
                           POLICY, Ledger())


@pytest.mark.parametrize("name, value", [
    ("KYSO_TSA_POLICY_OID", "not-an-oid"),
    ("KYSO_TSA_ACCURACY_SECONDS", "0"),
    ("KYSO_TSA_ACCURACY_MILLIS", "1000"),
    ("KYSO_TSA_MAX_REQUEST_BYTES", "10"),
    ("KYSO_TSA_CERTIFICATE_SERIAL", "ABC"),
])
def test_tsa_settings_refuse_what_is_wrong(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match="tsa"):
        load_settings(environ={name: value})


def test_tsa_settings_defaults_and_overrides() -> None:
    settings = load_settings(environ={"KYSO_TSA_ACCURACY_MILLIS": "250",
                                      "KYSO_TSA_INCLUDE_CHAIN": "false"})
    assert settings.tsa.key_label == "tsa-issuing"
    assert settings.tsa.accuracy_millis == 250
    assert settings.tsa.include_chain is False
