"""Several processes opening the same SoftHSM2 token at once (web workers, CLI runs, the OCSP
responder): every login must succeed."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hsm_test_constants import MAIN_LABEL, USER_PIN

from hsm import SoftHsmToken, Token, _storelock

REPO_ROOT = Path(__file__).resolve().parents[2]

# Each child loads the module and logs in LOGINS times (a new Token, so a new session and
# C_Login, each time): every login rewrites the token's file in SoftHSM2.
CHILD = """
import sys
from hsm import Token
module, label, pin, logins = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
failures = []
for _ in range(logins):
    try:
        Token(module, label, pin, pool_size=1).close()
    except Exception as exc:
        failures.append(f"{type(exc).__name__}: {exc}")
print(f"logged in {logins - len(failures)} of {logins}", *failures, sep="\\n")
"""
PROCESSES = 6
LOGINS = 30


def test_six_processes_logging_in_at_once_all_succeed(softhsm: SoftHsmToken) -> None:
    # Without the machine-wide store lock SoftHSM2 let about one login in four of these fail
    # with CKR_GENERAL_ERROR (C_GetTokenInfo, C_Login) or "user PIN not initialized": one
    # process read the token's file while another rewrote it.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, softhsm.module, MAIN_LABEL, USER_PIN, str(LOGINS)],
            cwd=REPO_ROOT, env={**softhsm.env(), "PYTHONPATH": str(REPO_ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for _ in range(PROCESSES)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        reports.append(out.strip())
    assert reports == [f"logged in {LOGINS} of {LOGINS}"] * PROCESSES, "\n".join(reports)


def test_a_stuck_holder_of_the_store_lock_delays_a_login_but_does_not_stop_it(
        softhsm: SoftHsmToken, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # Another process holding the lock and hung (stopped in a debugger, stuck on a device):
    # here, a second open file description of the same lock file, locked.
    monkeypatch.setattr(_storelock, "WAIT_SECONDS", 0.3)
    holder = os.open(_storelock.lock_path(softhsm.module), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="hsm._storelock"):
            Token(softhsm.module, MAIN_LABEL, USER_PIN, pool_size=1).close()
        assert time.monotonic() - started >= 0.3
        assert "held for over" in caplog.text
    finally:
        os.close(holder)
