"""Several processes opening the same SoftHSM2 token at once (web workers, CLI runs, the OCSP
responder): every login must succeed."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import sys
import tempfile
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


CHILD_AS_OTHER_USER = """
import fcntl, importlib.util, sys
spec = importlib.util.spec_from_file_location("storelock", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
fd = module._open_lock_file(sys.argv[2])
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    print("got it")
except BlockingIOError:
    print("held elsewhere")
"""


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _python_for_nobody() -> str | None:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return None
    for python in ("/usr/bin/python3", sys.executable):
        if subprocess.run([*AS_NOBODY, python, "-c", "pass"], capture_output=True,
                          timeout=60).returncode == 0:
            return python
    return None


def test_another_user_shares_the_store_lock(softhsm: SoftHsmToken) -> None:
    # The web app's service account and an operator's CLI are different users: the second
    # cannot write the first one's lock file, but must still wait for it.
    python = _python_for_nobody()
    if python is None:
        pytest.skip("needs root, setpriv and a Python that user 'nobody' may run")
    workdir = Path(tempfile.mkdtemp(prefix="kyso-lock-"))
    try:
        workdir.chmod(0o755)
        copy = workdir / "storelock.py"
        shutil.copy(_storelock.__file__, copy)
        copy.chmod(0o644)
        path = _storelock.lock_path(softhsm.module)

        def other_user() -> str:
            proc = subprocess.run(
                [*AS_NOBODY, python, "-c", CHILD_AS_OTHER_USER, str(copy), path],
                capture_output=True, text=True, timeout=60, cwd=workdir)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout.strip()

        with _storelock.store_lock(softhsm.module):
            assert os.stat(path).st_uid == 0 and os.stat(path).st_mode & 0o777 == 0o644
            assert other_user() == "held elsewhere"
        assert other_user() == "got it"
    finally:
        shutil.rmtree(workdir)
