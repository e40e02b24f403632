"""Linting many certificates at once in worker processes (pkilint holds the GIL throughout)."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ca.lint import LintReport

# Below this many certificates the pool's start-up and pickling cost more than they save.
MIN_BATCH = 16
# How much lower than the issuing process the lint processes run (see _init_worker).
LINT_NICENESS = 5


class LintPool:
    """A lazily started pool of lint processes.

    The workers are started with 'forkserver', never 'fork': the parent may hold PKCS#11
    sessions and HSM locks that must not be copied into a child.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ProcessPoolExecutor(
                    max_workers=self.workers,
                    mp_context=multiprocessing.get_context("forkserver"),
                    initializer=_init_worker,
                )
                atexit.register(self.close)
            return self._executor

    def lint_certificates(self, ders: Sequence[bytes]) -> list[LintReport]:
        return self.submit(ders)()

    def submit(self, ders: Sequence[bytes]) -> Callable[[], list[LintReport]]:
        """Start linting now (in the workers) and return a call that waits for the reports.

        Reports from the workers carry only the blocking (ERROR, FATAL) findings: that is all
        issuance decides on, and it keeps the traffic back to this process small."""
        from ca.lint import lint_certificate

        if self.workers < 1 or len(ders) < MIN_BATCH:
            return lambda: [lint_certificate(der) for der in ders]
        chunk = max(1, len(ders) // (self.workers * 4))
        results = self._pool().map(_blocking_findings, ders, chunksize=chunk)  # submits now
        return lambda: list(results)

    def close(self) -> None:
        with self._lock:
            if self._executor is not None:
                self._executor.shutdown(wait=True, cancel_futures=True)
                self._executor = None


def _init_worker() -> None:
    """Build the validator trees, then set the cycle collector aside for what stays.

    Linted documents are freed by reference counting (ca.lint._release), so a lint process makes
    almost no cyclic garbage; pkilint's decoding still allocates thousands of objects per
    certificate, and with the default thresholds each few hundred of them set off a collection
    that walks young objects, and every so often all of the process's long-lived objects
    (modules, validator trees). Those are moved out of the collector's sight (gc.freeze) and the
    collections made rarer; the collector stays on for anything cyclic.

    A lint process also runs at a lower priority than the issuing process: with the CPUs
    shared, the signing thread and the thread that reserves and stores get the CPU as soon as
    they need it, so the HSM never waits on lint work that is ahead anyway (LINT_AHEAD), and the
    lint processes use whatever CPU is left."""
    import gc
    import os

    from ca.lint import warm_up

    with contextlib.suppress(AttributeError, OSError):  # os.nice: POSIX only
        os.nice(LINT_NICENESS)
    warm_up()
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _blocking_findings(der: bytes) -> LintReport:
    from ca.lint import LintReport, lint_certificate

    return LintReport(lint_certificate(der).errors)
