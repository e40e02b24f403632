"""`kyso ceremony check|run|verify`: key ceremonies from strict YAML files."""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from ca.errors import CeremonyRefused
from kyso.cli import Context, handle_errors, main, pass_ctx


@main.group("ceremony")
def ceremony_group() -> None:
    """Key ceremonies: check a ceremony file, run it under quorum, verify its record."""


def _operator(explicit: str | None) -> str:
    return explicit or os.environ.get("KYSO_OPERATOR") or getpass.getuser() or "operator"


def _audit_signer(app: Any) -> Any:
    from ca import audit

    label = getattr(getattr(app.settings, "audit", None), "key_label", "kyso-audit")
    signer = audit.AuditSigner(app.token, label, sessions=app.sessions)
    signer.ensure_key()
    return signer


def _context(app: Any, operator: str, so_pin_file: Path | None) -> Any:
    from ca.ceremony import CeremonyContext

    def so_pin() -> str:
        if so_pin_file is not None:
            return so_pin_file.read_text(encoding="utf-8").strip()
        return str(app.settings.hsm.so_pin())

    app.prepare_hsm_env()
    return CeremonyContext(
        authority=app.authority,
        sessions=app.sessions,
        readers=app.readers,
        module=app.settings.hsm.module,
        online_token=app.token,
        online_token_label=app.settings.hsm.token_label,
        so_pin=so_pin,
        open_token=app.open_token,
        audit_signer=lambda: _audit_signer(app),
        publish_dir=app.settings.publish_dir,
        actor=operator,
        echo=click.echo,
    )


def _load(app: Any, file: Path) -> Any:
    from ca.ceremony import load

    return load(file, Path(app.settings.data_dir))


def _prompted_shares(runner: Any, ceremony: Any, given: int) -> list[Any]:
    """Ask the custodians to type their shares (hidden) when too few files were given."""
    from ca.ceremony import quorum as q
    from ca.ceremony.runner import _quorum

    try:
        token = runner._signer_token(ceremony) if ceremony.type != "root" else None
    except CeremonyRefused:
        return []
    quorum = _quorum(runner.ctx.readers, token) if token else None
    if quorum is None or given >= quorum.threshold or not sys.stdin.isatty():
        return []
    shares = []
    for i in range(given, quorum.threshold):
        text = click.prompt(f"custodian share {i + 1} of {quorum.threshold} (share-secret line)",
                            hide_input=True)
        shares.append(q.parse_share(text, quorum.token_label, f"prompt {i + 1}"))
    return shares


SHARE_OPTION = click.option(
    "--share-file", "share_files", multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="A custodian's share file (repeat for each custodian present).")


@ceremony_group.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@SHARE_OPTION
@pass_ctx
@handle_errors
def ceremony_check(ctx: Context, file: Path, share_files: tuple[Path, ...]) -> None:
    """Validate FILE without touching the HSM's keys and print the plan, step by step.

    Checks the file (strict: unknown keys refused), profile, key spec, subject, that no output
    exists yet, that the token is reachable, any shares given, and lints every certificate
    drafted with a probe key.
    """
    from ca.ceremony import CeremonyRunner

    app = ctx.kyso
    ceremony = _load(app, file)
    runner = CeremonyRunner(_context(app, _operator(ceremony.operator), None))
    plan = runner.check(ceremony, share_files=share_files, require_shares=False)
    click.echo(plan.render())
    click.echo("check passed: nothing was changed")


@ceremony_group.command("run")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@SHARE_OPTION
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--operator", help="Who runs the ceremony (default: the file's operator, "
              "$KYSO_OPERATOR or the login name).")
@click.option("--so-pin-file", type=click.Path(dir_okay=False, path_type=Path),
              help="SO PIN of the root's token (root ceremony; default: the settings' SO PIN).")
@pass_ctx
@handle_errors
def ceremony_run(ctx: Context, file: Path, share_files: tuple[Path, ...], yes: bool,
                 operator: str | None, so_pin_file: Path | None) -> None:
    """Run the ceremony in FILE: check, show the plan, confirm, execute, record."""
    from ca.ceremony import CeremonyRunner

    app = ctx.kyso
    ceremony = _load(app, file)
    runner = CeremonyRunner(_context(app, _operator(operator or ceremony.operator),
                                     so_pin_file))
    prompted = _prompted_shares(runner, ceremony, len(share_files))

    def confirm(plan: Any) -> bool:
        click.echo(plan.render())
        return yes or click.confirm("run this ceremony now?", default=False)

    document = runner.run(ceremony, prompted, share_files, confirm=confirm)
    click.echo(f"ceremony {ceremony.name} completed: {document['record']['outcome']}")


@ceremony_group.command("verify")
@click.argument("record", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def ceremony_verify(ctx: Context, record: Path, as_json: bool) -> None:
    """Check a ceremony RECORD: its HSM signature, its outputs' SHA-256, its audit entry."""
    from ca.ceremony.record import check_outputs, check_signature, load_document
    from ca.ceremony.verify import audit_entry_for

    app = ctx.kyso
    document = load_document(record)
    signer = _audit_signer(app)
    problems = check_signature(document, signer.public_key)
    problems += check_outputs(document)
    seq = audit_entry_for(app.readers, document["signature"].get("record_sha256", ""))
    if seq is None:
        problems.append("the audit log has no entry for this record")
    r = document["record"]
    summary = {"record": str(record), "ceremony": r["ceremony"]["name"],
               "type": r["ceremony"]["type"], "outcome": r["outcome"], "audit_entry": seq,
               "ok": not problems, "problems": problems}
    if as_json:
        click.echo(json.dumps(summary, ensure_ascii=False, indent=2))
    else:
        click.echo(f"{r['ceremony']['type']} ceremony {r['ceremony']['name']!r}, outcome "
                   f"{r['outcome']}, audit entry {seq}")
        for p in problems:
            click.echo(f"problem: {p}", err=True)
    if problems:
        click.echo(f"error: record {record} does not verify ({len(problems)} problem(s))",
                   err=True)
        sys.exit(1)
    click.echo("record verified: signature, outputs and audit entry match")


def run_demo_ceremonies(app: Any, *, confirm: bool = False) -> None:
    """The demo hierarchy through the shipped ceremony files (skipping what is done)."""
    from ca import store
    from ca.ceremony import CeremonyRunner
    from kyso.bootstrap import DEMO_CEREMONIES, DEMO_SHARES

    data_dir = Path(app.settings.data_dir)
    shares = [data_dir / s for s in DEMO_SHARES]
    with app.readers() as s:
        cas = {c.name for c in store.list_cas(s)}
    done = []
    for file, ca_name, needs_shares in (("root.yaml", "root", False),
                                        ("issuing.yaml", "issuing", True),
                                        ("root-crl.yaml", None, True),
                                        ("service-certs.yaml", None, False)):
        ceremony = _load(app, DEMO_CEREMONIES / file)
        if ceremony.record_path.exists() or (ca_name is not None and ca_name in cas):
            continue
        runner = CeremonyRunner(_context(app, _operator(ceremony.operator), None))
        with app.readers() as s:
            root = store.find_ca(s, "root")
        root_offline = root is not None and not app.authority.is_online(root)
        runner.run(ceremony, share_files=shares if needs_shares and root_offline else (),
                   confirm=(lambda plan: click.confirm(plan.render() + "\nrun?"))
                   if confirm else (lambda plan: True))
        done.append(ceremony.name)
    if done:
        click.echo(f"demo ceremonies run: {', '.join(done)}")
    else:
        click.echo(f"hierarchy present ({', '.join(sorted(cas)) or 'none'}); nothing to do")
