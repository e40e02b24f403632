"""Sample PDFs for the signing tests and benchmarks: N pages of text, optionally with empty
signature fields and a text form field (made with pyHanko's writer, no other tool)."""

from __future__ import annotations

import io

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.writer import PdfFileWriter
from pyhanko.sign import fields

A4 = (595, 842)


def _n(name: str) -> generic.NameObject:
    return generic.NameObject(name)


def make_pdf(pages: int = 1, *, signature_fields: tuple[str, ...] = (),
             text_field: str | None = None) -> bytes:
    """A4 pages of Times-Roman text; `signature_fields` are empty signature fields on page 1
    (stacked in the right column); `text_field` a fillable text field on page 1."""
    w = PdfFileWriter()
    font = w.add_object(generic.DictionaryObject({
        _n("/Type"): _n("/Font"), _n("/Subtype"): _n("/Type1"),
        _n("/BaseFont"): _n("/Times-Roman"), _n("/Encoding"): _n("/WinAnsiEncoding"),
    }))
    for i in range(pages):
        lines = [f"BT /F1 14 Tf 72 770 Td (UY BAN NHAN DAN PHUONG BEN THANH - trang {i + 1}) "
                 "Tj ET"]
        lines += [f"BT /F1 11 Tf 72 {740 - 16 * k} Td (Dieu {k + 1}. Noi dung van ban so "
                  f"{i + 1}/QD-UBND, dong {k + 1}.) Tj ET" for k in range(30)]
        stream = generic.StreamObject(stream_data="\n".join(lines).encode("latin-1"))
        w.insert_page(generic.DictionaryObject({
            _n("/Type"): _n("/Page"),
            _n("/MediaBox"): generic.ArrayObject([generic.NumberObject(v)
                                                  for v in (0, 0, *A4)]),
            _n("/Contents"): w.add_object(stream),
            _n("/Resources"): generic.DictionaryObject({
                _n("/Font"): generic.DictionaryObject({_n("/F1"): font})}),
        }))
    out = io.BytesIO()
    w.write(out)
    data = out.getvalue()
    if not signature_fields and text_field is None:
        return data
    inc = IncrementalPdfFileWriter(io.BytesIO(data))
    for k, name in enumerate(signature_fields):
        fields.append_signature_field(inc, fields.SigFieldSpec(
            name, on_page=0, box=(340, 40 + 100 * k, 560, 120 + 100 * k)))
    if text_field is not None:
        _add_text_field(inc, text_field)
    out = io.BytesIO()
    inc.write(out)
    return out.getvalue()


def _add_text_field(w: IncrementalPdfFileWriter, name: str) -> None:
    page_ref = w.root["/Pages"]["/Kids"][0]
    annot = w.add_object(generic.DictionaryObject({
        _n("/Type"): _n("/Annot"), _n("/Subtype"): _n("/Widget"), _n("/FT"): _n("/Tx"),
        _n("/T"): generic.TextStringObject(name),
        _n("/Rect"): generic.ArrayObject([generic.NumberObject(v) for v in (72, 200, 300, 220)]),
        _n("/F"): generic.NumberObject(4),
        _n("/DA"): generic.TextStringObject("/Helv 10 Tf 0 g"),
    }))
    page = page_ref.get_object()
    annots = page.get("/Annots")
    if annots is None:
        page[_n("/Annots")] = generic.ArrayObject([annot])
    else:
        annots.get_object().append(annot)
    w.update_container(page)
    if "/AcroForm" not in w.root:
        w.root[_n("/AcroForm")] = w.add_object(generic.DictionaryObject(
            {_n("/Fields"): generic.ArrayObject()}))
        w.update_root()
    form = w.root["/AcroForm"]
    form["/Fields"].append(annot)
    w.update_container(form)
