"""`kyso sign`: PAdES signatures for an official, one document or a batch, keys in the HSM."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import click

from kyso.cli import Context, _read_pin, handle_errors, main, pass_ctx
from kyso.signing import DEFAULT_KIND, DEFAULT_LEVEL, KINDS, LEVELS
from signer.errors import SignerError

if TYPE_CHECKING:
    from kyso.signing import BatchItem

# pyHanko (behind signer.pdfsign) takes most of a second to import: only `kyso sign` itself
# pays for it (kyso.signing imports it where a document is signed), not every other command.

EXIT_SOME_FAILED = 4


@main.command("sign")
@click.argument("inputs", nargs=-1, required=True,
                type=click.Path(dir_okay=False, path_type=Path))
@click.option("--official", "official_id", required=True, type=int,
              help="The signing official's id (`kyso official show`).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Output file (one input) or directory (several inputs; created if missing).")
@click.option("--level", type=click.Choice(LEVELS), default=DEFAULT_LEVEL,
              show_default=True, help="PAdES baseline level.")
@click.option("--visible", metavar="PAGE,X,Y,W,H",
              help="Visible signature: page (from 1) and box in PDF points from the bottom-left "
                   "corner.")
@click.option("--field", "field_name", help="Sign into this existing empty signature field.")
@click.option("--kind", type=click.Choice(KINDS), default=DEFAULT_KIND,
              show_default=True,
              help="personal: handwritten signature + name; organization: red seal + name.")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="PNG shown in the visible signature (signature, or the red seal).")
@click.option("--certify", is_flag=True,
              help="Certification (DocMDP) signature of the issuing organization; locks the "
                   "existing fields.")
@click.option("--docmdp", type=click.IntRange(1, 3), default=2, show_default=True,
              help="With --certify: 1 no changes, 2 form filling and signing, 3 also "
                   "annotations.")
@click.option("--reason", help="Reason stored in the signature.")
@click.option("--location", help="Location stored in the signature.")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the official's signing PIN ('-' reads stdin); prompted when "
                   "omitted.")
@click.option("--json", "as_json", is_flag=True, help="Per-document report as JSON lines.")
@pass_ctx
@handle_errors
def sign(ctx: Context, inputs: tuple[Path, ...], official_id: int, out: Path | None,
         level: str, visible: str | None, field_name: str | None, kind: str,
         image: Path | None, certify: bool, docmdp: int, reason: str | None,
         location: str | None, pin_file: Path | None, as_json: bool) -> None:
    """Sign INPUTS (PDF) for an official. Several inputs sign as one batch: one PIN, one HSM
    login, one line per document; exit 4 if any document was refused."""
    from kyso.signing import build_sign_request, sign_documents, signing_certificate

    if visible and field_name:
        raise click.UsageError("--visible and --field exclude each other")
    if out is None:
        raise click.UsageError("--out is required (a file for one input, a directory for "
                               "several)")
    targets = _targets(inputs, out)
    try:
        request = build_sign_request(
            level, kind, visible=visible, field=field_name,
            image_png=image.read_bytes() if image else None, reason=reason,
            location=location, certify=certify, docmdp=docmdp,
        )
    except SignerError as exc:
        raise click.UsageError(exc.message) from None
    app = ctx.kyso
    # Checked before the PIN is asked: a revoked certificate costs no PIN attempt.
    signing_certificate(app, official_id)
    pin = _read_pin(pin_file)
    unreadable: dict[str, str] = {}
    failed = 0
    # Read one document at a time, as the batch reaches it (a batch of large files never
    # sits in memory at once); unreadable ones are reported after the others.
    results = sign_documents(app, official_id, pin, _read_inputs(inputs, unreadable), request)
    for result in results:
        target = targets[result.name]
        if result.ok:
            assert result.data is not None
            _write_new(target, result.data)
        else:
            failed += 1
        _report(result.name, target, result.error.message if result.error else None, as_json)
    for name, message in unreadable.items():
        failed += 1
        _report(name, targets[name], message, as_json)
    if failed:
        sys.exit(EXIT_SOME_FAILED)


def _read_inputs(inputs: tuple[Path, ...], errors: dict[str, str]) -> Iterator[BatchItem]:
    from kyso.signing import BatchItem
    from signer.pdfinput import check_size

    for path in inputs:
        try:
            check_size(path.stat().st_size)  # before reading a huge file into memory
            yield BatchItem(str(path), path.read_bytes())
        except OSError as exc:
            errors[str(path)] = f"cannot read {path}: {exc.strerror or exc}"
        except SignerError as exc:
            errors[str(path)] = exc.message


def _targets(inputs: tuple[Path, ...], out: Path) -> dict[str, Path]:
    if len(set(inputs)) != len(inputs):
        raise click.UsageError("the same input is named twice")
    if len(inputs) == 1 and not out.is_dir():
        targets = {str(inputs[0]): out}
    else:
        if out.exists() and not out.is_dir():
            raise click.UsageError(f"--out {out} must be a directory when signing several "
                                   "files")
        out.mkdir(parents=True, exist_ok=True)
        targets = {str(p): out / p.name for p in inputs}
        if len(set(targets.values())) != len(targets):
            raise click.UsageError("two inputs have the same file name; sign them into "
                                   "different directories")
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing:
        raise click.UsageError(f"output exists, not overwriting: {', '.join(existing)}")
    return targets


def _write_new(target: Path, data: bytes) -> None:
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _report(name: str, target: Path, error: str | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"input": name, "output": None if error else str(target),
                               "ok": error is None, "error": error}, ensure_ascii=False))
    elif error:
        click.echo(f"FAILED {name}: {error}")
    else:
        click.echo(f"signed {name} -> {target}")
