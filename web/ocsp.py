"""The OCSP responder's WSGI app (ocsp.wsgi) wired to this process's Kyso: mounted at /ocsp
beside the Flask app by create_app, or served alone (`gunicorn web.wsgi:ocsp_app`)."""

from __future__ import annotations

import os
import threading
from typing import Any

from kyso.settings import Settings, load_settings
from ocsp.refresh import Policy
from ocsp.responder import Responder
from ocsp.wsgi import OcspApp
from web import KysoExtension


def create_ocsp_app(settings: Settings | None = None,
                    extension: KysoExtension | None = None) -> OcspApp:
    """The raw WSGI OCSP app; one Responder per process, built on first request (after fork)."""
    settings = settings if settings is not None else load_settings()
    ext = extension or KysoExtension(settings)
    policy = Policy.from_settings(settings.ocsp)
    lock = threading.Lock()
    state: dict[str, object] = {"pid": 0, "responder": None}

    def responder() -> Responder:
        current = state["responder"]
        if current is not None and state["pid"] == os.getpid():
            return current  # type: ignore[return-value]
        with lock:
            if state["responder"] is None or state["pid"] != os.getpid():
                state["responder"] = Responder(ext.get().authority, policy)
                state["pid"] = os.getpid()
            return state["responder"]  # type: ignore[return-value]

    return OcspApp(responder, policy)


def renew_responders(kyso: Any) -> list[str]:
    """Renew the delegated OCSP responder certificates of the online CAs that are due (run in
    every web process, every ocsp.refresh_interval_seconds), so the web app alone keeps its
    responders current; `kyso ocsp refresh` / `kyso ocsp serve` also pre-sign every response.
    Two processes renewing at the same moment make two certificates for the same key:
    harmless, the newest is used. Returns the CAs whose responder is in force."""
    from datetime import UTC, datetime

    from ca import store
    from ocsp.refresh import Responders

    responders = Responders(kyso.authority, Policy.from_settings(kyso.settings.ocsp))
    with kyso.readers() as s:
        cas = [ca for ca in store.list_cas(s)
               if ca.status == "active" and kyso.authority.is_online(ca)]
    return [ca.name for ca in cas
            if responders.ensure(ca, datetime.now(UTC), actor="ocsp-renewer") is not None]
