"""`kyso lifecycle`: certificates expiring soon, the daily job (expiry warnings, service
certificate renewal), the mail outbox, and bulk changes after a reorganization."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from ca import lifecycle, outbox, reorg
from ca.errors import InvalidRequest, MappingRejected
from kyso.cli import Context, _read_pin, cli_actor, handle_errors, main, pass_ctx
from kyso.mailer import DeliveryReport, mailer, run_daily


@main.group("lifecycle")
def lifecycle_group() -> None:
    """Expiry: lists, warnings to officials by e-mail, renewal of service certificates."""


@lifecycle_group.command("expiring")
@click.option("--days", type=click.IntRange(min=0), default=30, show_default=True,
              help="Certificates expiring within N days.")
@click.option("--organization", "--org", help="Only this organization (exact).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def lifecycle_expiring(ctx: Context, days: int, organization: str | None,
                       as_json: bool) -> None:
    """Valid certificates (officials' and services') expiring within N days, by organization,
    soonest first; renewed ones are left out. Times in Vietnam time."""
    app = ctx.kyso
    now = datetime.now(UTC)
    with app.readers() as s:
        items = lifecycle.expiring(s, now, days, organization=organization)
    groups = lifecycle.by_organization(items)
    if as_json:
        click.echo(json.dumps({
            "now": now.isoformat(), "days": days, "count": len(items),
            "organizations": [
                {"organization": None if name == lifecycle.NO_ORGANIZATION else name,
                 "certificates": [i.as_dict() for i in group]}
                for name, group in groups.items()],
        }, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo(f"no valid certificate expires within {days} day(s)")
        return
    for name, group in groups.items():
        click.echo(f"{name} ({len(group)})")
        for i in group:
            who = i.official_name or i.profile
            click.echo(f"  {i.not_after_vn:%Y-%m-%d %H:%M} (giờ VN)  còn {i.days_left:>3} ngày  "
                       f"{i.serial}  {i.kind:<8} {who}")
    click.echo(f"{len(items)} certificate(s) expiring within {days} day(s)", err=True)


@lifecycle_group.command("daily")
@click.option("--no-ocsp", is_flag=True, help="Leave the OCSP responder certificates alone.")
@click.option("--no-send", is_flag=True, help="Queue the mail, do not deliver it now.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def lifecycle_daily(ctx: Context, no_ocsp: bool, no_send: bool, as_json: bool) -> None:
    """The daily job (cron; the web workers also run it once a day): queue expiry warnings
    ([lifecycle] warn_days, each once per certificate), renew the TSA and OCSP responder
    certificates that are due, deliver the outbox. Safe to run again."""
    report, delivery = run_daily(ctx.kyso, ocsp=not no_ocsp, deliver=not no_send)
    if as_json:
        click.echo(json.dumps({**report.as_dict(),
                               "mail": delivery.as_dict() if delivery else None},
                              ensure_ascii=False, indent=2))
    else:
        click.echo(f"expiry warnings queued: {len(report.warnings_queued)}")
        if report.tsa is not None:
            t = report.tsa
            click.echo("TSA certificate: " + (
                f"{t.serial} renewed as {t.renewed_serial}" if t.renewed_serial else
                f"{t.serial or '-'}, " + (t.skipped or "not due")))
        if report.ocsp_responders is not None:
            click.echo(f"OCSP responders in force: {', '.join(report.ocsp_responders) or '-'}")
        if delivery is not None:
            _echo_delivery(delivery)
    for step, error in report.errors.items():
        click.echo(f"warning: {step}: {error}", err=True)
    if report.errors:
        raise SystemExit(1)


def _echo_delivery(d: DeliveryReport) -> None:
    if d.skipped:
        click.echo(f"mail: {d.skipped}")
        return
    click.echo(f"mail: {len(d.sent)} sent, {len(d.retry)} to retry, {len(d.failed)} failed")
    if d.error:
        click.echo(f"warning: {d.error}", err=True)


@lifecycle_group.command("mail")
@click.option("--send", "action", flag_value="send", help="Deliver the due mail now.")
@click.option("--list", "action", flag_value="list", default=True,
              help="List the outbox, newest first (the default).")
@click.option("--requeue", type=int, metavar="ID", help="Put a failed message back in the queue.")
@click.option("--status", type=click.Choice(outbox.STATUSES), help="Only this status (--list).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def lifecycle_mail(ctx: Context, action: str, requeue: int | None, status: str | None,
                   limit: int, as_json: bool) -> None:
    """The mail outbox: list it, deliver what is due (--send), or requeue a failed message."""
    app = ctx.kyso
    if requeue is not None:
        with app.sessions.begin() as s:
            outbox.requeue(s, requeue, datetime.now(UTC))
        click.echo(f"mail {requeue} is queued again")
        return
    if action == "send":
        delivery = mailer(app).deliver_due()
        if as_json:
            click.echo(json.dumps(delivery.as_dict(), indent=2))
        else:
            _echo_delivery(delivery)
        return
    with app.readers() as s:
        rows = outbox.list_messages(s, status=status, limit=limit)
        totals = outbox.counts(s)
    if as_json:
        click.echo(json.dumps({"counts": totals, "messages": [
            {"id": m.id, "to": m.recipient, "subject": m.subject, "kind": m.kind, "ref": m.ref,
             "dedupe_key": m.dedupe_key, "status": m.status, "attempts": m.attempts,
             "next_attempt_at": m.next_attempt_at.isoformat(), "last_error": m.last_error,
             "created_at": m.created_at.isoformat(),
             "sent_at": m.sent_at.isoformat() if m.sent_at else None} for m in rows]},
            ensure_ascii=False, indent=2))
        return
    for m in rows:
        when = (m.sent_at or m.next_attempt_at).astimezone(lifecycle.VN)
        click.echo(f"{m.id:>6} {m.status:<7} {m.attempts:>2}x {when:%Y-%m-%d %H:%M}  "
                   f"{m.recipient:<32} {m.subject}")
        if m.last_error and m.status != "sent":
            click.echo(f"{'':>18}last error: {m.last_error}")
    click.echo(", ".join(f"{n} {k}" for k, n in totals.items()), err=True)


# -- bulk change after a reorganization ------------------------------------------------------

EXIT_REJECTED = 3  # the mapping was refused: nothing was written


def _read_mapping(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"mapping file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequest(f"mapping path {path} is a directory") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MappingRejected([reorg.RowProblem(
            data[:exc.start].count(b"\n") + 1, "not UTF-8 text (save the file as CSV UTF-8)")
        ]) from None


def _rejected(exc: MappingRejected) -> None:
    for problem in exc.problems:
        click.echo(f"error: {problem}", err=True)
    click.echo(f"error: the mapping is refused ({len(exc.problems)} problem(s)); nothing was "
               "issued or revoked", err=True)
    sys.exit(EXIT_REJECTED)


def _echo_plan(plan: reorg.Plan) -> None:
    for item in plan.items:
        later = "" if item.effective else "  [not yet effective]"
        click.echo(f"{item.old_serial}  official {item.official_id} {item.official_name}  "
                   f"(row {item.row}, {item.reason}){later}")
        click.echo(f"    {item.old_subject}")
        click.echo(f"  → {item.new_subject}")
    for note in plan.notes:
        click.echo(f"note: row {note.row}: {note.serial}: {note.message}")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)
    by_reason: dict[str, int] = {}
    for item in plan.items:
        by_reason[item.reason] = by_reason.get(item.reason, 0) + 1
    click.echo(f"{len(plan.items)} certificate(s) would be reissued and the old ones revoked"
               + (f" ({', '.join(f'{n} {r}' for r, n in sorted(by_reason.items()))})"
                  if by_reason else ""), err=True)


@lifecycle_group.command("reorg")
@click.argument("mapping", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--dry-run", "mode", flag_value="dry-run", default=True,
              help="Show what would be done (the default); nothing is written.")
@click.option("--apply", "mode", flag_value="apply",
              help="Reissue and revoke, as one resumable batch.")
@click.option("--rekey", is_flag=True,
              help="With --apply: new keys; each official completes theirs with their PIN "
                   "(kyso lifecycle batch rekey).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--chunk-size", type=click.IntRange(min=1, max=1000), default=100,
              show_default=True, help="Certificates per step (one transaction each).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def lifecycle_reorg(ctx: Context, mapping: Path, mode: str, rekey: bool, yes: bool,
                    chunk_size: int, as_json: bool) -> None:
    """Bulk change after a reorganization. MAPPING is a CSV file (UTF-8) with the header

    \b
      old_organization,old_unit,old_locality,new_organization,new_unit,new_locality,effective_date

    An empty old field matches any value, an empty new field keeps the value; dates are
    YYYY-MM-DD or DD/MM/YYYY (a row not yet effective is shown, and refused by --apply).

    --dry-run lists every affected certificate (current → new subject, revocation reason)
    and the warnings. --apply reissues each (same key), then revokes the old one, queues
    the officials' notices, as one audited batch: its id is printed first, and running the
    same command again resumes an interrupted batch. A refused mapping exits 3."""
    if rekey and mode != "apply":
        raise click.UsageError("--rekey goes with --apply")
    app = ctx.kyso
    try:
        text = _read_mapping(mapping)
        if mode == "dry-run":
            plan = reorg.dry_run(app.authority, text)
            if as_json:
                click.echo(json.dumps(plan.as_dict(), ensure_ascii=False, indent=2))
            else:
                _echo_plan(plan)
            return
        digest = reorg.mapping_sha256(text)
        with app.readers() as s:
            resuming = [b for b in reorg.list_batches(s, limit=1000)
                        if b.mapping_sha256 == digest and b.status != "done"]
        if not resuming and not yes:  # (start plans again: what is confirmed is re-checked)
            plan = reorg.dry_run(app.authority, text)
            if not as_json:
                _echo_plan(plan)
            click.confirm(f"Reissue {len(plan.items)} certificate(s) and revoke the old "
                          "ones?", abort=True, err=True)
        batch_id = reorg.start(app.authority, text, rekey=rekey, actor=cli_actor())
    except MappingRejected as exc:
        if as_json:
            click.echo(json.dumps({"rejected": [{"row": p.row, "message": p.message}
                                                for p in exc.problems]},
                                  ensure_ascii=False, indent=2))
        _rejected(exc)
        return
    click.echo(f"batch {batch_id}" + (" (resumed)" if resuming else ""), err=as_json)
    sys.stdout.flush()
    report = _run_with_progress(app, batch_id, chunk_size, quiet=as_json)
    view = reorg.show(app.authority, batch_id)
    if as_json:
        click.echo(json.dumps({**view.as_dict(), "done_now": report.done_now,
                               "adopted": report.adopted}, ensure_ascii=False, indent=2))
    else:
        _echo_batch(view, subjects=False)  # the final report: every certificate old → new
        if view.batch.status == "waiting":
            click.echo("the new keys need each official's PIN: kyso lifecycle batch rekey "
                       f"{batch_id} --official N --pin-file F", err=True)
    if view.batch.failed:
        raise SystemExit(1)


def _run_with_progress(app: Any, batch_id: int, chunk_size: int, *,
                       quiet: bool) -> reorg.BatchReport:
    if quiet:
        return reorg.run(app.authority, batch_id, actor=cli_actor(), chunk_size=chunk_size)
    with click.progressbar(length=1, label=f"batch {batch_id}", show_pos=True,
                           file=sys.stderr) as bar:
        def progress(finished: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(finished - bar.pos)

        return reorg.run(app.authority, batch_id, actor=cli_actor(), progress=progress,
                         chunk_size=chunk_size)


def _echo_batch(view: reorg.BatchView, *, subjects: bool = True) -> None:
    b = view.batch
    counts: dict[str, int] = {}
    for item in view.items:
        counts[item.status] = counts.get(item.status, 0) + 1
    click.echo(f"batch {b.id}: {b.status}; {b.total} certificate(s): "
               + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    click.echo(f"  started {b.created_at.astimezone(lifecycle.VN):%Y-%m-%d %H:%M} (giờ VN) "
               f"by {b.created_by}{', new keys' if b.rekey else ''}; mapping sha256 "
               f"{b.mapping_sha256[:16]}…")
    for item in view.items:
        click.echo(f"{item.old_serial} → {item.new_serial or '-'}  {item.status:<7} "
                   f"{item.reason}  official {item.official_id}")
        if subjects:
            click.echo(f"    {item.old_subject}\n  → {item.new_subject}")
        if item.error:
            click.echo(f"    {item.error}")


@lifecycle_group.group("batch")
def batch_group() -> None:
    """Reorganization batches: list, show, retry the failed, complete a rekey."""


@batch_group.command("show")
@click.argument("batch_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def batch_show(ctx: Context, batch_id: int, as_json: bool) -> None:
    """A batch: status, counts, every certificate old → new with its reason."""
    view = reorg.show(ctx.kyso.authority, batch_id)
    if as_json:
        click.echo(json.dumps(view.as_dict(), ensure_ascii=False, indent=2))
        return
    _echo_batch(view)


@batch_group.command("list")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def batch_list(ctx: Context, limit: int, as_json: bool) -> None:
    """Reorganization batches, newest first."""
    batches = reorg.list_batches(ctx.kyso.authority, limit=limit)
    if as_json:
        click.echo(json.dumps([b.as_dict() for b in batches], ensure_ascii=False, indent=2))
        return
    for b in batches:
        click.echo(f"{b.id:>5} {b.status:<8} {b.done:>6}/{b.total:<6} failed {b.failed:<5} "
                   f"{b.created_at.astimezone(lifecycle.VN):%Y-%m-%d %H:%M}  {b.created_by}"
                   f"{'  rekey' if b.rekey else ''}")
    if not batches:
        click.echo("no reorganization batch yet", err=True)


@batch_group.command("rekey")
@click.argument("batch_id", type=int)
@click.option("--official", "official_id", type=int, required=True)
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path),
              help="The official's signing PIN ('-': standard input); else asked.")
@pass_ctx
@handle_errors
def batch_rekey(ctx: Context, batch_id: int, official_id: int, pin_file: Path | None) -> None:
    """Complete a --rekey batch for one official: their PIN opens their key, a new key is
    made, their certificates are reissued for it and the old ones revoked."""
    pin = _read_pin(pin_file)
    serials = reorg.complete_rekey(ctx.kyso.authority, batch_id, official_id, pin,
                                   actor=cli_actor())
    for serial in serials:
        click.echo(serial)


@batch_group.command("retry")
@click.argument("batch_id", type=int)
@click.option("--chunk-size", type=click.IntRange(min=1, max=1000), default=100,
              show_default=True, help="Certificates per step (one transaction each).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def batch_retry(ctx: Context, batch_id: int, chunk_size: int, as_json: bool) -> None:
    """Try a batch's failed certificates again (after releasing a hold, fixing what the lint
    refused...): they are reissued and the old ones revoked as in --apply; in a --rekey
    batch they wait for each official's PIN again. Those that fail again stay failed
    (exit 1)."""
    app = ctx.kyso
    retried = reorg.retry(app.authority, batch_id, actor=cli_actor())
    click.echo(f"batch {batch_id}: {retried.items} failed certificate(s) to try again",
               err=as_json)
    sys.stdout.flush()
    if not retried.rekey:
        _run_with_progress(app, batch_id, chunk_size, quiet=as_json)
    view = reorg.show(app.authority, batch_id)
    if as_json:
        click.echo(json.dumps(view.as_dict(), ensure_ascii=False, indent=2))
    else:
        _echo_batch(view, subjects=False)
        if view.batch.status == "waiting":
            click.echo("the new keys need each official's PIN: kyso lifecycle batch rekey "
                       f"{batch_id} --official N --pin-file F", err=True)
    if view.batch.failed:
        raise SystemExit(1)
