"""Visible signatures signed with the appearance style: text, font embedding, rendering."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from appearance_helpers import (
    FIELD,
    appearance_stream,
    appearance_text,
    count_pixels,
    crop_box,
    is_blue,
    is_ink,
    is_red,
    pdffonts,
    pdftotext,
    render_page,
    sign_visible,
    software_signer,
)
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signer.appearance import AppearanceSpec
from signer.errors import InvalidAppearance

ROOT = Path(__file__).resolve().parents[2]
SIGNATURE_PNG = (ROOT / "ceremonies/demo/images/signature.png").read_bytes()
SEAL_PNG = (ROOT / "ceremonies/demo/images/seal.png").read_bytes()

WHEN = datetime(2025, 3, 15, 7, 30, 5, tzinfo=UTC)
WHEN_VN = "15/03/2025 14:30:05 +07:00"
NAME = "Nguyễn Thị Hồng Nhung"
WARD = "Ủy ban nhân dân phường Bến Thành"
DEPARTMENT = "Sở Thông tin và Truyền thông"
LONG_ORG = ("Văn phòng Hội đồng nhân dân và Ủy ban nhân dân phường Bến Thành, "
            "Thành phố Hồ Chí Minh")


@dataclass(frozen=True)
class Case:
    spec: AppearanceSpec
    box: tuple[int, int, int, int]
    expected: tuple[str, ...]  # the logical lines, before wrapping


CASES = {
    "personal-image": Case(
        AppearanceSpec("personal", NAME, WARD, "Chánh Văn phòng", SIGNATURE_PNG),
        (300, 600, 560, 700),
        (f"Ký bởi: {NAME}", "Chức vụ: Chánh Văn phòng", f"Cơ quan: {WARD}",
         f"Thời gian ký: {WHEN_VN}")),
    "personal-text": Case(
        AppearanceSpec("personal", NAME, DEPARTMENT),
        (40, 600, 280, 660),
        (f"Ký bởi: {NAME}", f"Cơ quan: {DEPARTMENT}", f"Thời gian ký: {WHEN_VN}")),
    "organization-seal": Case(
        AppearanceSpec("organization", "UBND phường Bến Thành", DEPARTMENT, None, SEAL_PNG),
        (300, 450, 560, 560),
        (f"Cơ quan: {DEPARTMENT}", f"Thời gian ký: {WHEN_VN}")),
    "organization-text": Case(
        AppearanceSpec("organization", "", WARD),
        (40, 450, 280, 500),
        (f"Cơ quan: {WARD}", f"Thời gian ký: {WHEN_VN}")),
    "organization-long": Case(
        AppearanceSpec("organization", "", LONG_ORG, None, SEAL_PNG),
        (300, 250, 500, 330),
        (f"Cơ quan: {LONG_ORG}", f"Thời gian ký: {WHEN_VN}")),
}


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("signed")
    paths = {}
    for name, case in CASES.items():
        paths[name] = out / f"{name}.pdf"
        paths[name].write_bytes(sign_visible(case.spec, case.box, WHEN))
    return paths


def _inside(lines, size: tuple[float, float]) -> None:  # type: ignore[no-untyped-def]
    width, height = size
    for line in lines:
        # what a viewer draws is as wide as what the layout measured
        assert abs(line.drawn - line.advance) < 0.01 * line.size, line
        assert line.x >= 0 and line.x + line.advance <= width, line
        # Liberation Serif's ink: at most 0.91 em above the baseline (Ễ), 0.22 below
        assert line.y - 0.22 * line.size >= 0 and line.y + 0.91 * line.size <= height, line


@pytest.mark.parametrize("name", CASES)
def test_text_maps_back_to_the_vietnamese_strings(signed: dict[str, Path], name: str) -> None:
    case = CASES[name]
    lines, size = appearance_text(signed[name].read_bytes())
    assert size == (case.box[2] - case.box[0], case.box[3] - case.box[1])
    # wrapping only ever breaks at spaces, so the visual lines joined give the logical ones
    assert " ".join(line.text for line in lines) == " ".join(case.expected)
    starts = [line.text for line in lines]
    for logical in case.expected:
        assert any(logical == s or logical.startswith(s + " ") for s in starts), (
            logical, starts)
    assert WHEN_VN in starts or any(s.endswith(WHEN_VN) for s in starts)  # never split
    _inside(lines, size)
    assert 5 <= min(line.size for line in lines) <= max(line.size for line in lines) <= 10


def test_long_organization_wraps_inside_the_box(signed: dict[str, Path]) -> None:
    lines, size = appearance_text(signed["organization-long"].read_bytes())
    org_lines = [line for line in lines if not line.text.startswith("Thời gian ký")
                 and WHEN_VN not in line.text]
    assert len(org_lines) >= 3
    _inside(lines, size)
    # nothing was dropped: every word of the name is drawn, in order
    assert " ".join(line.text for line in org_lines) == f"Cơ quan: {LONG_ORG}"


def test_font_is_embedded_as_a_subset(signed: dict[str, Path]) -> None:
    for path in signed.values():
        rows = [r for r in pdffonts(path) if "LiberationSerif" in r["name"]]
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["type"] == "CID TrueType"
        assert (row["emb"], row["sub"], row["uni"]) == ("yes", "yes", "yes")
        prefix, _, base = row["name"].partition("+")
        assert len(prefix) == 6 and prefix.isupper() and base.startswith("LiberationSerif")


def test_embedded_subset_is_small(signed: dict[str, Path]) -> None:
    ap = appearance_stream(signed["personal-text"].read_bytes())
    font = ap["/Resources"]["/Font"]["/F1"]
    descriptor = font["/DescendantFonts"][0]["/FontDescriptor"]
    program = descriptor["/FontFile2"]
    assert len(program.encoded_data) < 40_000  # the whole font is ~390 kB


def test_poppler_extracts_the_same_text(signed: dict[str, Path]) -> None:
    text = " ".join(pdftotext(signed["personal-image"]).split())
    for logical in CASES["personal-image"].expected:
        assert " ".join(logical.split()[:3]) in text
    assert NAME in text and WHEN_VN in text


def test_rendered_boxes(signed: dict[str, Path], tmp_path: Path) -> None:
    for name, path in signed.items():
        case = CASES[name]
        page = render_page(path, tmp_path)
        region = crop_box(page, case.box)
        total = region.width * region.height
        ink = count_pixels(region, is_ink)
        red = count_pixels(region, is_red)
        blue = count_pixels(region, is_blue)
        assert ink > 0.02 * total, (name, ink, total)
        if case.spec.kind == "organization" and case.spec.image_png:
            assert red > 0.02 * total, (name, red)
        else:
            assert red == 0, (name, red)
        if case.spec.kind == "personal" and case.spec.image_png:
            assert blue > 0.005 * total, (name, blue)
        else:
            assert blue == 0, (name, blue)


def test_signature_stays_valid(signed: dict[str, Path]) -> None:
    signer = software_signer()
    vc = ValidationContext(trust_roots=[signer.signing_cert])
    reader = PdfFileReader(io.BytesIO(signed["organization-seal"].read_bytes()))
    (sig,) = reader.embedded_signatures
    assert sig.field_name == FIELD
    status = validate_pdf_signature(sig, vc)
    assert status.intact and status.valid
    assert status.coverage.name == "ENTIRE_FILE"


def test_style_works_without_the_text_params() -> None:
    case = CASES["personal-text"]
    pdf = sign_visible(case.spec, case.box, WHEN, pass_params=False)
    lines, _ = appearance_text(pdf)
    assert " ".join(line.text for line in lines) == " ".join(case.expected)


def test_decomposed_input_is_drawn_precomposed() -> None:
    import unicodedata

    spec = AppearanceSpec("personal", unicodedata.normalize("NFD", NAME),
                          unicodedata.normalize("NFD", WARD))
    lines, _ = appearance_text(sign_visible(spec, (40, 600, 300, 660), WHEN))
    assert lines[0].text == f"Ký bởi: {NAME}"


def test_box_too_small_is_refused_not_cut() -> None:
    with pytest.raises(InvalidAppearance, match="too small"):
        sign_visible(CASES["organization-long"].spec, (300, 250, 360, 270), WHEN)
