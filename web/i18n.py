"""Languages of the web app (Flask-Babel): Vietnamese by default, English when a person picks it."""

from __future__ import annotations

from urllib.parse import urlencode

from flask import Flask, Response, current_app, request
from flask_babel import Babel, get_locale

LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"
LANGUAGE_NAMES = {"vi": "Tiếng Việt", "en": "English"}  # each in its own language
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600


def select_language() -> str:
    """`?lang=vi|en`, else the `lang` cookie, else Vietnamese. Accept-Language is not
    consulted: the city's pages are in Vietnamese unless a person chooses English."""
    asked = request.args.get("lang", "")
    if asked in LANGUAGES:
        return asked
    remembered = request.cookies.get(COOKIE, "")
    return remembered if remembered in LANGUAGES else DEFAULT_LANGUAGE


def current_language() -> str:
    """The language of the current request ("vi" or "en")."""
    locale = get_locale()
    language = locale.language if locale is not None else DEFAULT_LANGUAGE
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


def language_url(language: str) -> str:
    """This page in `language` (the same path and query, `lang` replaced)."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k != "lang"]
    args.append(("lang", language))
    return f"{request.path}?{urlencode(args)}"


def init_app(app: Flask) -> None:
    """Babel over web/translations, the language selector, the switcher's helpers, and the
    `lang` cookie that remembers an explicit choice."""
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LANGUAGE
    app.config["BABEL_DEFAULT_TIMEZONE"] = "Asia/Ho_Chi_Minh"
    Babel(app, locale_selector=select_language)

    @app.context_processor
    def _language_helpers() -> dict[str, object]:
        return {"current_lang": current_language(), "lang_url": language_url,
                "languages": LANGUAGES, "language_names": LANGUAGE_NAMES}

    @app.after_request
    def _remember_language(response: Response) -> Response:
        asked = request.args.get("lang", "")
        if asked in LANGUAGES and request.cookies.get(COOKIE) != asked:
            settings = current_app.config["KYSO_SETTINGS"]
            response.set_cookie(COOKIE, asked, max_age=COOKIE_MAX_AGE, samesite="Lax",
                                httponly=True, secure=settings.web.session_cookie_secure)
        if response.mimetype == "text/html":
            # The same URL answers in either language: caches must key on the cookie.
            response.vary.add("Cookie")
            response.headers.setdefault("Content-Language", current_language())
        return response
