"""Helpers for the appearance tests: a one-page PDF, a software signer, poppler wrappers."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from PIL import Image
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import PageObject, PdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.appearance import AppearanceSpec, stamp_style

PAGE_W, PAGE_H = 595, 842
FIELD = "Sig1"
RENDER_DPI = 144


def one_page_pdf() -> bytes:
    w = PdfFileWriter()
    content = generic.StreamObject(stream_data=b"BT /F1 12 Tf 72 770 Td (Test) Tj ET")
    font = generic.DictionaryObject({
        generic.pdf_name("/Type"): generic.pdf_name("/Font"),
        generic.pdf_name("/Subtype"): generic.pdf_name("/Type1"),
        generic.pdf_name("/BaseFont"): generic.pdf_name("/Helvetica"),
    })
    resources = generic.DictionaryObject({
        generic.pdf_name("/Font"): generic.DictionaryObject({generic.pdf_name("/F1"): font}),
    })
    page = PageObject(contents=w.add_object(content), media_box=(0, 0, PAGE_W, PAGE_H),
                      resources=resources)
    w.insert_page(page)
    out = io.BytesIO()
    w.write(out)
    return out.getvalue()


@lru_cache(maxsize=1)
def software_signer() -> signers.SimpleSigner:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "Nguyễn Thị Hồng Nhung"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Thông tin và Truyền thông"),
        x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
    ])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    cert_asn1 = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    key_asn1 = asn1_keys.PrivateKeyInfo.load(key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return signers.SimpleSigner(signing_cert=cert_asn1, signing_key=key_asn1,
                                cert_registry=SimpleCertificateStore.from_certs([cert_asn1]))


def sign_visible(spec: AppearanceSpec, box: tuple[int, int, int, int], when: datetime,
                 pdf: bytes | None = None, pass_params: bool = True) -> bytes:
    """Sign into a new visible field on page 1, the way signer.pdfsign does."""
    style, params = stamp_style(spec, when)
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf or one_page_pdf()))
    meta = signers.PdfSignatureMetadata(field_name=FIELD, md_algorithm="sha256")
    pdf_signer = signers.PdfSigner(
        meta, software_signer(), stamp_style=style,
        new_field_spec=fields.SigFieldSpec(FIELD, on_page=0, box=box))
    out = io.BytesIO()
    pdf_signer.sign_pdf(writer, appearance_text_params=params if pass_params else None,
                        output=out)
    return out.getvalue()


# ---------------------------------------------------------------- appearance text


def appearance_stream(pdf: bytes) -> generic.StreamObject:
    reader = PdfFileReader(io.BytesIO(pdf))
    for annot_ref in reader.root["/Pages"]["/Kids"][0].get_object()["/Annots"]:
        annot = annot_ref.get_object()
        if annot.get("/T") == FIELD:
            return annot["/AP"]["/N"]
    raise AssertionError("no signature widget")


def _parse_tounicode(cmap: bytes) -> dict[int, str]:
    """bfchar / bfrange entries of a ToUnicode CMap (both forms pyHanko writes)."""
    out: dict[int, str] = {}

    def utf16(hexstr: bytes) -> str:
        return bytes.fromhex(hexstr.decode()).decode("utf-16-be")

    for block in re.findall(rb"beginbfchar(.*?)endbfchar", cmap, re.S):
        for src, dst in re.findall(rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>", block):
            out[int(src, 16)] = utf16(dst)
    for block in re.findall(rb"beginbfrange(.*?)endbfrange", cmap, re.S):
        for lo, hi, rest in re.findall(
                rb"<([0-9a-fA-F]+)>\s*<([0-9a-fA-F]+)>\s*(\[[^\]]*\]|<[0-9a-fA-F]+>)", block):
            lo_i, hi_i = int(lo, 16), int(hi, 16)
            if rest.startswith(b"["):
                targets = re.findall(rb"<([0-9a-fA-F]+)>", rest)
                for i, t in enumerate(targets):
                    out[lo_i + i] = utf16(t)
            else:
                base = int(rest[1:-1], 16)
                for i in range(hi_i - lo_i + 1):
                    out[lo_i + i] = chr(base + i)
    return out


@dataclass(frozen=True)
class TextLine:
    text: str  # decoded through the font's ToUnicode CMap
    size: float  # font size (Tf)
    x: float  # start of the baseline (Tm), in the appearance's coordinates
    y: float
    advance: float  # sum of the Td moves after the glyphs: the width the layout assumed
    drawn: float  # the width a viewer draws: /W widths of the glyphs minus TJ adjustments


def _cid_widths(type0: generic.DictionaryObject) -> dict[int, float]:
    """The descendant CIDFont's /W array: `c [w1 w2 ...]` and `c_first c_last w` forms."""
    items = list(type0["/DescendantFonts"][0]["/W"])
    out: dict[int, float] = {}
    i = 0
    while i < len(items):
        first = int(items[i])
        if isinstance(items[i + 1], list):
            for k, w in enumerate(items[i + 1]):
                out[first + k] = float(w)
            i += 2
        else:
            for cid in range(first, int(items[i + 1]) + 1):
                out[cid] = float(items[i + 2])
            i += 3
    return out


def appearance_text(pdf: bytes) -> tuple[list[TextLine], tuple[float, float]]:
    """Every BT..ET of the signature's appearance stream, decoded through the ToUnicode CMap
    of the font it selects (not through /ActualText), and the stream's BBox size."""
    ap = appearance_stream(pdf)
    x0, y0, x1, y1 = (float(v) for v in ap["/BBox"])
    fonts = ap["/Resources"]["/Font"]
    cmaps: dict[str, dict[int, str]] = {}
    widths: dict[str, dict[int, float]] = {}
    lines: list[TextLine] = []
    for bt in re.findall(rb"\bBT\b(.*?)\bET\b", ap.data, re.S):
        tf = re.search(rb"/(\w+)\s+([\d.]+)\s+Tf", bt)
        assert tf is not None, bt
        font_name = tf.group(1).decode()
        if font_name not in cmaps:
            cmaps[font_name] = _parse_tounicode(fonts["/" + font_name]["/ToUnicode"].data)
            widths[font_name] = _cid_widths(fonts["/" + font_name])
        cmap, width_of = cmaps[font_name], widths[font_name]
        tm = re.search(rb"1 0 0 1 (-?[\d.]+) (-?[\d.]+) Tm", bt)
        assert tm is not None, bt
        text = ""
        drawn = 0.0  # thousandths of an em
        for arr in re.findall(rb"\[(.*?)\]\s*TJ|<([0-9a-fA-F]*)>\s*Tj", bt, re.S):
            if arr[0]:
                drawn -= sum(float(n) for n in re.findall(rb"(?<![<0-9a-fA-F])(-?[\d.]+)",
                                                          re.sub(rb"<[^>]*>", b" ", arr[0])))
            for hexstr in re.findall(rb"<([0-9a-fA-F]*)>", arr[0]) if arr[0] else [arr[1]]:
                for i in range(0, len(hexstr), 4):
                    cid = int(hexstr[i:i + 4], 16)
                    text += cmap[cid]
                    drawn += width_of[cid]
        advance = sum(float(m) for m in re.findall(rb"(-?[\d.]+) -?[\d.]+ Td", bt))
        size = float(tf.group(2))
        lines.append(TextLine(text=text, size=size, x=float(tm.group(1)),
                              y=float(tm.group(2)), advance=advance, drawn=drawn * size / 1000))
    return lines, (abs(x1 - x0), abs(y1 - y0))  # pyHanko writes [0 h w 0]


# --------------------------------------------------------------------- poppler


def poppler(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise AssertionError(f"{tool} (poppler-utils) is not installed; scripts/test installs it")
    return path


def pdffonts(pdf_path: Path) -> list[dict[str, str]]:
    """pdffonts' table, split on the column widths its dashed header line shows."""
    out = subprocess.run([poppler("pdffonts"), str(pdf_path)], check=True,
                         capture_output=True, text=True, timeout=30).stdout.splitlines()
    header, dashes = out[0], out[1]
    spans, start = [], 0
    for chunk in dashes.split(" "):
        spans.append((start, start + len(chunk)))
        start += len(chunk) + 1
    names = [header[a:b].strip() for a, b in spans]
    return [{n: line[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)}
            for line in out[2:]]


def pdftotext(pdf_path: Path) -> str:
    return subprocess.run([poppler("pdftotext"), "-enc", "UTF-8", str(pdf_path), "-"],
                          check=True, capture_output=True, text=True, timeout=30).stdout


def render_page(pdf_path: Path, tmp: Path) -> Image.Image:
    prefix = tmp / "page"
    subprocess.run([poppler("pdftoppm"), "-png", "-r", str(RENDER_DPI), "-f", "1", "-l", "1",
                    "-singlefile", str(pdf_path), str(prefix)], check=True, timeout=30)
    with Image.open(prefix.with_suffix(".png")) as img:
        return img.convert("RGB")


def crop_box(page: Image.Image, box: tuple[int, int, int, int]) -> Image.Image:
    """The field's rectangle (PDF points, origin bottom left) on the rendered page."""
    k = RENDER_DPI / 72
    x1, y1, x2, y2 = box
    return page.crop((round(x1 * k), round((PAGE_H - y2) * k),
                      round(x2 * k), round((PAGE_H - y1) * k)))


def count_pixels(img: Image.Image, test) -> int:  # type: ignore[no-untyped-def]
    pixels = getattr(img, "get_flattened_data", None) or img.getdata  # Pillow 13 renamed it
    return sum(1 for px in pixels() if test(px))


def is_ink(px: tuple[int, int, int]) -> bool:
    return min(px) < 200


def is_red(px: tuple[int, int, int]) -> bool:
    r, g, b = px
    return r > 150 and g < 110 and b < 110


def is_blue(px: tuple[int, int, int]) -> bool:
    r, g, b = px
    return b > 120 and r < 110 and g < 130 and b - r > 50
