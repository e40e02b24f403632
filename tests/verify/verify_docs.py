"""PDF documents for the verification tests: a plain form, signing helpers and attack builders."""

from __future__ import annotations

import re
from datetime import datetime
from io import BytesIO

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import signers, timestamps
from pyhanko.sign.fields import MDPPerm, SigFieldSpec, SigSeedSubFilter
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore
from verify_pki import Party, TestPki, TestRevocation

from signer.revocation import InProcessFetchers
from signer.verify import SignatureReport, VerificationReport

CONTENT = (b"BT /F1 18 Tf 72 760 Td (QUYET DINH so 123/QD-UBND) Tj ET\n"
           b"BT /F1 12 Tf 72 730 Td (So tien: 1.000.000 dong) Tj ET\n")
FIELD_AP = b"/Tx BMC BT /F1 12 Tf 2 6 Td (Nguyen Van A) Tj ET EMC"


def only(report: VerificationReport, field: str) -> SignatureReport:
    """The report of the signature (or timestamp) in field `field`."""
    return next(s for s in report.signatures if s.field_name == field)


def codes(sig: SignatureReport) -> set[str]:
    return {r.code for r in sig.reasons}


def _pdf(objects: list[bytes]) -> bytes:
    """A classic-xref PDF from numbered object bodies (object i+1 = objects[i])."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += (b"trailer\n<< /Size %d /Root 1 0 R /ID [<0123456789abcdef0123456789abcdef> "
            b"<0123456789abcdef0123456789abcdef>] >>\nstartxref\n%d\n%%%%EOF\n"
            % (len(objects) + 1, xref))
    return bytes(out)


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def base_pdf() -> bytes:
    """One page of text and one filled text field (HoTen), unsigned."""
    return _pdf([
        b"<< /Type /Catalog /Pages 2 0 R /AcroForm 6 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> /Annots [7 0 R] >>",
        _stream(CONTENT),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Fields [7 0 R] /DA (/F1 0 Tf 0 g) /DR << /Font << /F1 5 0 R >> >> >>",
        b"<< /Type /Annot /Subtype /Widget /FT /Tx /T (HoTen) /V (Nguyen Van A) /F 4 "
        b"/Rect [72 600 300 620] /P 3 0 R /DA (/F1 12 Tf 0 g) /AP << /N 8 0 R >> >>",
        _stream(FIELD_AP, b"/Type /XObject /Subtype /Form /BBox [0 0 228 20] "
                          b"/Resources << /Font << /F1 5 0 R >> >> "),
    ])


def signer_for(party: Party, pki: TestPki) -> signers.SimpleSigner:
    return signers.SimpleSigner(
        signing_cert=party.asn1, signing_key=party.asn1_key,
        cert_registry=SimpleCertificateStore.from_certs(pki.chain))


def timestamper(pki: TestPki, at: datetime | None = None) -> timestamps.TimeStamper:
    return timestamps.DummyTimeStamper(
        tsa_cert=pki.tsa.asn1, tsa_key=pki.tsa.asn1_key,
        certs_to_embed=SimpleCertificateStore.from_certs(pki.chain), fixed_dt=at)


def signing_context(pki: TestPki, source: TestRevocation) -> ValidationContext:
    return ValidationContext(trust_roots=[pki.root.asn1], allow_fetching=True,
                             fetcher_backend=InProcessFetchers(source),
                             revocation_mode="require")


def sign(data: bytes, pki: TestPki, *, party: Party | None = None, field: str = "Sig1",
         level: str = "B-B", source: TestRevocation | None = None, certify: bool = False,
         docmdp: MDPPerm = MDPPerm.FILL_FORMS, ts_at: datetime | None = None,
         subfilter: SigSeedSubFilter = SigSeedSubFilter.PADES,
         box: tuple[int, int, int, int] | None = None) -> bytes:
    """Sign at PAdES `level` (B-B, B-T, B-LT, B-LTA) with a software key."""
    lt = level in ("B-LT", "B-LTA")
    meta = signers.PdfSignatureMetadata(
        field_name=field, subfilter=subfilter, md_algorithm="sha256",
        embed_validation_info=lt, use_pades_lta=level == "B-LTA",
        validation_context=signing_context(pki, source or pki.source()) if lt else None,
        certify=certify, docmdp_permissions=docmdp)
    spec = SigFieldSpec(field, box=box) if box else None
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    out = signers.sign_pdf(
        writer, meta, signer=signer_for(party or pki.signer, pki),
        timestamper=timestamper(pki, ts_at) if level != "B-B" else None,
        new_field_spec=spec)
    return out.getvalue()


def timestamp_document(data: bytes, pki: TestPki, field: str = "DocTs") -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    out = signers.PdfTimeStamper(timestamper(pki), field_name=field).timestamp_pdf(
        writer, "sha256")
    return out.getvalue()


# -- legitimate later changes -------------------------------------------------------------

def _n(name: str) -> generic.NameObject:
    return generic.NameObject(name)


def _nums(*values: int) -> generic.ArrayObject:
    return generic.ArrayObject([generic.NumberObject(v) for v in values])


def _page(w: IncrementalPdfFileWriter) -> tuple[generic.IndirectObject, generic.DictionaryObject]:
    ref = w.root["/Pages"]["/Kids"].raw_get(0)
    return ref, ref.get_object()


def _font(w: IncrementalPdfFileWriter) -> generic.IndirectObject:
    return _page(w)[1]["/Resources"]["/Font"].raw_get("/F1")


def _xobject(w: IncrementalPdfFileWriter, content: bytes, width: int,
             height: int) -> generic.IndirectObject:
    """A form XObject (appearance stream) using the document's font /F1."""
    return w.add_object(generic.StreamObject({
        _n("/Type"): _n("/XObject"), _n("/Subtype"): _n("/Form"),
        _n("/BBox"): _nums(0, 0, width, height),
        _n("/Resources"): generic.DictionaryObject({_n("/Font"): generic.DictionaryObject(
            {_n("/F1"): _font(w)})}),
    }, stream_data=content))


def _write(w: IncrementalPdfFileWriter) -> bytes:
    out = BytesIO()
    w.write(out)
    return out.getvalue()

def fill_field(data: bytes, value: str = "Le Thi C") -> bytes:
    """Change the text field's value and appearance in an incremental update."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    field_ref = w.root["/AcroForm"]["/Fields"].raw_get(0)
    fld = field_ref.get_object()
    fld["/V"] = generic.TextStringObject(value)
    fld["/AP"] = generic.DictionaryObject({_n("/N"): _xobject(
        w, b"/Tx BMC BT /F1 12 Tf 2 6 Td (" + value.encode() + b") Tj ET EMC", 228, 20)})
    w.mark_update(field_ref)
    return _write(w)


# -- attacks ------------------------------------------------------------------------------

OVERLAY = (b"q 1 1 1 rg 70 725 300 20 re f Q\n"
           b"BT /F1 12 Tf 72 730 Td (So tien: 9.000.000.000 dong) Tj ET\n")
COVER = b"q 1 1 1 rg 0 0 300 20 re f Q BT /F1 12 Tf 2 6 Td (So tien: 9.000.000.000 dong) Tj ET"


def isa_add_content(data: bytes) -> bytes:
    """ISA: an incremental update appends a content stream to the signed page."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    ref, page = _page(w)
    extra = w.add_object(generic.StreamObject(stream_data=OVERLAY))
    page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"), extra])
    w.mark_update(ref)
    return _write(w)


def isa_new_root(data: bytes) -> bytes:
    """ISA: the update points the trailer at a brand-new catalog with another page tree."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    resources = _page(w)[1].raw_get("/Resources")
    pages = generic.DictionaryObject({_n("/Type"): _n("/Pages"),
                                      _n("/Count"): generic.NumberObject(1)})
    pages_ref = w.add_object(pages)
    page = generic.DictionaryObject({
        _n("/Type"): _n("/Page"), _n("/Parent"): pages_ref,
        _n("/MediaBox"): _nums(0, 0, 595, 842), _n("/Resources"): resources,
        _n("/Contents"): w.add_object(generic.StreamObject(stream_data=CONTENT + OVERLAY)),
    })
    pages["/Kids"] = generic.ArrayObject([w.add_object(page)])
    catalog = generic.DictionaryObject({
        _n("/Type"): _n("/Catalog"), _n("/Pages"): pages_ref,
        _n("/AcroForm"): w.root.raw_get("/AcroForm"),
    })
    w._root = w.add_object(catalog)  # the attack is precisely this: a new /Root
    return _write(w)


def _annotation(w: IncrementalPdfFileWriter, subtype: str, flags: int,
                page_ref: generic.IndirectObject) -> generic.DictionaryObject:
    annot = generic.DictionaryObject({
        _n("/Type"): _n("/Annot"), _n("/Subtype"): _n(subtype),
        _n("/Rect"): _nums(70, 725, 370, 745), _n("/F"): generic.NumberObject(flags),
        _n("/P"): page_ref,
        _n("/AP"): generic.DictionaryObject({_n("/N"): _xobject(w, COVER, 300, 20)}),
    })
    if subtype == "/FreeText":
        annot["/DA"] = generic.TextStringObject("/F1 12 Tf 0 g")
        annot["/Contents"] = generic.TextStringObject("So tien: 9.000.000.000 dong")
    return annot


def annotate(data: bytes, subtype: str = "/FreeText") -> bytes:
    """EAA: a FreeText (or Stamp) annotation whose appearance covers signed text."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    ref, page = _page(w)
    annot = w.add_object(_annotation(w, subtype, 4, ref))
    page["/Annots"] = generic.ArrayObject(list(page.raw_get("/Annots")) + [annot])
    w.mark_update(ref)
    return _write(w)


def sneaky_signature(data: bytes, pki: TestPki) -> bytes:
    """SSA: a new signature field whose appearance paints over the signed amount."""
    return sign(data, pki, party=pki.signer2, field="Sneaky", box=(70, 725, 370, 745),
                level="B-T")


def replace_font(data: bytes) -> bytes:
    """Shadow 'replace': the font the signed text and form are drawn with is replaced,
    under its old object number, by another font (glyphs change, bytes signed do not)."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    font_ref = _font(w)
    w.objects[(font_ref.generation, font_ref.idnum)] = generic.DictionaryObject({
        _n("/Type"): _n("/Font"), _n("/Subtype"): _n("/Type1"), _n("/BaseFont"): _n("/Symbol"),
    })
    return _write(w)


def replace_field_value(data: bytes) -> bytes:
    """Shadow 'replace' on a certified document: the form field's value is changed, which
    DocMDP P=1 forbids (P=2 would allow it)."""
    return fill_field(data, "Nguyen Van X")


def hide_and_replace(data: bytes) -> bytes:
    """Shadow 'hide-and-replace': a later revision's xref section re-points the page's
    content stream object at new content."""
    w = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    content_ref = _page(w)[1].raw_get("/Contents")
    w.objects[(content_ref.generation, content_ref.idnum)] = generic.StreamObject(
        stream_data=OVERLAY)
    return _write(w)


def hide_prepared(pki: TestPki, *, certify: bool) -> tuple[bytes, bytes]:
    """Shadow 'hide': before signing, the page carries an overlay annotation made invisible
    by its Hidden flag; after signing, an update only flips that flag to Print.
    Returns (signed, attacked)."""
    w = IncrementalPdfFileWriter(BytesIO(base_pdf()), strict=False)
    ref, page = _page(w)
    annot_ref = w.add_object(_annotation(w, "/Square", 2, ref))
    page["/Annots"] = generic.ArrayObject(list(page.raw_get("/Annots")) + [annot_ref])
    w.mark_update(ref)
    signed = sign(_write(w), pki, level="B-T", certify=certify)
    w = IncrementalPdfFileWriter(BytesIO(signed), strict=False)
    annot_ref = _page(w)[1]["/Annots"].raw_get(1)
    annot_ref.get_object()["/F"] = generic.NumberObject(4)
    w.mark_update(annot_ref)
    return signed, _write(w)


# -- byte-level forgeries (USF, SWA) ------------------------------------------------------

_BR = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")
_CONTENTS = re.compile(rb"/Contents\s*<([0-9a-fA-F]*)>")


def _last(pattern: re.Pattern[bytes], data: bytes) -> re.Match[bytes]:
    matches = list(pattern.finditer(data))
    assert matches, "pattern not found"
    return matches[-1]


def _same_length(old: bytes, new: bytes) -> bytes:
    assert len(new) <= len(old), (old, new)
    return new + b" " * (len(old) - len(new))


def usf_no_byterange(data: bytes) -> bytes:
    m = _last(_BR, data)
    return data[:m.start()] + _same_length(m.group(0), b"/ByteRangX [0 0 0 0]") + data[m.end():]


def usf_byterange(data: bytes, values: tuple[int, int, int, int]) -> bytes:
    m = _last(_BR, data)
    new = b"/ByteRange [%d %d %d %d]" % values
    return data[:m.start()] + _same_length(m.group(0), new) + data[m.end():]


def usf_contents(data: bytes, hex_value: bytes) -> bytes:
    """Overwrite /Contents in place: `hex_value` is padded with zeros to the reserved size."""
    m = _last(_CONTENTS, data)
    old = m.group(1)
    new = hex_value + b"0" * (len(old) - len(hex_value))
    return data[:m.start(1)] + new + data[m.end(1):]


def usf_no_contents(data: bytes) -> bytes:
    m = _last(_CONTENTS, data)
    old = m.group(0)
    new = b"/Contentz <" + m.group(1) + b">"
    return data[:m.start()] + new[:len(old)] + data[m.end():]


def _xref_entries(data: bytes, offset: int) -> dict[int, int]:
    """In-use entries (object number -> offset) of the classic xref table at `offset`."""
    lines = data[offset:data.index(b"trailer", offset)].split(b"\n")[1:]
    entries: dict[int, int] = {}
    i = 0
    while i < len(lines):
        head = lines[i].split()
        i += 1
        if len(head) != 2:
            continue
        first, count = int(head[0]), int(head[1])
        for n in range(count):
            off, _gen, kind = lines[i + n].split()[:3]
            if kind == b"n":
                entries[first + n] = int(off)
        i += count
    return entries


def swa(data: bytes) -> bytes:
    """Signature wrapping: the signed bytes stay intact, but the second signed part is moved
    behind attacker objects placed right after the signature value. A /ByteRange written
    there (outside the signed bytes) closes the signature dictionary and points at the moved
    part, so the digest still matches; a new xref section makes a reader use the attacker's
    page (with extra content) and find the moved objects."""
    m = _last(_BR, data)
    _, b, c, d = (int(x) for x in m.groups())
    assert c + d == len(data) and m.start() >= c, "expects /ByteRange after /Contents"
    p1, gap, p2 = data[:b], data[b:c], data[c:]
    reader = PdfFileReader(BytesIO(data), strict=False)
    page_ref = reader.root["/Pages"]["/Kids"].raw_get(0)
    page = page_ref.get_object()
    page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"),
                                             generic.IndirectObject(99, 0, reader)])
    page_bytes = BytesIO()
    page.write_to_stream(page_bytes, None)
    # The rest of the signature dictionary (/Type, /SubFilter, ...) is repeated after the
    # new /ByteRange, so the dictionary still reads as a complete signature.
    rest = data[m.end():data.index(b"endobj", m.end()) + len(b"endobj")]
    close = b" /ByteRange [0 %010d %010d %010d]" + rest.replace(b"%", b"%%") + b"\n"
    page_obj = b"%d 0 obj\n" % page_ref.idnum + page_bytes.getvalue() + b"\nendobj\n"
    content_obj = b"99 0 obj\n" + _stream(OVERLAY) + b"\nendobj\n"
    k = len(close % (0, 0, 0)) + len(page_obj) + len(content_obj)
    new_c = c + k
    inserted = close % (b, new_c, d) + page_obj + content_obj
    assert len(inserted) == k
    # Everything that was in the second part moved by k; list it again at its new place.
    old_xref = int(_last(re.compile(rb"startxref\s+(\d+)"), data).group(1))
    moved = {n: off + k for n, off in _xref_entries(data, old_xref).items() if off >= c}
    moved[page_ref.idnum] = c + len(close % (0, 0, 0))
    moved[99] = moved[page_ref.idnum] + len(page_obj)
    body = p1 + gap + inserted + p2
    xref_at = len(body)
    table = b"xref\n0 1\n0000000000 65535 f \n" + b"".join(
        b"%d 1\n%010d 00000 n \n" % (n, off) for n, off in sorted(moved.items()))
    trailer = (b"trailer\n<< /Size 100 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
               % (old_xref + k, xref_at))
    return body + table + trailer
