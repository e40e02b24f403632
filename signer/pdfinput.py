"""Reading an untrusted PDF: size limit, header, damage and encryption turned into clear errors
(for both the signer and the verifier). pyHanko is imported only where a PDF is opened: the
limits and checks here are cheap to import (the CLI and the web app use them up front)."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from signer.errors import NotAPdf, PdfDamaged, PdfEncrypted, PdfTooLarge

if TYPE_CHECKING:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.pdf_utils.reader import PdfFileReader

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 200 * 1024 * 1024
HEADER_WINDOW = 1024  # PDF readers accept the %PDF- header anywhere in the first 1 KiB
TRAILER_WINDOW = 32 * 1024


def check_size(size: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    if size > max_bytes:
        raise PdfTooLarge(f"the file is too large: {size} bytes ({size / 1048576:.1f} MB); "
                          f"at most {max_bytes} bytes ({max_bytes / 1048576:.0f} MB) are "
                          "accepted")


def check_header(head: bytes) -> None:
    if b"%PDF-" not in head[:HEADER_WINDOW]:
        raise NotAPdf("the file is not a PDF document (no %PDF- header)")


def check_input(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Refuse before parsing: too large, not a PDF, or cut short (no %%EOF near its end)."""
    check_size(len(data), max_bytes)
    check_header(data)
    if b"%%EOF" not in data[-TRAILER_WINDOW:]:
        raise PdfDamaged("the PDF is truncated or damaged (no %%EOF at its end)")


def short(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, for a one-line error."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:limit]


def open_pdf(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> PdfFileReader:
    """A reader over `data`. A file encrypted with an owner password only (empty user
    password) opens; one that needs a password is PdfEncrypted."""
    from pyhanko.pdf_utils.crypt import AuthStatus
    from pyhanko.pdf_utils.reader import PdfFileReader

    check_input(data, max_bytes)
    try:
        reader = PdfFileReader(io.BytesIO(data), strict=False)
        if reader.encrypted and reader.decrypt("").status == AuthStatus.FAILED:
            raise PdfEncrypted("the PDF is encrypted; it cannot be read without its password")
        reader.root  # noqa: B018 - the catalog must resolve, or nothing else will
    except PdfEncrypted:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure means a damaged file
        logger.info("unreadable PDF: %s", exc)
        raise PdfDamaged(f"the PDF cannot be read (damaged or truncated): {short(exc)}") \
            from None
    return reader


def open_for_update(data: bytes, max_bytes: int = DEFAULT_MAX_BYTES) -> IncrementalPdfFileWriter:
    """An incremental writer (signing appends a revision; earlier bytes never change).
    Encrypted files are refused: the signed revision would have to be encrypted too."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    check_input(data, max_bytes)
    try:
        writer = IncrementalPdfFileWriter(io.BytesIO(data), strict=False)
        encrypted = writer.prev.encrypted
        if not encrypted:
            writer.root  # noqa: B018
    except Exception as exc:  # noqa: BLE001 - any parser failure means a damaged file
        logger.info("unreadable PDF: %s", exc)
        raise PdfDamaged(f"the PDF cannot be read (damaged or truncated): {short(exc)}") \
            from None
    if encrypted:
        raise PdfEncrypted("the PDF is encrypted; remove the password protection first")
    return writer
