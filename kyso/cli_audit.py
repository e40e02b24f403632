"""`kyso audit`: verify, show and seal the tamper-evident audit log (ca/audit.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import click

from ca import audit
from ca.errors import InvalidRequest
from kyso.cli import EXIT_ERROR, Context, handle_errors, main, pass_ctx


@main.group("audit")
def audit_group() -> None:
    """The tamper-evident audit log: verify the chain and seals, show and seal entries."""


@audit_group.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@pass_ctx
@handle_errors
def audit_verify(ctx: Context, as_json: bool) -> None:
    """Recompute the hash chain and check every seal against the HSM's audit key.

    Exit 0 when the log is intact; exit 1 naming the first entry that was edited, deleted,
    inserted or reordered (or the first seal that does not verify).
    """
    app = ctx.kyso
    with app.readers() as s:
        report = audit.verify(s, app.audit_signer.public_key_for_label)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    elif report.ok:
        head = report.head
        assert head is not None
        sealed = (f"sealed up to #{report.last_sealed_seq}, {report.unsealed} after the last "
                  "seal" if report.last_sealed_seq else "no seal yet")
        click.echo(f"audit log intact: {report.entries} entries, head #{head.seq} "
                   f"{head.hash}, {report.seals} seal(s) verified ({sealed})")
    if not report.ok:
        first = report.first
        assert first is not None
        more = len(report.problems) - 1
        tail = (f" ({more} more finding(s){', and more' if report.truncated else ''}; "
                "--json lists them)") if more else ""
        click.echo(f"error: audit log tampered with: {first.message}{tail}", err=True)
        raise SystemExit(EXIT_ERROR)


def _when(text: str | None, option: str, *, end: bool = False) -> datetime | None:
    """An ISO 8601 date or date-time (UTC unless it says otherwise). A bare date given to
    --until means the end of that day."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidRequest(f"{option} {text!r} is not an ISO 8601 date or date-time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end and len(text) == 10:  # YYYY-MM-DD: through the whole day
        value += timedelta(days=1)
    return value


@audit_group.command("show")
@click.option("--since", help="From this ISO 8601 date or date-time on (UTC by default).")
@click.option("--until", help="Before this date-time; a bare date includes that whole day.")
@click.option("--actor", help="Only this actor (a trailing * matches a prefix).")
@click.option("--action", help="Only this action, e.g. certificate.revoke or 'certificate.*'.")
@click.option("--object", "obj", help="Only this object, e.g. cert:SERIAL or 'ca:*'.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N entries.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def audit_show(ctx: Context, since: str | None, until: str | None, actor: str | None,
               action: str | None, obj: str | None, limit: int | None, as_json: bool) -> None:
    """Show audit entries, oldest first."""
    start, end = _when(since, "--since"), _when(until, "--until", end=True)
    if start and end and start >= end:
        raise InvalidRequest("--since must be before --until")
    app = ctx.kyso
    with app.readers() as s:
        rows = audit.events(s, since=start, until=end, actor=actor, action=action, obj=obj,
                            limit=limit)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    for r in rows:
        extra = f" request={r['request_id']}" if r["request_id"] else ""
        details = (" " + json.dumps(r["details"], ensure_ascii=False, sort_keys=True)
                   if r["details"] else "")
        click.echo(f"#{r['seq']:<6} {r['at']} {r['actor']:<12} {r['action']:<22} "
                   f"{r['object']} {r['outcome']}{extra}{details}")
    click.echo(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'}", err=True)


@audit_group.command("seal")
@click.option("--reason", type=click.Choice(list(audit.SEAL_REASONS)), default="manual",
              show_default=True, help="Recorded with the seal (cron jobs: interval).")
@pass_ctx
@handle_errors
def audit_seal(ctx: Context, reason: str) -> None:
    """Sign the current head of the audit chain with the HSM audit key (e.g. from cron)."""
    app = ctx.kyso
    with app.sessions.begin() as s:
        rec = audit.seal(s, app.audit_signer, reason, actor="operator")
    click.echo(f"sealed entry #{rec.seq} {rec.hash} with HSM key {rec.key_label}")
