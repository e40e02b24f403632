"""The report wording catalogs (signer/locale): compiled, complete, placeholders consistent."""

from __future__ import annotations

import gettext
import re
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from signer.report import LANGUAGES, message

LOCALE = Path(__file__).resolve().parents[2] / "signer" / "locale"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _po(lang: str) -> dict[str, str]:
    with open(LOCALE / lang / "LC_MESSAGES" / "report.po", "rb") as fh:
        catalog = read_po(fh)
    return {m.id: m.string for m in catalog if m.id}


def _mo(lang: str) -> dict[str, str]:
    with open(LOCALE / lang / "LC_MESSAGES" / "report.mo", "rb") as fh:
        return {k: v for k, v in gettext.GNUTranslations(fh)._catalog.items() if k}  # type: ignore[attr-defined]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compiled_catalog_matches_its_source(lang: str) -> None:
    assert _mo(lang) == _po(lang), "recompile: pybabel compile -D report -d signer/locale"


def test_every_language_has_every_message_with_the_same_placeholders() -> None:
    vi, en = _po("vi"), _po("en")
    assert vi.keys() == en.keys()
    assert not [k for k, v in {**vi, **en}.items() if not v.strip()]
    for key in vi:
        assert set(PLACEHOLDER.findall(vi[key])) == set(PLACEHOLDER.findall(en[key])), key


def test_messages_come_from_the_catalogs() -> None:
    assert message("overall.TOTAL-PASSED", "vi") == "Tất cả chữ ký hợp lệ"
    assert message("overall.TOTAL-PASSED", "en") == _po("en")["overall.TOTAL-PASSED"]
    assert message("no.such.id", "vi") == "no.such.id"
