"""Long-term validity: a B-LT/B-LTA document still verifies after its signer's certificate is
revoked later, with no OCSP/CRL source at all; a document signed after the revocation fails."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from signing_site import NHUNG, SigningSite, make_site

PG_SCHEMA = "kyso_signing_lt"

VERIFY_OFFLINE = """
import json, sys
from cryptography import x509
from signer.verify import verify_pdf
from signer.report import report_to_json
root = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
report = verify_pdf(open(sys.argv[2], "rb").read(), trust_roots=[root], revocation=None)
print(json.dumps(report_to_json(report)))
"""

# What someone holding the key (and its PIN) could do once the certificate is revoked, if
# kyso's own check did not stop them: sign with the library directly, timestamped by our TSA.
SIGN_BEHIND_KYSOS_BACK = """
import os, sys
from cryptography import x509
from kyso.app import Kyso
from kyso.settings import load_settings
from signer.pdfsign import DocumentSigner, InProcessTimeStamper, Level, SignRequest
app = Kyso(load_settings(os.environ["KYSO_CONFIG"]))
official_id, serial, pin = int(sys.argv[1]), sys.argv[2], sys.argv[3]
record = app.authority.certificate(serial)
cert = x509.load_der_x509_certificate(record.cert_der)
with app.authority.official_signing_key(official_id, pin) as key:
    signer = DocumentSigner(key, cert, app.authority.chain("issuing"),
                            timestamper=InProcessTimeStamper(app.tsa().respond))
    out = signer.sign(open(sys.argv[4], "rb").read(), SignRequest(level=Level.B_T))
open(sys.argv[5], "wb").write(out)
app.close()
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningSite]:
    yield make_site(tmp_path_factory.mktemp("signing-lt"), PG_SCHEMA)


def verify_offline(site: SigningSite, pdf: Path) -> dict:  # type: ignore[type-arg]
    root = site.root / "root.pem"
    root.write_bytes(site.root_ca_pem)
    return json.loads(site.python(VERIFY_OFFLINE, root, pdf).stdout)


def verify_cli(site: SigningSite, pdf: Path, expect: int) -> dict:  # type: ignore[type-arg]
    return site.data.run("verify", pdf, "--json", expect=expect).json()  # type: ignore[return-value]


def test_revoked_later_still_verifies_revoked_before_fails(site: SigningSite,
                                                           tmp_path: Path) -> None:
    an = site.add_official("an", ("Phạm Thị An", NHUNG[1], "Văn thư"), "An-pin-86420")
    lt, lta = tmp_path / "lt.pdf", tmp_path / "lta.pdf"
    site.sign(an, site.pdf("lt.pdf"), "--out", lt, "--level", "B-LT")
    site.sign(an, site.pdf("lta.pdf"), "--out", lta, "--level", "B-LTA")
    before = verify_offline(site, lt)
    assert before["signatures"][0]["indication"] == "TOTAL-PASSED", before

    # The official changes post: the certificate is revoked after the documents were signed.
    site.data.run("cert", "revoke", an.serial, "--reason", "affiliationChanged")

    for doc, level in ((lt, "B-LT"), (lta, "B-LTA")):
        # Offline: nothing but what the document carries (its DSS).
        report = verify_offline(site, doc)
        [sig] = [s for s in report["signatures"] if s["kind"] == "signature"]
        assert sig["indication"] == "TOTAL-PASSED", sig
        assert sig["pades_level"] == level
        assert sig["revocation"]["status"] == "good"
        assert "dss" in sig["revocation"]["sources"]
        # And with our OCSP/CRL answering "revoked" today: the signature timestamp proves
        # the signature existed before the revocation.
        online = verify_cli(site, doc, expect=0)
        [sig] = [s for s in online["signatures"] if s["kind"] == "signature"]
        assert sig["indication"] == "TOTAL-PASSED", sig

    # kyso itself refuses to sign with the revoked certificate...
    refused = site.sign(an, site.pdf("after.pdf"), "--out", tmp_path / "after.pdf", expect=1)
    assert "was revoked" in refused.stderr
    # ...and a document signed behind its back after the revocation fails verification.
    forged = tmp_path / "forged.pdf"
    site.python(SIGN_BEHIND_KYSOS_BACK, an.id, an.serial, an.pin_file.read_text().strip(),
                site.pdf("forged-in.pdf"), forged)
    report = verify_cli(site, forged, expect=1)
    [sig] = report["signatures"]
    assert sig["indication"] == "TOTAL-FAILED", sig
    assert sig["sub_indication"] == "REVOKED", sig
    assert sig["revocation"]["status"] == "revoked"

    text = site.data.run("verify", forged, expect=1).stdout
    assert "thu hồi" in text  # Vietnamese by default: "Đã bị thu hồi"
    english = site.data.run("verify", forged, "--lang", "en", expect=1).stdout
    assert "revoked" in english.lower()
