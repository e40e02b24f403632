"""What stamp_style accepts: PNG checks, the Vietnam-time format, the text it refuses."""

from __future__ import annotations

import io
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from signer import appearance
from signer.appearance import AppearanceSpec, format_signing_time, stamp_style
from signer.errors import InvalidAppearance, SignerError

ROOT = Path(__file__).resolve().parents[2]
WHEN = datetime(2025, 3, 15, 7, 30, 5, tzinfo=UTC)


def png(size: tuple[int, int] = (40, 20), mode: str = "RGBA",
        colour: tuple[int, ...] = (200, 0, 0, 255), **save: object) -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, format="PNG", **save)
    return out.getvalue()


def spec(image: bytes | None = None, kind: str = "organization") -> AppearanceSpec:
    return AppearanceSpec(kind, "Nguyễn Văn An", "Sở Thông tin và Truyền thông",  # type: ignore[arg-type]
                          None, image)


def test_error_is_a_signer_error() -> None:
    assert issubclass(InvalidAppearance, SignerError)
    assert InvalidAppearance.code == "invalid_appearance"
    assert InvalidAppearance.http_status == 422


@pytest.mark.parametrize(("when", "shown"), [
    (datetime(2025, 3, 15, 7, 30, 5, tzinfo=UTC), "15/03/2025 14:30:05 +07:00"),
    (datetime(2024, 12, 31, 20, 0, 0, tzinfo=UTC), "01/01/2025 03:00:00 +07:00"),
    (datetime(2025, 6, 1, 9, 5, 7, tzinfo=timezone(timedelta(hours=9))),
     "01/06/2025 07:05:07 +07:00"),
])
def test_signing_time_in_vietnam_time(when: datetime, shown: str) -> None:
    assert format_signing_time(when) == shown
    _, params = stamp_style(spec(), when)
    assert params["time"] == shown


def test_naive_time_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        stamp_style(spec(), datetime(2025, 3, 15, 7, 30, 5))


def test_params_per_kind() -> None:
    _, personal = stamp_style(AppearanceSpec("personal", " Nguyễn  Văn An ", "Sở Tư pháp",
                                             "Chánh Văn phòng"), WHEN)
    assert personal == {"name": "Nguyễn Văn An", "title": "Chánh Văn phòng",
                        "organization": "Sở Tư pháp", "time": "15/03/2025 14:30:05 +07:00"}
    _, organization = stamp_style(spec(), WHEN)
    assert organization == {"organization": "Sở Thông tin và Truyền thông",
                            "time": "15/03/2025 14:30:05 +07:00"}


@pytest.mark.parametrize("bad", [
    AppearanceSpec("personal", "  ", "Sở Tư pháp"),
    AppearanceSpec("organization", "Nguyễn Văn An", ""),
    AppearanceSpec("notary", "Nguyễn Văn An", "Sở Tư pháp"),  # type: ignore[arg-type]
    AppearanceSpec("personal", "王小明", "Sở Tư pháp"),  # the font has no Han characters
    AppearanceSpec("personal", "Nguyễn Văn An " * 40, "Sở Tư pháp"),
])
def test_text_refused(bad: AppearanceSpec) -> None:
    with pytest.raises(InvalidAppearance):
        stamp_style(bad, WHEN)


def test_demo_images_are_valid_and_small() -> None:
    for name in ("signature.png", "seal.png"):
        data = (ROOT / "ceremonies/demo/images" / name).read_bytes()
        assert len(data) < 50_000
        style, _ = stamp_style(spec(data), WHEN)
        assert style.image is not None and style.image.alpha is not None  # transparent


@pytest.mark.parametrize("make", [
    lambda: b"",
    lambda: b"GIF89a" + b"\0" * 100,
    lambda: _jpeg(),
    lambda: png()[:60],  # truncated
    lambda: appearance.PNG_MAGIC + b"\0" * 200,  # the signature and nothing valid after it
    lambda: _corrupt_idat(png()),
    lambda: png((2001, 10)),
    lambda: png((10, 2500), mode="L", colour=(0,)),
    lambda: _huge_header_png(60000, 60000),  # a decompression bomb's header
    lambda: appearance.PNG_MAGIC + b"\0" * (appearance.MAX_IMAGE_BYTES + 1),
    lambda: "not bytes",
])
def test_bad_images_refused(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidAppearance) as caught:
        stamp_style(spec(make()), WHEN)
    assert "image" in caught.value.message


def test_accepted_image_modes_and_limits() -> None:
    for data in (png(), png(mode="RGB", colour=(0, 0, 200)), png(mode="L", colour=(0,)),
                 png(mode="LA", colour=(0, 128)), png(mode="P", colour=(3,)),
                 png(mode="I;16", colour=(40000,)),
                 png((2000, 2000), mode="RGB", colour=(255, 0, 0))):
        style, _ = stamp_style(spec(data), WHEN)
        image = style.image
        assert image is not None
        assert max(image.width, image.height) <= appearance.EMBED_IMAGE_SIDE
    # 2000 x 2000 is downscaled for embedding, keeping the aspect ratio
    style, _ = stamp_style(spec(png((2000, 1000), mode="RGB", colour=(255, 0, 0))), WHEN)
    assert (style.image.width, style.image.height) == (600, 300)  # type: ignore[union-attr]
    # opaque images carry no soft mask
    assert style.image.alpha is None  # type: ignore[union-attr]


def test_prepared_image_is_cached() -> None:
    data = png((64, 64), colour=(10, 20, 200, 128))
    first, _ = stamp_style(spec(data), WHEN)
    second, _ = stamp_style(spec(bytes(data)), WHEN + timedelta(seconds=1))
    assert first.image is second.image


def test_font_factory_is_shared() -> None:
    first, _ = stamp_style(spec(), WHEN)
    second, _ = stamp_style(spec(), WHEN)
    assert first.font is second.font


def _jpeg() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 20), (255, 0, 0)).save(out, format="JPEG")
    return out.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _huge_header_png(width: int, height: int) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (appearance.PNG_MAGIC + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(b"\0" * 10)) + _chunk(b"IEND", b""))


def _corrupt_idat(data: bytes) -> bytes:
    start = data.index(b"IDAT") + 4
    return data[:start] + bytes(b ^ 0xFF for b in data[start:start + 8]) + data[start + 8:]
