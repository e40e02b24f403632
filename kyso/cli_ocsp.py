"""`kyso ocsp`: pre-sign and refresh OCSP responses, renew responder certificates, serve."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from kyso.cli import Context, handle_errors, main, pass_ctx


@main.group("ocsp")
def ocsp_group() -> None:
    """OCSP responder: pre-signed responses, delegated responder certificates, serving."""


def _refresh(ctx: Context) -> Any:
    from ocsp.refresh import Policy, refresh_all

    kyso = ctx.kyso
    policy = Policy.from_settings(kyso.settings.ocsp)
    return refresh_all(kyso.authority, policy, datetime.now(UTC), actor="operator")


@ocsp_group.command("refresh")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def ocsp_refresh(ctx: Context, as_json: bool) -> None:
    """Renew responder certificates that are due and pre-sign every response that is missing,
    stale or due (run it every few minutes: cron, a systemd timer, or `kyso ocsp serve`)."""
    report = _refresh(ctx)
    if as_json:
        click.echo(json.dumps({"signed": report.signed, "responders": report.responders,
                               "skipped": report.skipped}, indent=2))
        return
    for name, serial in report.responders.items():
        if serial is None:
            click.echo(f"{name}: not served ({report.skipped.get(name, 'no responder')})")
        else:
            click.echo(f"{name}: responder {serial}, {report.signed.get(name, 0)} "
                       "response(s) signed")


@ocsp_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", type=int, help="gunicorn workers (default: ocsp.workers).")
@pass_ctx
@handle_errors
def ocsp_serve(ctx: Context, host: str, port: int, workers: int | None) -> None:
    """Serve only the OCSP responder (gunicorn) and refresh every ocsp.refresh_interval_seconds
    beside it."""
    settings = ctx.settings
    _refresh(ctx)
    env = dict(os.environ)
    if settings.config_path:
        env["KYSO_CONFIG"] = str(Path(settings.config_path).resolve())
    args = [sys.executable, "-m", "gunicorn", "--workers", str(workers or settings.ocsp.workers),
            "--bind", f"{host}:{port}", "--no-control-socket",
            # Answers plain /ocsp GET/POST itself; anything else through gunicorn's own code.
            "--worker-class", "ocsp.worker.OcspWorker", "web.wsgi:ocsp_app"]
    proc = subprocess.Popen(args, env=env)
    stop = False

    def _stop(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    next_refresh = time.monotonic() + settings.ocsp.refresh_interval_seconds
    while proc.poll() is None:
        time.sleep(1)
        if not stop and time.monotonic() >= next_refresh:
            try:
                _refresh(ctx)
            except Exception as exc:  # noqa: BLE001 - keep serving; say why
                click.echo(f"warning: OCSP refresh failed: {exc}", err=True)
            next_refresh = time.monotonic() + settings.ocsp.refresh_interval_seconds
    sys.exit(0 if stop else proc.returncode)
