"""Languages of the web pages (Vietnamese by default, English on request) and their catalogs."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po
from flask import Flask

from kyso.app import Kyso
from kyso.settings import Settings
from web import create_app

WEB = Path(__file__).resolve().parents[2] / "web"
TRANSLATIONS = WEB / "translations"
LANGUAGES = ("vi", "en")


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    """The app over a fresh, migrated SQLite database with no CA (no HSM needed)."""
    settings = Settings(data_dir=tmp_path)
    kyso = Kyso(settings)
    kyso.migrate()
    kyso.close()
    return create_app(settings)


# -- choosing the language ------------------------------------------------------------------

def test_vietnamese_by_default_whatever_the_browser_prefers(app: Flask) -> None:
    client = app.test_client()
    for accept in (None, "en-US,en;q=0.9"):
        got = client.get("/", headers={"Accept-Language": accept} if accept else {})
        html = got.get_data(as_text=True)
        assert got.status_code == 200
        assert '<html lang="vi">' in html
        assert "<title>kyso — Kho chứng thư số</title>" in html
        assert "Thời gian hiển thị theo giờ Việt Nam" in html  # with its diacritics
        assert got.headers["Content-Language"] == "vi"
        assert "Cookie" in got.headers["Vary"]
        assert "lang=" not in got.headers.get("Set-Cookie", "")


def test_english_is_chosen_with_lang_and_remembered(app: Flask) -> None:
    client = app.test_client()
    got = client.get("/?lang=en")
    html = got.get_data(as_text=True)
    assert '<html lang="en">' in html and "<title>kyso — Certificate repository</title>" in html
    assert "Kho chứng thư số" not in html
    cookie = next(c for c in got.headers.getlist("Set-Cookie") if c.startswith("lang="))
    assert cookie.startswith("lang=en;") and "SameSite=Lax" in cookie
    # The cookie carries the choice to the next pages.
    later = client.get("/verify").get_data(as_text=True)
    assert '<html lang="en">' in later and "Verify a signed PDF" in later
    # ... until Vietnamese is chosen again.
    back = client.get("/verify?lang=vi").get_data(as_text=True)
    assert '<html lang="vi">' in back and "Kiểm tra chữ ký số trên tệp PDF" in back
    assert '<html lang="vi">' in client.get("/").get_data(as_text=True)


def test_unknown_language_is_ignored(app: Flask) -> None:
    client = app.test_client()
    got = client.get("/?lang=fr")
    assert '<html lang="vi">' in got.get_data(as_text=True)
    assert not any(c.startswith("lang=") for c in got.headers.getlist("Set-Cookie"))
    client.set_cookie("lang", "xx")
    assert '<html lang="vi">' in client.get("/").get_data(as_text=True)


def test_language_switcher_links_to_the_same_page(app: Flask) -> None:
    client = app.test_client()
    vi = client.get("/verify").get_data(as_text=True)
    assert 'href="/verify?lang=en"' in vi and 'aria-current="true">Tiếng Việt' in vi
    en = client.get("/verify?lang=en&x=1").get_data(as_text=True)
    assert 'href="/verify?x=1&amp;lang=vi"' in en and 'aria-current="true">English' in en


def test_error_pages_and_json_errors_follow_the_language(app: Flask) -> None:
    client = app.test_client()
    page = client.get("/no-such-page")
    assert page.status_code == 404
    text = page.get_data(as_text=True)
    assert "404 — Không tìm thấy" in text and "Không có tài nguyên này." in text
    assert "Về trang chủ" in text and "Mã yêu cầu" in text
    page_en = client.get("/no-such-page?lang=en").get_data(as_text=True)
    assert "404 — Not found" in page_en and "This resource does not exist." in page_en

    api = app.test_client().get("/api/nothing-here")  # no lang cookie: Vietnamese
    error = api.get_json()["error"]
    assert set(error) == {"code", "message", "request_id"} and error["code"] == "not_found"
    assert error["message"] == "Không có tài nguyên này."
    wrong = client.post("/healthz?lang=en", headers={"Accept": "application/json"})
    assert wrong.status_code == 405
    assert wrong.get_json()["error"] == {
        "code": "method_not_allowed",
        "message": "This method is not supported at this address.",
        "request_id": wrong.headers["X-Request-ID"],
    }


# -- the catalogs ---------------------------------------------------------------------------

def _po(language: str) -> Catalog:
    with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.po", "rb") as fh:
        return read_po(fh, locale=language)


def _entries(catalog: Catalog) -> dict[str, str]:
    return {str(m.id): str(m.string) for m in catalog if m.id and m.string}


def _extracted() -> set[str]:
    """Every message the code and templates ask for, found the way pybabel finds it."""
    with open(WEB / "babel.cfg", encoding="utf-8") as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    keywords = {**DEFAULT_KEYWORDS, "lazy_gettext": None}
    return {str(message) for _, _, message, _, _ in
            extract_from_dir(str(WEB), method_map, options_map, keywords=keywords)}


def test_every_message_is_in_the_template_and_translated_to_vietnamese() -> None:
    extracted = _extracted()
    assert "Verify a signed PDF" in extracted and "Not found" in extracted  # sanity
    with open(TRANSLATIONS / "messages.pot", "rb") as fh:
        template = {str(m.id) for m in read_po(fh) if m.id}
    assert extracted - template == set(), "run pybabel extract (see web/babel.cfg)"
    assert template - extracted == set(), "messages.pot lists messages nobody uses"
    for language in LANGUAGES:
        catalog = _po(language)
        assert {str(m.id) for m in catalog if m.id} == template, language
        assert not catalog.fuzzy and not [m.id for m in catalog if m.id and m.fuzzy]
        # Placeholders match their msgid (%(limit)s stays %(limit)s).
        assert not list(catalog.check()), language
    vietnamese = _po("vi")
    assert [m.id for m in vietnamese if m.id and not m.string] == []


def test_compiled_catalogs_match_their_po_files() -> None:
    for language in LANGUAGES:
        catalog = _po(language)
        compiled = io.BytesIO()
        write_mo(compiled, catalog)
        compiled.seek(0)
        with open(TRANSLATIONS / language / "LC_MESSAGES" / "messages.mo", "rb") as fh:
            committed = read_mo(fh)
        assert _entries(committed) == _entries(read_mo(compiled)), (
            f"{language}: messages.mo is stale: run pybabel compile -d web/translations")
