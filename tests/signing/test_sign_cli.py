"""`kyso sign` end to end on a demo installation: levels, batches, placement, several
signatures and certification, refusals; checked with pyHanko's own reader and validator."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from pdf_crosscheck import endesive_verify, nss_db, pdfsig
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from signing_site import SigningSite, make_site

PG_SCHEMA = "kyso_signing"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningSite]:
    yield make_site(tmp_path_factory.mktemp("signing"), PG_SCHEMA)


def _root(site: SigningSite) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(pem.unarmor(site.root_ca_pem)[2])


def validate(site: SigningSite, path: Path) -> list:  # type: ignore[type-arg]
    """pyHanko's validator on every /Sig signature, trusting the demo root only."""
    reader = PdfFileReader(io.BytesIO(path.read_bytes()))

    async def run() -> list:  # type: ignore[type-arg]
        out = []
        for sig in reader.embedded_regular_signatures:
            vc = ValidationContext(trust_roots=[_root(site)], allow_fetching=False,
                                   revocation_mode="soft-fail")
            out.append(await async_validate_pdf_signature(sig, vc))
        return out

    return asyncio.run(run())


def audit_rows(site: SigningSite, action: str) -> list[tuple]:  # type: ignore[type-arg]
    from cli_support import query

    return query(site.data.database_url, site.data.data_dir / "kyso.db",
                 f"SELECT actor, object, outcome, details FROM audit_events "
                 f"WHERE action = '{action}' ORDER BY id")


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_each_level_carries_what_it_promises(site: SigningSite, tmp_path: Path,
                                             level: str) -> None:
    doc = site.pdf(f"level-{level}.pdf")
    out = tmp_path / "signed.pdf"
    nhung = site.officials["nhung"]
    result = site.sign(nhung, doc, "--out", out, "--level", level)
    assert f"signed {doc} -> {out}" in result.stdout

    data = out.read_bytes()
    assert data.startswith(doc.read_bytes()), "signing must append, never rewrite"
    reader = PdfFileReader(io.BytesIO(data))
    sigs = reader.embedded_regular_signatures
    assert len(sigs) == 1
    sig = sigs[0]
    assert sig.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert sig.signer_cert.serial_number == int(nhung.serial, 16)
    unsigned = sig.signer_info["unsigned_attrs"]
    stamped = unsigned.native is not None and any(
        a["type"].native == "signature_time_stamp_token" for a in unsigned)
    assert stamped == (level != "B-B")
    dss = reader.root.get("/DSS")
    dss = dss.get_object() if dss is not None else None
    assert (dss is not None) == (level in ("B-LT", "B-LTA"))
    if dss is not None:
        # The signer's OCSP answer (issuing CA's responder), the root's CRL for the issuing
        # CA, and every certificate needed to validate later.
        assert len(dss["/OCSPs"]) >= 1 and len(dss["/CRLs"]) >= 1
        assert len(dss["/Certs"]) >= 3
    doc_ts = reader.embedded_timestamp_signatures
    assert len(doc_ts) == (1 if level == "B-LTA" else 0)

    [status] = validate(site, out)
    assert status.bottom_line, status.summary()
    assert status.trusted and status.intact and status.valid
    if level != "B-B":
        assert status.timestamp_validity is not None and status.timestamp_validity.trusted

    # Independent verifiers: Poppler (NSS trusting only the demo root) and endesive.
    nssdir = nss_db(tmp_path / "nss", [site.root_ca_pem])
    [seen] = [p for p in pdfsig(out, nssdir) if p.signature_type == "ETSI.CAdES.detached"]
    assert seen.signature_valid and seen.certificate_trusted, seen.raw
    assert seen.signer == "Nguyễn Thị Hồng Nhung"
    assert endesive_verify(data, [site.root_ca_pem]) == [(True, True, True)]

    # Every signature is entered in the audit log with the signed file's digest.
    import hashlib

    details = [json.loads(d) for _, _, outcome, d in audit_rows(site, "document.sign")
               if outcome == "success"]
    assert hashlib.sha256(data).hexdigest() in {d["sha256"] for d in details}


def test_rsa_official_signs_too(site: SigningSite, tmp_path: Path) -> None:
    out = tmp_path / "rsa.pdf"
    site.sign(site.officials["binh"], site.pdf("rsa.pdf"), "--out", out, "--level", "B-T")
    [status] = validate(site, out)
    assert status.bottom_line and status.md_algorithm == "sha256"
    assert status.pkcs7_signature_mechanism in ("rsassa_pkcs1v15", "sha256_rsa")


def test_batch_one_pin_check_and_a_line_per_document(site: SigningSite, tmp_path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    docs = [site.pdf(f"batch-{i}.pdf", pages=1 + i % 3) for i in range(5)]
    not_pdf = site.root / "docs" / "letter.docx"
    not_pdf.write_bytes(b"PK\x03\x04 this is a zip, not a PDF")
    truncated = site.root / "docs" / "truncated.pdf"
    truncated.write_bytes(docs[0].read_bytes()[:300])
    encrypted = site.root / "docs" / "encrypted.pdf"
    writer = PdfWriter(clone_from=PdfReader(docs[1]))
    writer.encrypt("user-password", "owner-password")
    with encrypted.open("wb") as fh:
        writer.write(fh)
    opens_before = len(audit_rows(site, "official.key.open"))

    out = tmp_path / "signed"
    result = site.sign(site.officials["nhung"], *docs, not_pdf, truncated, encrypted,
                       "--out", out, "--level", "B-T", "--json", expect=4)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    by_input = {Path(line["input"]).name: line for line in lines}
    assert len(by_input) == 8
    for doc in docs:
        assert by_input[doc.name]["ok"], by_input[doc.name]
        assert (out / doc.name).exists()
    assert "not a PDF" in by_input["letter.docx"]["error"]
    assert "truncated or damaged" in by_input["truncated.pdf"]["error"]
    assert "encrypted" in by_input["encrypted.pdf"]["error"]
    for bad in ("letter.docx", "truncated.pdf", "encrypted.pdf"):
        assert not (out / bad).exists()
    # One authorization for the whole batch: the PIN was checked (and the key unwrapped) once.
    opens = audit_rows(site, "official.key.open")[opens_before:]
    assert [o[2] for o in opens] == ["success"]
    for doc in docs:
        [status] = validate(site, out / doc.name)
        assert status.bottom_line


def test_visible_personal_signature_on_a_chosen_page(site: SigningSite, tmp_path: Path) -> None:
    doc = site.pdf("visible.pdf", pages=3)
    out = tmp_path / "visible.pdf"
    site.sign(site.officials["nhung"], doc, "--out", out, "--level", "B-B",
              "--visible", "2,350,60,200,90")
    reader = PdfFileReader(io.BytesIO(out.read_bytes()))
    [sig] = reader.embedded_regular_signatures
    widget = sig.sig_field["/Kids"][0] if "/Kids" in sig.sig_field else sig.sig_field
    assert [round(float(v)) for v in widget["/Rect"]] == [350, 60, 550, 150]
    page2 = reader.root["/Pages"]["/Kids"][1]
    assert any(a.get_object() == widget for a in page2["/Annots"])
    assert "/AP" in widget
    [status] = validate(site, out)
    assert status.bottom_line


def test_organization_seal_in_an_existing_field(site: SigningSite, tmp_path: Path) -> None:
    seal = Path(__file__).resolve().parents[2] / "ceremonies" / "demo" / "images" / "seal.png"
    doc = site.pdf("field.pdf", signature_fields=("ChuKyCoQuan",))
    out = tmp_path / "field.pdf"
    args = ["--image", seal] if seal.exists() else []
    site.sign(site.officials["nhung"], doc, "--out", out, "--level", "B-B", "--field",
              "ChuKyCoQuan", "--kind", "organization", *args)
    reader = PdfFileReader(io.BytesIO(out.read_bytes()))
    [sig] = reader.embedded_regular_signatures
    assert sig.field_name == "ChuKyCoQuan"
    # Signing the same field again, or a field that does not exist, is refused by name.
    again = site.sign(site.officials["nhung"], out, "--out", tmp_path / "again.pdf",
                      "--level", "B-B", "--field", "ChuKyCoQuan", expect=4)
    assert "already signed" in again.stdout
    missing = site.sign(site.officials["nhung"], doc, "--out", tmp_path / "missing.pdf",
                        "--level", "B-B", "--field", "Khong", expect=4)
    assert "no signature field 'Khong'" in missing.stdout
    assert "ChuKyCoQuan" in missing.stdout


def test_certification_then_a_second_signer(site: SigningSite, tmp_path: Path) -> None:
    doc = site.pdf("certify.pdf", signature_fields=("PhoChuTich",), text_field="SoVanBan")
    certified = tmp_path / "certified.pdf"
    site.sign(site.officials["nhung"], doc, "--out", certified, "--level", "B-LT",
              "--certify", "--kind", "organization")
    reader = PdfFileReader(io.BytesIO(certified.read_bytes()))
    [cert_sig] = reader.embedded_regular_signatures
    assert cert_sig.docmdp_level is not None and cert_sig.docmdp_level.value == 2
    # The certifying signature locks every field except the signature field left open.
    lock = cert_sig.sig_field.get("/Lock")
    lock = lock.get_object() if lock is not None else None
    assert lock is not None and lock["/Action"] == "/Exclude"
    assert [str(f) for f in lock["/Fields"]] == ["PhoChuTich"]

    both = tmp_path / "both.pdf"
    site.sign(site.officials["binh"], certified, "--out", both, "--level", "B-LT",
              "--field", "PhoChuTich")
    first, second = validate(site, both)
    assert first.bottom_line and second.bottom_line, (first.summary(), second.summary())
    assert first.docmdp_ok
    assert first.modification_level.name in ("LTA_UPDATES", "FORM_FILLING")
    nssdir = nss_db(tmp_path / "nss", [site.root_ca_pem])
    seen = [p for p in pdfsig(both, nssdir) if p.signature_type == "ETSI.CAdES.detached"]
    assert sorted(p.signer for p in seen) == ["Nguyễn Thị Hồng Nhung", "Trần Văn Bình"]
    assert all(p.signature_valid and p.certificate_trusted for p in seen), seen
    assert endesive_verify(both.read_bytes(), [site.root_ca_pem]) == [(True, True, True)] * 2


def test_no_changes_certification_refuses_later_signatures(site: SigningSite,
                                                           tmp_path: Path) -> None:
    doc = site.pdf("locked.pdf")
    locked = tmp_path / "locked.pdf"
    site.sign(site.officials["nhung"], doc, "--out", locked, "--level", "B-B", "--certify",
              "--docmdp", "1")
    result = site.sign(site.officials["binh"], locked, "--out", tmp_path / "x.pdf",
                       "--level", "B-B", expect=4)
    assert "FAILED" in result.stdout
    assert not (tmp_path / "x.pdf").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--visible", "9,100,100,200,80"], "there is no page 9"),
    (["--visible", "1,500,100,200,80"], "does not fit on page 1"),
])
def test_placement_off_the_document_is_refused(site: SigningSite, tmp_path: Path,
                                               args: list[str], message: str) -> None:
    result = site.sign(site.officials["nhung"], site.pdf("place.pdf"), "--out",
                       tmp_path / "p.pdf", "--level", "B-B", *args, expect=4)
    assert message in result.stdout


@pytest.mark.parametrize("visible", ["1,2,3", "one,2,3,4,5", "0,10,10,100,50"])
def test_malformed_visible_is_a_usage_error(site: SigningSite, tmp_path: Path,
                                            visible: str) -> None:
    result = site.sign(site.officials["nhung"], site.pdf("usage.pdf"), "--out",
                       tmp_path / "u.pdf", "--visible", visible, expect=2)
    assert "--visible" in result.stderr


def test_existing_output_is_not_overwritten(site: SigningSite, tmp_path: Path) -> None:
    out = tmp_path / "exists.pdf"
    out.write_bytes(b"keep me")
    result = site.sign(site.officials["nhung"], site.pdf("exists.pdf"), "--out", out,
                       expect=2)
    assert "not overwriting" in result.stderr
    assert out.read_bytes() == b"keep me"


def test_wrong_pin_says_how_many_attempts_are_left(site: SigningSite, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin-000\n")
    official = site.officials["binh"]
    result = site.data.run("sign", site.pdf("pin.pdf"), "--official", str(official.id),
                           "--out", tmp_path / "pin.pdf", "--pin-file", wrong, expect=1)
    assert "wrong signing PIN" in result.stderr and "attempt(s) left" in result.stderr
    assert not (tmp_path / "pin.pdf").exists()
    # The right PIN afterwards works (and resets the counter).
    site.sign(official, site.pdf("pin2.pdf"), "--out", tmp_path / "pin2.pdf", "--level", "B-B")


def test_revoked_or_held_certificate_is_refused_before_the_pin(site: SigningSite,
                                                               tmp_path: Path) -> None:
    from signing_site import NHUNG

    tam = site.add_official("tam", ("Lê Minh Tâm", NHUNG[1], "Chuyên viên"), "Tam-pin-97531")
    site.data.run("cert", "hold", tam.serial)
    opens_before = len(audit_rows(site, "official.key.open"))
    held = site.sign(tam, site.pdf("held.pdf"), "--out", tmp_path / "held.pdf", expect=1)
    assert "is on hold" in held.stderr and "refused" in held.stderr
    site.data.run("cert", "release", tam.serial)
    site.data.run("cert", "revoke", tam.serial, "--reason", "keyCompromise")
    revoked = site.sign(tam, site.pdf("rev.pdf"), "--out", tmp_path / "rev.pdf", expect=1)
    assert "was revoked" in revoked.stderr and "keyCompromise" in revoked.stderr
    assert not (tmp_path / "rev.pdf").exists()
    assert len(audit_rows(site, "official.key.open")) == opens_before  # PIN never used


def test_a_bad_image_refuses_the_batch_before_any_document(site: SigningSite,
                                                           tmp_path: Path) -> None:
    fake = tmp_path / "chu-ky.png"
    fake.write_bytes(b"\xff\xd8\xff\xe0 a JPEG named .png")
    docs = [site.pdf("img-1.pdf"), site.pdf("img-2.pdf")]
    result = site.sign(site.officials["nhung"], *docs, "--out", tmp_path / "out",
                       "--visible", "1,340,40,220,90", "--image", fake, expect=1)
    assert "PNG" in result.stderr
    assert not any((tmp_path / "out").glob("*.pdf"))
