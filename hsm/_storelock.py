"""A lock shared by every process on this machine that opens the same PKCS#11 token store.

SoftHSM2 keeps a token in files and rewrites the token's own file on every successful C_Login
(it resets the "PIN count low" flag). Another process reading that file at the same instant —
in C_Initialize, C_GetTokenInfo or its own C_Login — sees half a file and answers
CKR_GENERAL_ERROR or CKR_USER_PIN_NOT_INITIALIZED. Measured here without this lock: 4 of 240
processes (started six at a time, one login each) failed, and 52 of 180 logins when six
processes log in 30 times each (tests/hsm/test_hsm_processes.py).

So the steps that read or write the token's structure (loading the module, listing tokens,
opening and logging in a session, creating token objects, softhsm2-util creating a token) run
under an exclusive ``flock`` on a lock file named after the module and its configuration.
Signing with a key already found does not take it. With a hardware HSM the lock only
serialises logins across local processes, which are rare (once per pooled session).

Re-entrant within a process (one thread at a time holds it, as often as it likes); a forked
child starts with a lock of its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)
WAIT_SECONDS = 30.0


def _open_lock_file(path: str) -> int:
    """A descriptor to flock ``path`` with, creating it if need be.

    flock needs no write access, so another user's lock file (the web app's service account
    and an operator running the CLI) is opened read-only. An existing file is opened without
    O_CREAT: with fs.protected_regular, O_CREAT on another user's file in a sticky /tmp is
    refused even when a plain open would be allowed."""
    for flags in (os.O_RDWR, os.O_RDONLY):
        try:
            return os.open(path, flags | os.O_CLOEXEC)
        except PermissionError:
            continue
        except FileNotFoundError:
            break
    else:
        raise PermissionError(f"neither readable nor writable: {path}")
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    except FileExistsError:  # another process made it just now
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    os.fchmod(fd, 0o644)  # whatever the umask: every user of the token must be able to open it
    return fd


class _StoreLock:
    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd: int | None = None
        self._unusable = False

    def _file(self) -> int | None:
        if self._fd is None and not self._unusable:
            try:
                self._fd = _open_lock_file(self.path)
            except OSError as exc:
                # A read-only or full $TMPDIR: go on without cross-process exclusion (threads
                # of this process are still serialised).
                log.warning("cannot open PKCS#11 lock file %s (%s); logins are not serialised "
                            "with other processes", self.path, exc)
                self._unusable = True
        return self._fd

    def _flock(self, fd: int) -> bool:
        """Take the flock, waiting at most WAIT_SECONDS; False if it was not had."""
        deadline = time.monotonic() + WAIT_SECONDS
        pause = 0.002
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    # A holder stuck in the module (stopped, hung on a device) must not stop
                    # every other process: go on unserialised, as before this lock existed.
                    log.warning("PKCS#11 lock file %s held for over %.0f s; going on without "
                                "it", self.path, WAIT_SECONDS)
                    return False
                time.sleep(pause)
                pause = min(pause * 2, 0.02)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        with self._thread_lock:
            fd = self._file() if self._depth == 0 else None
            if fd is not None and not self._flock(fd):
                fd = None
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if fd is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)


_LOCKS: dict[str, _StoreLock] = {}
_LOCKS_GUARD = threading.Lock()


def lock_path(module: str, softhsm2_conf: str | None = None) -> str:
    """The lock file of ``module`` with this SoftHSM2 configuration (default: this process's)."""
    conf = os.environ.get("SOFTHSM2_CONF", "") if softhsm2_conf is None else softhsm2_conf
    key = "\0".join((os.path.realpath(module), os.path.realpath(conf) if conf else ""))
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return os.path.join(tempfile.gettempdir(), f"kyso-pkcs11-{digest}.lock")


def store_lock(module: str, softhsm2_conf: str | None = None,
               ) -> contextlib.AbstractContextManager[None]:
    """Hold the machine-wide lock of ``module``'s token store (re-entrant in a thread)."""
    path = lock_path(module, softhsm2_conf)
    with _LOCKS_GUARD:
        lock = _LOCKS.get(path)
        if lock is None:
            lock = _LOCKS[path] = _StoreLock(path)
    return lock.held()


def _after_fork_in_child() -> None:
    global _LOCKS_GUARD
    # The parent's locks (and a flock it may hold) are the parent's: start afresh. The
    # inherited descriptors are left open, so closing them cannot release the parent's lock.
    _LOCKS_GUARD = threading.Lock()
    _LOCKS.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
