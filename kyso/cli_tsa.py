"""`kyso tsa stamp`: an RFC 3161 timestamp from this installation's TSA, in-process."""

from __future__ import annotations

import secrets
from pathlib import Path

import click

from kyso.cli import Context, handle_errors, main, pass_ctx
from signer.errors import SignerError
from signer.tsa import IMPRINT_LENGTHS


@main.group("tsa")
def tsa_group() -> None:
    """RFC 3161 timestamp authority."""


@tsa_group.command("stamp")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the TimeStampResp (DER, like `openssl ts -reply -in`).")
@click.option("--hash", "hash_algorithm", type=click.Choice(sorted(IMPRINT_LENGTHS)),
              default="sha256", show_default=True, help="Message-imprint hash algorithm.")
@click.option("--no-cert", is_flag=True, help="Leave the TSA certificate out (certReq false).")
@pass_ctx
@handle_errors
def tsa_stamp(ctx: Context, file: Path, out: Path, hash_algorithm: str, no_cert: bool) -> None:
    """Timestamp FILE (hashed here) with the TSA key in the HSM and write the reply."""
    if out.exists():
        raise click.ClickException(f"{out} exists; not overwriting it")
    try:
        stamp = ctx.kyso.tsa().timestamp_data(file.read_bytes(), hash_algorithm,
                                              nonce=secrets.randbits(63), cert_req=not no_cert)
    except SignerError as exc:
        raise click.ClickException(exc.message) from None
    out.write_bytes(stamp.response)
    click.echo(f"serial: {stamp.serial_hex}")
    click.echo(f"time: {stamp.gen_time.isoformat()}")
    click.echo(f"policy: {stamp.policy}")
    click.echo(f"wrote {out}")
