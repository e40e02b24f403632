"""gunicorn serving kyso for the tests that need a real HTTP server (web, CRL, OCSP, TSA, e2e),
and the real `kyso` command line that prepares its data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(config: Path | None) -> dict[str, str]:
    """The test process's environment without KYSO_* or SOFTHSM2_CONF leaking in; KYSO_CONFIG
    names `config` when given."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
    if config is not None:
        env["KYSO_CONFIG"] = str(config)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_kyso(config: Path | None, *args: str,
             timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """Run the real `kyso` command line (as `python -m kyso.cli`) against `config`; raise
    AssertionError with its output on a non-zero exit."""
    proc = subprocess.run(
        [sys.executable, "-m", "kyso.cli", *args],
        cwd=REPO_ROOT, env=clean_env(config), capture_output=True, text=True,
        timeout=timeout, check=False, stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"kyso {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


class Gunicorn:
    """gunicorn serving `app` for a settings file, started in its own process group once it
    accepts connections; stop() always ends it (SIGTERM, then SIGKILL to the group)."""

    def __init__(self, config: Path, app: str = "web.wsgi:app", workers: int = 2, *,
                 env: dict[str, str] | None = None, extra_env: dict[str, str] | None = None,
                 worker_class: str | None = None, port: int | None = None,
                 log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path or config.parent.parent / f"gunicorn-{self.port}.log"
        env = dict(env) if env is not None else clean_env(config)
        env.update(extra_env or {})
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--bind",
                 f"127.0.0.1:{self.port}", "--no-control-socket",
                 *(["--worker-class", worker_class] if worker_class else []), app],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gunicorn did not start within 60 s:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # gunicorn's master stops its workers on SIGTERM
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
