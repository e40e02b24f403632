"""End to end in Debian's chromium: an official logs in with TOTP, signs a PDF in the portal
with their PIN and downloads it; the public verify page finds it valid; an operator revokes
the certificate; the official's next signature is refused."""

from __future__ import annotations

import io
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from e2e_support import Deployment, NewPage, Person, Steps, screenshot
from pdf_samples import make_pdf

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
from playwright.sync_api import expect  # noqa: E402

GREEN = "rgb(27, 122, 61)"  # .verdict-passed's border in web/static: the green verdict
ALL_VALID_VI = "Tất cả chữ ký hợp lệ"  # overall.TOTAL-PASSED, signer/locale/vi
SIGNATURE_VALID_VI = "Chữ ký hợp lệ"  # indication.signature.TOTAL-PASSED
A4 = (595.0, 842.0)  # make_pdf's page size in PDF points (rounded)
CLICK = (0.62, 0.85)  # where on the preview the signature goes (fractions of its box)


# -- page helpers ---------------------------------------------------------------------------

def log_in(page: Page, person: Person) -> None:
    """Password, then the TOTP code, through the real forms; ends on a logged-in page."""
    page.goto("/login")
    page.locator("#username").fill(person.username)
    page.locator("#password").fill(person.password)
    page.locator("form.upload button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/login/totp$"))
    page.locator("#code").fill(person.code())
    page.locator("form.upload button[type=submit]").click()
    expect(page).not_to_have_url(re.compile(r"/login"))


def verify_in_browser(page: Page, pdf: Path, level: str) -> None:
    """The public verify page, no login: upload `pdf`, expect the green all-valid report with
    one signature at PAdES `level`."""
    page.goto("/verify")
    page.locator("#file").set_input_files(str(pdf))
    page.locator("form.upload button[type=submit]").click()
    verdict = page.locator("section.verdict")
    expect(verdict).to_have_class(re.compile(r"\bverdict-passed\b"))
    expect(verdict).to_have_css("border-left-color", GREEN)
    expect(page.locator("#overall")).to_contain_text(ALL_VALID_VI)
    expect(verdict.locator("p.code code")).to_have_text("TOTAL-PASSED")
    signatures = page.locator("section.signature")
    expect(signatures).to_have_count(1)
    expect(signatures.first).to_have_class(re.compile(r"\bverdict-passed\b"))
    expect(signatures.first.locator("p.badge")).to_contain_text(SIGNATURE_VALID_VI)
    expect(signatures.first.locator("table.details td", has_text=re.compile(
        rf"^\s*{re.escape(level)}\s*$"))).to_have_count(1)


def upload_for_signing(page: Page, pdf: Path) -> None:
    page.goto("/portal/sign")
    page.locator("#pdf").set_input_files(str(pdf))
    page.locator("#upload-submit").click()


@dataclass(frozen=True)
class Placed:
    """The visible box the page's script filled in (PDF points, origin bottom-left) and the
    point clicked, converted to PDF points the same way."""

    page: int
    x: float
    y: float
    w: float
    h: float
    click_x: float
    click_y: float


def place_signature(page: Page) -> Placed:
    """Click on the first page's preview; the script fills #page #x #y #w #h."""
    preview = page.locator("img#preview")
    expect(preview).to_be_visible()
    page.wait_for_function(  # the image decoded: its box has its final size
        "() => { const i = document.querySelector('img#preview');"
        " return i && i.complete && i.naturalWidth > 0; }")
    box = preview.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0, box
    preview.click(position={"x": box["width"] * CLICK[0], "y": box["height"] * CLICK[1]})
    expect(page.locator("#w")).not_to_have_value("")
    values = {k: page.locator(f"#{k}").input_value() for k in ("page", "x", "y", "w", "h")}
    return Placed(page=int(values["page"]), x=float(values["x"]), y=float(values["y"]),
                  w=float(values["w"]), h=float(values["h"]),
                  click_x=A4[0] * CLICK[0], click_y=A4[1] * (1 - CLICK[1]))


def choose_and_sign(page: Page, pin: str, level: str) -> None:
    page.locator("#mode-visible").check()
    page.locator("#kind-personal").check()
    page.locator("#level").select_option(level)
    page.locator("#pin").fill(pin)
    page.locator("#sign-submit").click()


# -- checks on the signed file with pyHanko ---------------------------------------------------

def check_signed_pdf(data: bytes, deployment: Deployment, placed: Placed) -> None:
    """One intact, valid signature chaining to the demo root, by the official's certificate,
    its widget where the box was placed."""
    from asn1crypto import pem
    from asn1crypto import x509 as asn1_x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    assert data.startswith(b"%PDF-"), data[:40]
    root_pem = (deployment.config.parent / "published" / "ca" / "root.pem").read_bytes()
    _, _, root_der = pem.unarmor(root_pem)
    reader = PdfFileReader(io.BytesIO(data))
    assert len(reader.embedded_signatures) == 1, reader.embedded_signatures
    sig = reader.embedded_signatures[0]
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)],
                                allow_fetching=False)
    # pyHanko's sync API calls asyncio.run(), which Playwright's sync API (an event loop in this
    # thread) forbids: validate in a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        status = pool.submit(validate_pdf_signature, sig, context).result(timeout=60)
    assert status.intact and status.valid and status.trusted, status.pretty_print_details()
    assert format(status.signing_cert.serial_number, "x") == deployment.serial.lstrip("0")

    field = sig.sig_field
    widget = field if "/Rect" in field else field["/Kids"][0].get_object()
    x1, y1, x2, y2 = sorted_rect([float(v) for v in widget["/Rect"]])
    expected = (placed.x, placed.y, placed.x + placed.w, placed.y + placed.h)
    assert all(abs(a - b) <= 1.5 for a, b in zip((x1, y1, x2, y2), expected, strict=True)), (
        f"signature /Rect {[x1, y1, x2, y2]} != placed box {expected}")
    assert placed.page == 1, placed
    # The box is where the official clicked (corner or centre, whichever the page uses).
    assert x1 - 2 <= placed.click_x <= x2 + 2 and y1 - 2 <= placed.click_y <= y2 + 2, (
        f"clicked at ({placed.click_x:.0f}, {placed.click_y:.0f}) pt, box {[x1, y1, x2, y2]}")


def sorted_rect(r: list[float]) -> tuple[float, float, float, float]:
    return min(r[0], r[2]), min(r[1], r[3]), max(r[0], r[2]), max(r[1], r[3])


# -- the tests ------------------------------------------------------------------------------

def test_public_verify_page_finds_cli_signature_valid(page: Page, deployment: Deployment,
                                                      steps: Steps) -> None:
    with steps("verify a CLI-signed PDF", page):
        verify_in_browser(page, deployment.presigned_pdf, "B-B")


def test_sign_verify_revoke_refuse(new_page: NewPage, deployment: Deployment, steps: Steps,
                                   tmp_path: Path) -> None:
    official = new_page("official")
    source = tmp_path / "quyet-dinh-so-15-QD-UBND.pdf"
    source.write_bytes(make_pdf(pages=2))

    person = deployment.official
    with steps("a. official logs in with TOTP (a wrong code first)", official):
        official.goto("/login")
        screenshot(official, "login")
        official.locator("#username").fill(person.username)
        official.locator("#password").fill(person.password)
        official.locator("form.upload button[type=submit]").click()
        expect(official).to_have_url(re.compile(r"/login/totp$"))
        official.locator("#code").fill(person.wrong_code())
        official.locator("form.upload button[type=submit]").click()
        expect(official.locator("div.alert[role=alert]")).to_be_visible()
        expect(official).to_have_url(re.compile(r"/login/totp$"))
        official.locator("#code").fill(person.code())
        official.locator("form.upload button[type=submit]").click()
        expect(official).to_have_url(re.compile(r"/account$"))  # no ?next: the account page
        expect(official.locator("body")).to_contain_text(person.username)
        screenshot(official, "account")

    with steps("b1. portal lists the official's certificate", official):
        response = official.goto("/portal/")
        assert response is not None and response.ok, response and response.status
        expect(official).to_have_url(re.compile(r"/portal/$"))
        expect(official.locator("body")).to_contain_text(
            re.compile(re.escape(deployment.serial), re.IGNORECASE))
        screenshot(official, "portal-certificates")

    with steps("b2. upload and place the signature", official):
        upload_for_signing(official, source)
        placed = place_signature(official)
        screenshot(official, "portal-sign-preview")

    signed = tmp_path / "signed.pdf"
    with steps("b3. sign with the PIN and download", official):
        choose_and_sign(official, deployment.pin, "B-LT")
        download_link = official.locator("a.download")
        expect(download_link).to_have_count(1)
        screenshot(official, "portal-signed")
        with official.expect_download() as info:
            download_link.click()
        info.value.save_as(signed)
        check_signed_pdf(signed.read_bytes(), deployment, placed)

    verifier = new_page("public")
    with steps("c. public verify page: signature valid", verifier):
        verify_in_browser(verifier, signed, "B-LT")
        screenshot(verifier, "verify-report")

    operator = new_page("operator")
    with steps("d. operator revokes the certificate", operator):
        log_in(operator, deployment.operator)
        operator.goto(f"/console/certificates?q={deployment.serial}")
        link = operator.locator("a.cert-link")
        expect(link).to_have_count(1)
        link.click()
        expect(operator.locator("#cert-status")).to_have_attribute("data-status", "valid")
        operator.locator("#reason").select_option("keyCompromise")
        operator.locator("#revoke-confirm").check()
        operator.locator("#revoke-submit").click()
        expect(operator.locator("#cert-status")).to_have_attribute("data-status", "revoked")
        screenshot(operator, "console-certificate")

    with steps("e. a document signed after the revocation is refused", official):
        upload_for_signing(official, source)
        error = official.locator("p.error[role=alert]")
        # The portal may refuse at upload already (certificate revoked) or at signing.
        expect(error.or_(official.locator("#sign-submit")).first).to_be_visible()
        if not error.is_visible():
            place_signature(official)
            choose_and_sign(official, deployment.pin, "B-B")
            expect(error).to_be_visible()
        expect(official.locator("a.download")).to_have_count(0)
        screenshot(official, "portal-refused")
