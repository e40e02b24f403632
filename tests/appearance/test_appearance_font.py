"""The vendored font: every Vietnamese letter, its licence, the prepared in-memory copy."""

from __future__ import annotations

import io
import unicodedata

from fontTools import ttLib

from signer import appearance

VOWELS = "aăâeêioôơuưy"
TONES = ("", "\u0300", "\u0301", "\u0303", "\u0309", "\u0323")  # ngang huyền sắc ngã hỏi nặng
CONSONANTS = "bcdđghklmnpqrstvx"


def vietnamese_alphabet() -> set[str]:
    lower = {unicodedata.normalize("NFC", v + t) for v in VOWELS for t in TONES}
    lower |= set(CONSONANTS) | set("fjwz")  # foreign letters, in names and loanwords
    return lower | {c.upper() for c in lower}


def test_alphabet_is_complete() -> None:
    letters = vietnamese_alphabet()
    # 12 vowels x 6 tones + 17 consonants + 4 foreign letters, upper and lower case
    assert len(letters) == 2 * (12 * 6 + 17 + 4)
    assert all(len(c) == 1 for c in letters)  # every one has a precomposed code point
    assert {"ơ", "ư", "đ", "Đ", "ễ", "Ỗ", "ự", "Ỵ", "ỷ", "Ẫ"} <= letters


def test_vendored_font_covers_vietnamese() -> None:
    tt = ttLib.TTFont(appearance.FONT_FILE)
    cmap = tt.getBestCmap()
    missing = sorted(c for c in vietnamese_alphabet() | set("0123456789/:+-.,()") if
                     ord(c) not in cmap)
    assert missing == []
    # the combining tone marks too, for text typed in decomposed form
    assert all(ord(t) in cmap for t in TONES[1:])
    assert tt["name"].getDebugName(6) == "LiberationSerif"


def test_prepared_font_keeps_vietnamese_at_1000_units() -> None:
    font = appearance._font()
    assert appearance._font() is font  # parsed once per process
    assert {ord(c) for c in vietnamese_alphabet()} <= font.codepoints
    tt = ttLib.TTFont(io.BytesIO(font.data))
    assert tt["head"].unitsPerEm == 1000  # what pyHanko's /W and TJ numbers assume
    assert "FFTM" not in tt
    assert tt["hmtx"]["A"][0] < 1000  # widths rescaled along with the em


def test_licence_is_vendored_with_the_font() -> None:
    fonts = appearance.FONT_FILE.parent
    licence = (fonts / "LICENSE-LiberationSerif.txt").read_text(encoding="utf-8")
    assert "SIL OPEN FONT LICENSE Version 1.1" in licence
    assert "Reserved Font Name Liberation" in licence
    assert sorted(p.name for p in fonts.iterdir() if p.suffix == ".ttf") == [
        "LiberationSerif-Regular.ttf"]
