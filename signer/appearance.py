"""Owns the visible signature appearance (Decree 30/2020 Appendix I): image, Vietnamese text."""

from __future__ import annotations

import hashlib
import io
import threading
import unicodedata
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo

import uharfbuzz as hb
from fontTools import subset, ttLib
from fontTools.ttLib.scaleUpem import scale_upem
from PIL import Image
from pyhanko.pdf_utils import generic, layout
from pyhanko.pdf_utils.content import ResourceType
from pyhanko.pdf_utils.font.api import FontEngineFactory
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.stamp import BaseStamp, BaseStampStyle

from signer.errors import InvalidAppearance

__all__ = [
    "FONT_FILE",
    "LABEL_ORGANIZATION",
    "LABEL_SIGNER",
    "LABEL_TIME",
    "LABEL_TITLE",
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_SIDE",
    "AppearanceSpec",
    "SignatureStamp",
    "SignatureStampStyle",
    "format_signing_time",
    "stamp_style",
]

FONT_FILE = Path(__file__).resolve().parent / "fonts" / "LiberationSerif-Regular.ttf"
VIETNAM_TZ = ZoneInfo("Asia/Ho_Chi_Minh")

LABEL_SIGNER = "Ký bởi"
LABEL_TITLE = "Chức vụ"
LABEL_ORGANIZATION = "Cơ quan"
LABEL_TIME = "Thời gian ký"

MAX_IMAGE_BYTES = 2 * 1024 * 1024
MAX_IMAGE_SIDE = 2000
MAX_TEXT_CHARS = 300
# Embedded images are downscaled to this many pixels on their longest side: at the
# largest practical seal size (~4 cm) that is still above 300 dpi.
EMBED_IMAGE_SIDE = 600

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class AppearanceSpec:
    kind: Literal["personal", "organization"]
    name: str  # signer's full name (personal)
    organization: str  # organization name
    title: str | None = None  # e.g. "Chánh Văn phòng" (shown for personal if given)
    image_png: bytes | None = None  # signature (personal) or red seal (organization)


# --------------------------------------------------------------------------- font


# What the appearance can show: Latin incl. every Vietnamese letter, combining marks,
# punctuation, the dong and euro signs, numero. Once per process the vendored font is
# prepared in memory for embedding only:
# - cut down to these glyphs: pyHanko subsets the font again for every signature, and that
#   costs a third as much on 1,000 glyphs as on the full 2,600;
# - rescaled to 1000 units per em: pyHanko (0.38) writes the font's own glyph units into
#   the CIDFont /W widths and TJ adjustments, which PDF reads as 1/1000 em, so a 2048-unit
#   font like Liberation Serif would be drawn with letters twice as far apart;
# - without TrueType hinting, whose instructions the rescaling would not keep valid.
SHOWN_CODEPOINTS = frozenset(
    [*range(0x20, 0x7F), *range(0xA0, 0x250), *range(0x300, 0x370), *range(0x1E00, 0x1F00),
     *range(0x2000, 0x2070), 0x20AB, 0x20AC, 0x2116])


@dataclass(frozen=True)
class _Font:
    data: bytes
    codepoints: frozenset[int]


@lru_cache(maxsize=1)
def _font() -> _Font:
    tt = ttLib.TTFont(io.BytesIO(FONT_FILE.read_bytes()))
    keep = [cp for cp in tt.getBestCmap() if cp in SHOWN_CODEPOINTS]
    options = subset.Options()
    options.layout_features = ["*"]  # keep kerning and marks for HarfBuzz
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.glyph_names = True
    options.legacy_kern = True
    options.hinting = False
    options.drop_tables = [*options.drop_tables, "FFTM"]  # FontForge timestamp
    subsetter = subset.Subsetter(options=options)
    subsetter.populate(unicodes=keep)
    subsetter.subset(tt)
    if tt["head"].unitsPerEm != 1000:
        scale_upem(tt, 1000)
    out = io.BytesIO()
    tt.save(out)
    return _Font(data=out.getvalue(), codepoints=frozenset(tt.getBestCmap()))


class _VendoredFontFactory(FontEngineFactory):
    """pyHanko's GlyphAccumulatorFactory without its per-signature cost: that factory is
    stateless (safe to share) but re-opens and re-reads the font file on every engine (and
    never closes the handle). This one keeps the font bytes in memory and gives every
    document a fresh GlyphAccumulator over them: an accumulator belongs to one writer and
    its subsetting overwrites the parsed font, so it is never reused."""

    def __init__(self, font_bytes: bytes) -> None:
        self.font_bytes = font_bytes

    def create_font_engine(self, writer: BasePdfFileWriter,
                           obj_stream: object | None = None) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs:
            obj_stream = writer.prepare_object_stream()
        return GlyphAccumulator(writer=writer, font_handle=io.BytesIO(self.font_bytes),
                                font_size=10, bcp47_lang_code="vi", obj_stream=obj_stream)


@lru_cache(maxsize=1)
def _font_factory() -> _VendoredFontFactory:
    return _VendoredFontFactory(_font().data)


# -------------------------------------------------------------------------- image


@dataclass(frozen=True, eq=False)
class _Image:
    """A validated PNG, downscaled and Flate-compressed once, ready to embed anywhere."""

    width: int
    height: int
    rgb: bytes  # Flate-compressed 8-bit DeviceRGB samples
    alpha: bytes | None  # Flate-compressed 8-bit DeviceGray soft mask, None if opaque

    @property
    def aspect(self) -> float:
        return self.width / self.height

    def xobject(self, writer: BasePdfFileWriter) -> generic.IndirectObject:
        def stream(data: bytes, colour_space: str) -> generic.StreamObject:
            return generic.StreamObject({
                pdf_name("/Type"): pdf_name("/XObject"),
                pdf_name("/Subtype"): pdf_name("/Image"),
                pdf_name("/Width"): generic.NumberObject(self.width),
                pdf_name("/Height"): generic.NumberObject(self.height),
                pdf_name("/ColorSpace"): pdf_name(colour_space),
                pdf_name("/BitsPerComponent"): generic.NumberObject(8),
                pdf_name("/Filter"): pdf_name("/FlateDecode"),
            }, encoded_data=data)

        image = stream(self.rgb, "/DeviceRGB")
        if self.alpha is not None:
            image[pdf_name("/SMask")] = writer.add_object(stream(self.alpha, "/DeviceGray"))
        return writer.add_object(image)


_IMAGE_CACHE: OrderedDict[bytes, _Image] = OrderedDict()
_IMAGE_CACHE_SIZE = 16
_IMAGE_CACHE_LOCK = threading.Lock()


def _load_png(png: bytes) -> _Image:
    if not isinstance(png, bytes | bytearray):
        raise InvalidAppearance("the signature image must be PNG bytes")
    if len(png) > MAX_IMAGE_BYTES:
        raise InvalidAppearance(
            f"the signature image is {len(png)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    if not png.startswith(PNG_MAGIC):
        raise InvalidAppearance("the signature image is not a PNG file")
    digest = hashlib.sha256(png).digest()
    with _IMAGE_CACHE_LOCK:
        cached = _IMAGE_CACHE.get(digest)
        if cached is not None:
            _IMAGE_CACHE.move_to_end(digest)
            return cached
    prepared = _prepare_png(bytes(png))
    with _IMAGE_CACHE_LOCK:
        _IMAGE_CACHE[digest] = prepared
        while len(_IMAGE_CACHE) > _IMAGE_CACHE_SIZE:
            _IMAGE_CACHE.popitem(last=False)
    return prepared


def check_image(png: bytes) -> None:
    """Raise InvalidAppearance now if `png` cannot be used (before a batch starts)."""
    _load_png(png)


def _prepare_png(png: bytes) -> _Image:
    try:
        with Image.open(io.BytesIO(png)) as probe:
            if probe.format != "PNG":
                raise InvalidAppearance("the signature image is not a PNG file")
            width, height = probe.size
            if width < 1 or height < 1 or max(width, height) > MAX_IMAGE_SIDE:
                raise InvalidAppearance(
                    f"the signature image is {width}x{height} pixels; at most "
                    f"{MAX_IMAGE_SIDE} on each side are accepted")
            probe.verify()
        with Image.open(io.BytesIO(png)) as img:
            img.load()
            img = _to_rgb_or_rgba(img)
    except InvalidAppearance:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            EOFError) as exc:
        raise InvalidAppearance(f"the signature image is not a readable PNG ({exc})") from None

    if max(img.size) > EMBED_IMAGE_SIDE:
        scale = EMBED_IMAGE_SIDE / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                         Image.Resampling.LANCZOS)
    alpha: bytes | None = None
    if img.mode == "RGBA":
        mask = img.getchannel("A")
        if mask.getextrema() != (255, 255):
            alpha = zlib.compress(mask.tobytes(), 6)
        img = img.convert("RGB")
    return _Image(width=img.width, height=img.height, rgb=zlib.compress(img.tobytes(), 6),
                  alpha=alpha)


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    if img.mode in ("I", "I;16", "I;16B", "I;16L"):
        img = img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "RGB")


# --------------------------------------------------------------------------- text


def format_signing_time(signing_time: datetime) -> str:
    """`dd/mm/yyyy hh:mm:ss +07:00`, in Vietnam time."""
    if signing_time.tzinfo is None or signing_time.utcoffset() is None:
        raise ValueError("the signing time must be timezone-aware")
    local = signing_time.astimezone(VIETNAM_TZ)
    offset = local.strftime("%z")  # "+0700"
    return f"{local:%d/%m/%Y %H:%M:%S} {offset[:3]}:{offset[3:]}"


def _clean(text: str | None, what: str) -> str:
    """NFC (so every Vietnamese letter is one precomposed glyph), one line, checked against
    the font: a character the font lacks would otherwise be drawn as an empty box."""
    if text is None:
        return ""
    if not isinstance(text, str):
        raise InvalidAppearance(f"the {what} must be text")
    text = " ".join(unicodedata.normalize("NFC", text).split())
    if len(text) > MAX_TEXT_CHARS:
        raise InvalidAppearance(f"the {what} is longer than {MAX_TEXT_CHARS} characters")
    codepoints = _font().codepoints
    missing = sorted({c for c in text if ord(c) not in codepoints})
    if missing:
        shown = ", ".join(f"U+{ord(c):04X}" for c in missing[:5])
        raise InvalidAppearance(f"the {what} has characters the signature font cannot show "
                                f"({shown})")
    return text


# -------------------------------------------------------------------- style, stamp


@dataclass(frozen=True)
class SignatureStampStyle(BaseStampStyle):
    """Image (signature or seal) beside or above `label: value` lines, in an embedded
    subset of Liberation Serif. The text wraps at spaces (inside a word when a word alone is
    too wide) and shrinks from `max_font_size` to `min_font_size` to fit the field's box; if
    it cannot fit, signing fails with InvalidAppearance instead of cutting text off."""

    border_width: int = 0
    lines: tuple[tuple[str, str], ...] = ()
    """(label, text parameter name) per line; lines whose parameter is empty are left out."""
    default_params: tuple[tuple[str, str], ...] = ()
    """Text parameters used when the signing call passes none (or leaves some out)."""
    unbreakable: tuple[str, ...] = ("time",)
    """Text parameters kept on one line (moved whole to the next line rather than split)."""
    image: _Image | None = None
    font: FontEngineFactory = field(default_factory=_font_factory)
    text_color: tuple[float, float, float] = (0.0, 0.0, 0.0)
    max_font_size: float = 10.0
    min_font_size: float = 5.0
    padding: float = 3.0
    gap: float = 4.0
    line_spacing: float = 1.15

    def create_stamp(self, writer: BasePdfFileWriter, box: layout.BoxConstraints,
                     text_params: dict) -> SignatureStamp:
        return SignatureStamp(writer, self, box, text_params)


@dataclass(frozen=True)
class _Region:
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class _TextFit:
    size: float
    lines: tuple[str, ...]
    block_height: float


class SignatureStamp(BaseStamp):
    """Renders one SignatureStampStyle into a signature field's box."""

    def __init__(self, writer: BasePdfFileWriter, style: SignatureStampStyle,
                 box: layout.BoxConstraints | None, text_params: dict | None) -> None:
        if box is None or not (box.width_defined and box.height_defined):
            raise layout.LayoutError("the signature appearance needs a field with a box")
        super().__init__(writer=writer, style=style, box=box)
        params = dict(style.default_params)
        params.update({k: v for k, v in (text_params or {}).items() if isinstance(v, str)})
        # params given at signing time get the same checks as stamp_style's own
        values = {key: _clean(params.get(key), key) for _, key in style.lines}
        # each line as the pieces it may be wrapped between: the label, then the value's
        # words (or the whole value, for the unbreakable ones like the signing time)
        self.text_tokens = [
            [f"{label}:", *([values[key]] if key in style.unbreakable else values[key].split())]
            for label, key in style.lines if values[key]
        ]
        self.text_lines = [" ".join(tokens) for tokens in self.text_tokens]
        self._widths: dict[str, float] = {}
        self._engine: GlyphAccumulator | None = None

    # measuring -------------------------------------------------------------------

    @property
    def engine(self) -> GlyphAccumulator:
        if self._engine is None:
            engine = self.style.font.create_font_engine(self.writer)
            assert isinstance(engine, GlyphAccumulator)
            self._engine = engine
        return self._engine

    def _em_width(self, text: str) -> float:
        width = self._widths.get(text)
        if width is None:
            buf = hb.Buffer()
            buf.add_str(text)
            buf.guess_segment_properties()
            hb.shape(self.engine.hb_font, buf)
            width = sum(p.x_advance for p in buf.glyph_positions) / self.engine.units_per_em
            self._widths[text] = width
        return width

    def _ink_em(self) -> tuple[float, float]:
        """Highest glyph top and lowest glyph bottom of the text, in em (Vietnamese capitals
        with stacked marks rise above the font's nominal ascent)."""
        engine = self.engine
        font = engine.hb_font
        top, bottom = 0.0, 0.0
        for ch in set("".join(self.text_lines)):
            gid = font.get_nominal_glyph(ord(ch))
            if gid is None:
                continue
            ext = font.get_glyph_extents(gid)
            if ext is None:
                continue
            top = max(top, ext.y_bearing)
            bottom = min(bottom, ext.y_bearing + ext.height)
        upem = engine.units_per_em
        hhea = engine.tt["hhea"]
        return max(top, hhea.ascent) / upem, min(bottom, hhea.descent) / upem

    def _wrap(self, tokens: list[str], size: float, width: float) -> list[str]:
        limit = width / size
        out: list[str] = []
        current = ""
        for word in tokens:
            trial = f"{current} {word}" if current else word
            if self._em_width(trial) <= limit:
                current = trial
                continue
            if current:
                out.append(current)
            current = ""
            if self._em_width(word) <= limit:
                current = word
                continue
            for ch in word:  # a single piece wider than the box: break it
                if current and self._em_width(current + ch) > limit:
                    out.append(current)
                    current = ""
                current += ch
        if current:
            out.append(current)
        return out

    def _fit_text(self, region: _Region, ink: tuple[float, float]) -> _TextFit | None:
        style = self.style
        top, bottom = ink
        width = region.width * 0.98  # room for side bearings beyond the advance width
        size = style.max_font_size
        while size >= style.min_font_size - 1e-9:
            lines: list[str] = []
            for tokens in self.text_tokens:
                lines.extend(self._wrap(tokens, size, width))
            if all(self._em_width(line) * size <= width for line in lines):
                height = size * (top - bottom + (len(lines) - 1) * style.line_spacing)
                if height <= region.height:
                    return _TextFit(size=size, lines=tuple(lines), block_height=height)
            size -= 0.5
        return None

    # layout ----------------------------------------------------------------------

    def _candidates(self) -> list[tuple[_Region | None, _Region]]:
        style = self.style
        pad, gap = style.padding, style.gap
        inner_w = self.box.width - 2 * pad
        inner_h = self.box.height - 2 * pad
        full = _Region(pad, pad, inner_w, inner_h)
        image = style.image
        if image is None or not self.text_lines:
            return [(full if image is not None else None, full)]

        def side(share: float) -> tuple[_Region, _Region]:
            w = min(inner_w * share, inner_h * image.aspect)
            return (_Region(pad, pad, w, inner_h),
                    _Region(pad + w + gap, pad, inner_w - w - gap, inner_h))

        def stacked(share: float) -> tuple[_Region, _Region]:
            h = min(inner_h * share, inner_w / image.aspect)
            return (_Region(pad, pad + inner_h - h, inner_w, h),
                    _Region(pad, pad, inner_w, inner_h - h - gap))

        sides = [side(s) for s in (0.4, 0.3, 0.22)]
        stacks = [stacked(s) for s in (0.55, 0.4, 0.28)]
        wide = self.box.width >= 1.5 * self.box.height
        return sides + stacks if wide else stacks + sides

    def _render_inner_content(self) -> list[bytes]:
        style = self.style
        ink = self._ink_em() if self.text_lines else (0.0, 0.0)
        best: tuple[_Region | None, _Region, _TextFit | None] | None = None
        for image_region, text_region in self._candidates():
            if text_region.width <= 0 or text_region.height <= 0:
                continue
            fit = self._fit_text(text_region, ink) if self.text_lines else None
            if self.text_lines and fit is None:
                continue
            if best is None or (fit is not None and best[2] is not None
                                and fit.size > best[2].size):
                best = (image_region, text_region, fit)
        if best is None:
            raise InvalidAppearance(
                f"the signature box ({self.box.width:g}x{self.box.height:g} pt) is too small "
                f"for its text at {style.min_font_size:g} pt; make the box larger")

        image_region, text_region, fit = best
        ops: list[bytes] = [b"q"]
        if image_region is not None and style.image is not None:
            ops.append(self._image_ops(image_region))
        if fit is not None:
            ops.append(self._text_ops(text_region, fit, ink))
        ops.append(b"Q")
        return ops

    def _image_ops(self, region: _Region) -> bytes:
        image = self.style.image
        assert image is not None
        w = min(region.width, region.height * image.aspect)
        h = w / image.aspect
        x = region.x + (region.width - w) / 2
        y = region.y + (region.height - h) / 2
        self.set_resource(ResourceType.XOBJECT, pdf_name("/Im1"), image.xobject(self.writer))
        return b"q %s 0 0 %s %s %s cm /Im1 Do Q" % (_num(w), _num(h), _num(x), _num(y))

    def _text_ops(self, region: _Region, fit: _TextFit, ink: tuple[float, float]) -> bytes:
        engine = self.engine
        engine.font_size = fit.size
        self.set_resource(ResourceType.FONT, pdf_name("/F1"), engine.as_resource())
        top = region.y + (region.height + fit.block_height) / 2
        baseline = top - ink[0] * fit.size
        ops = [b"%s %s %s rg" % tuple(_num(c) for c in self.style.text_color)]
        for line in fit.lines:
            shaped = engine.shape(line)
            ops.append(b"BT /F1 %s Tf 1 0 0 1 %s %s Tm %s ET" % (
                _num(fit.size), _num(region.x), _num(baseline), shaped.graphics_ops))
            baseline -= fit.size * self.style.line_spacing
        return b" ".join(ops)


def _num(value: float) -> bytes:
    """A PDF real: fixed point (never the exponent form %g could produce)."""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return (text if text not in ("", "-0") else "0").encode("ascii")


# -------------------------------------------------------------------------- entry


def stamp_style(spec: AppearanceSpec, signing_time: datetime
                ) -> tuple[BaseStampStyle, dict[str, str]]:
    """The pyHanko stamp style and the appearance text params for one signature."""
    if spec.kind not in ("personal", "organization"):
        raise InvalidAppearance(f"unknown signature kind {spec.kind!r}")
    params = {"time": format_signing_time(signing_time)}
    organization = _clean(spec.organization, "organization name")
    if spec.kind == "personal":
        name = _clean(spec.name, "signer's name")
        if not name:
            raise InvalidAppearance("a personal signature needs the signer's name")
        params["name"] = name
        title = _clean(spec.title, "title")
        if title:
            params["title"] = title
        if organization:
            params["organization"] = organization
        lines = (("name", LABEL_SIGNER), ("title", LABEL_TITLE),
                 ("organization", LABEL_ORGANIZATION), ("time", LABEL_TIME))
    else:
        if not organization:
            raise InvalidAppearance("an organization signature needs the organization name")
        params["organization"] = organization
        lines = (("organization", LABEL_ORGANIZATION), ("time", LABEL_TIME))
    image = _load_png(spec.image_png) if spec.image_png is not None else None
    style = SignatureStampStyle(
        lines=tuple((label, key) for key, label in lines),
        default_params=tuple(params.items()),
        image=image,
    )
    return style, params
