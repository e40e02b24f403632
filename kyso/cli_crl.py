"""`kyso crl generate|show`: CRLs of the online CAs by hand (the web workers also make them
when due; an offline CA's CRL is signed in a `crl` key ceremony)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from cryptography import x509

from ca.errors import InvalidRequest
from kyso.cli import Context, handle_errors, main, pass_ctx


@main.group("crl")
def crl_group() -> None:
    """Certificate revocation lists."""


@crl_group.command("generate")
@click.option("--ca", "ca_names", multiple=True, help="CA to sign a CRL for (repeatable; "
              "default: every online CA).")
@click.option("--due", is_flag=True, help="Only what the schedule says is due.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the (last) full CRL here, DER.")
@pass_ctx
@handle_errors
def crl_generate(ctx: Context, ca_names: tuple[str, ...], due: bool, out: Path | None) -> None:
    """Sign new CRLs now and publish them at /crl/<ca>.crl, with the delta CRL against the
    previous one at /crl/delta/<ca>.crl (when delta CRLs are on)."""
    service = ctx.kyso.crls
    if due:
        if ca_names:
            raise InvalidRequest("--due decides the CAs itself; drop --ca")
        made = service.run_due(actor="operator")
    else:
        names = list(ca_names) or service.online_cas()
        if not names:
            raise InvalidRequest("no online CA to sign a CRL for")
        made = [crl for name in names for crl in service.generate(name, actor="operator")]
    for crl in made:
        base = f" (against full CRL {crl.base_number})" if crl.base_number else ""
        click.echo(f"{crl.ca_name}: {crl.kind} CRL number {crl.number}{base}, {crl.entries} "
                   f"entries, next update {crl.next_update:%Y-%m-%d %H:%M} UTC")
    if not made:
        click.echo("nothing due")
    fulls = [crl for crl in made if crl.kind == "full"]
    if out is not None and fulls:
        out.write_bytes(fulls[-1].der)
        click.echo(f"wrote {out}")


@crl_group.command("show")
@click.argument("ca_name")
@click.option("--delta", is_flag=True, help="The delta CRL instead of the full one.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def crl_show(ctx: Context, ca_name: str, delta: bool, as_json: bool) -> None:
    """The CRL a CA publishes now."""
    from ca.errors import NotFound

    crl = ctx.kyso.crls.current(ca_name, "delta" if delta else "full")
    if crl is None:
        raise NotFound(f"no {'delta ' if delta else ''}CRL published for CA {ca_name!r}")
    parsed = x509.load_der_x509_crl(crl.der)
    info = {"ca": ca_name, "kind": crl.kind, "number": crl.number,
            "this_update": crl.this_update.isoformat(),
            "next_update": crl.next_update.isoformat(), "entries": len(parsed),
            "url": ctx.kyso.authority.urls.delta_crl(ca_name) if delta
            else ctx.kyso.authority.urls.crl(ca_name)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            click.echo(f"{key + ':':<13}{value}")
