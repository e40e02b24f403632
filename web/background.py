"""Periodic background work of a serving process (started per worker, after fork)."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

log = logging.getLogger("kyso.web")


class Periodic:
    """A daemon thread that runs `job` about every `interval` seconds (with jitter, so the
    worker processes spread out); an exception is logged and the next run goes ahead.
    `interval <= 0` turns it off."""

    def __init__(self, name: str, interval: float, job: Callable[[], object]) -> None:
        self.name = name
        self.interval = interval
        self.job = job
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self.interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        self._stop.wait(random.uniform(0.5, 1.5))
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.job()
            except Exception:  # keep trying; the log says why
                log.exception("background job %s failed", self.name)
            elapsed = time.monotonic() - started
            self._stop.wait(max(0.1, self.interval * random.uniform(0.8, 1.2) - elapsed))
