"""The `kyso` command line: scriptable, clear messages, non-zero exit codes on every error."""

from __future__ import annotations

import functools
import getpass
import json
import os
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from ca import store
from ca.errors import CAError, InvalidRequest
from kyso.settings import Settings, SettingsError, load_settings
from signer.errors import SignerError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR = 1
EXIT_INTERNAL = 70


class Context:
    def __init__(self, config: str | None) -> None:
        self.config = config
        self._settings: Settings | None = None
        self._kyso: Any = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config)
        return self._settings

    @property
    def kyso(self) -> Any:
        if self._kyso is None:
            from kyso.app import Kyso

            self._kyso = Kyso(self.settings)
            self._kyso.migrate()
        return self._kyso


def _fail(message: str, code: int = EXIT_ERROR) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def cli_actor() -> str:
    """Who acts, for the audit log: `cli:` and the login name (the uid when it has none)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"cli:{user}"


def handle_errors(func: F) -> F:
    """Known errors become one readable line and exit 1; anything else exit 70, no traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.exc import OperationalError

        from hsm import HsmError

        try:
            return func(*args, **kwargs)
        except (CAError, HsmError, SettingsError, SignerError) as exc:
            _fail(str(exc))
        except OperationalError as exc:
            # Unreachable server, locked or unreadable SQLite file: the driver's first line says
            # which (it names host and port, never the password).
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            _fail(f"cannot use the database: {detail}")
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as exc:  # noqa: BLE001 - last line of defence for the operator
            if os.environ.get("KYSO_DEBUG"):
                traceback.print_exc()
            _fail(f"internal error ({type(exc).__name__}); set KYSO_DEBUG=1 for details",
                  EXIT_INTERNAL)

    return wrapper  # type: ignore[return-value]


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", envvar="KYSO_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: $KYSO_CONFIG, else var/kyso.toml).")
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """kyso: certificate authority, OCSP, timestamps and PDF signing for officials."""
    ctx.obj = Context(config)


# -- setup -------------------------------------------------------------------------------

@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("var"),
              show_default=True, help="Where the settings, database and token live.")
@handle_errors
def init(data_dir: Path) -> None:
    """Create (or reuse) the embedded default: settings, SoftHSM2 token, database schema."""
    from kyso.app import Kyso
    from kyso.bootstrap import init_data_dir

    config = init_data_dir(data_dir)
    app = Kyso(load_settings(config))
    app.migrate()
    app.close()
    click.echo(f"data directory ready: {data_dir} (settings {config})")


@main.group()
def demo() -> None:
    """Demo data for the embedded default."""


@demo.command("setup")
@click.option("--yes/--confirm", default=True, show_default=True,
              help="Run the demo ceremonies without asking.")
@pass_ctx
@handle_errors
def demo_setup(ctx: Context, yes: bool) -> None:
    """Create the demo hierarchy by running the shipped demo key ceremonies.

    ceremonies/demo/: root (own token, 2-of-3 quorum; DEMO shares written to var/demo-shares),
    issuing CA, the root's first CRL, and the OCSP/timestamping certificates. A ceremony whose
    record exists (or whose CA exists) is skipped: run again, nothing changes and no key is
    ever re-created.
    """
    from kyso.cli_ceremony import run_demo_ceremonies

    run_demo_ceremonies(ctx.kyso, confirm=not yes)


# -- CAs ---------------------------------------------------------------------------------

@main.group("ca")
def ca_group() -> None:
    """Certificate authorities of the hierarchy."""


def _fingerprint(der: bytes) -> str:
    return x509.load_der_x509_certificate(der).fingerprint(hashes.SHA256()).hex(":").upper()


def _ca_dict(app: Any, s: Any, record: Any) -> dict[str, Any]:
    parent = store.get_ca_by_id(s, record.parent_id).name if record.parent_id else None
    return {
        "name": record.name,
        "kind": record.kind,
        "parent": parent,
        "subject": record.subject,
        "serial": record.serial,
        "not_before": record.not_before.isoformat(),
        "not_after": record.not_after.isoformat(),
        "key_label": record.key_label,
        "key_spec": record.key_spec,
        "status": record.status,
        "sha256_fingerprint": _fingerprint(record.cert_der),
        "certificate_file": str(app.settings.publish_dir / "ca" / f"{record.name}.crt"),
        "crl_url": app.authority.urls.crl(record.name),
    }


@ca_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def ca_list(ctx: Context, as_json: bool) -> None:
    """List the CAs."""
    app = ctx.kyso
    with app.readers() as s:
        rows = [_ca_dict(app, s, r) for r in store.list_cas(s)]
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    if not rows:
        click.echo("no CA yet (run `kyso demo setup` or a key ceremony)")
    for r in rows:
        click.echo(f"{r['name']:<16} {r['kind']:<8} {r['key_spec']:<9} "
                   f"until {r['not_after'][:10]}  {r['subject']}")


@ca_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
@handle_errors
def ca_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one CA."""
    app = ctx.kyso
    with app.readers() as s:
        info = _ca_dict(app, s, store.get_ca(s, name))
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        for key, value in info.items():
            click.echo(f"{key + ':':<20} {value if value is not None else '-'}")


@ca_group.command("chain")
@click.argument("name")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PEM file to write (leaf-most first).")
@pass_ctx
@handle_errors
def ca_chain(ctx: Context, name: str, out: Path) -> None:
    """Write the CA's chain up to the root as PEM, leaf-most first."""
    chain = ctx.kyso.authority.chain(name)
    out.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain))
    click.echo(f"wrote {len(chain)} certificate(s) to {out}")


@ca_group.command("create-root")
@click.option("--name", required=True, help="Short name, used in URLs.")
@click.option("--subject", required=True, help='e.g. "CN=…,O=…,C=VN".')
@click.option("--key-spec", default="ec-p384", show_default=True)
@click.option("--days", type=int, help="Validity in days (profile default if omitted).")
@pass_ctx
@handle_errors
def ca_create_root(ctx: Context, name: str, subject: str, key_spec: str, days: int | None) -> None:
    """Generate a root key on the online token and self-sign it, without a ceremony.

    For development and tests: a production root is made by `kyso ceremony run` (its own
    token, quorum, signed record).
    """
    rec = ctx.kyso.authority.create_root(name, subject, key_spec=key_spec, validity_days=days)
    click.echo(f"created root CA {rec.name} serial {rec.serial}")


@ca_group.command("create-issuing")
@click.option("--name", required=True)
@click.option("--parent", required=True, help="Name of the signing (root) CA.")
@click.option("--subject", required=True)
@click.option("--key-spec", default="ec-p256", show_default=True)
@click.option("--days", type=int)
@click.option("--path-length", type=int)
@pass_ctx
@handle_errors
def ca_create_issuing(ctx: Context, name: str, parent: str, subject: str, key_spec: str,
                      days: int | None, path_length: int | None) -> None:
    """Generate an issuing CA key and sign it with an online parent, without a ceremony.

    For development and tests: with an offline root use `kyso ceremony run` (quorum).
    """
    rec = ctx.kyso.authority.create_issuing(name, subject, parent=parent, key_spec=key_spec,
                                            validity_days=days, path_length=path_length)
    click.echo(f"created issuing CA {rec.name} serial {rec.serial}")


# -- certificates ------------------------------------------------------------------------

@main.group("cert")
def cert_group() -> None:
    """Issue, renew, revoke and inspect certificates."""


def _read_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidRequest(f"{what} file {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequest(f"{what} path {path} is a directory") from None


def _read_pin(pin_file: Path | None, confirm: bool = False) -> str:
    if pin_file is not None:
        pin = (sys.stdin.read() if str(pin_file) == "-" else
               _read_file(pin_file, "PIN").decode("utf-8", "replace")).strip()
        if not pin:
            raise InvalidRequest(f"the PIN file {pin_file} is empty")
        return pin
    return click.prompt("Signing PIN", hide_input=True, confirmation_prompt=confirm)


def _check_out(out: Path | None) -> None:
    """Refuse an output file that cannot be written before anything is issued."""
    if out is None:
        return
    parent = out.parent
    if not parent.is_dir():
        raise InvalidRequest(f"cannot write {out}: the directory {parent} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise InvalidRequest(f"cannot write {out}: permission denied")


def _write_out(out: Path | None, pem: bytes, serial: str) -> None:
    if out is None:
        return
    try:
        out.write_bytes(pem)
    except OSError as exc:
        # The certificate exists and is recorded: say so, and how to get it.
        raise InvalidRequest(
            f"certificate {serial} was issued but could not be written to {out} "
            f"({exc.strerror or exc}); get it with `kyso cert show {serial}`"
        ) from None


def _cert_dict(app: Any, rec: Any) -> dict[str, Any]:
    with app.readers() as s:
        ca_name = store.get_ca_by_id(s, rec.ca_id).name
        predecessor = None
        if rec.predecessor_id:
            from ca.models import CertificateRecord

            pred = s.get(CertificateRecord, rec.predecessor_id)
            predecessor = pred.serial if pred else None
    out = {
        "serial": rec.serial,
        "status": rec.status,
        "ca": ca_name,
        "profile": rec.profile,
        "subject": rec.subject,
        "organization": rec.organization,
        "key_spec": rec.key_spec,
        "not_before": rec.not_before.isoformat(),
        "not_after": rec.not_after.isoformat(),
        "revoked_at": rec.revoked_at.isoformat() if rec.revoked_at else None,
        "revocation_reason": rec.revocation_reason,
        "invalidity_date": rec.invalidity_date.isoformat() if rec.invalidity_date else None,
        "official_id": rec.official_id,
        "predecessor": predecessor,
        "sha256_fingerprint": _fingerprint(rec.cert_der) if rec.cert_der else None,
    }
    if rec.cert_der:
        cert = x509.load_der_x509_certificate(rec.cert_der)
        out["pem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
    return out


def _print_issued(issued: Any, out: Path | None, as_json: bool) -> None:
    _write_out(out, issued.pem, issued.serial)
    if as_json:
        click.echo(json.dumps({"serial": issued.serial, "ca": issued.ca_name,
                               "profile": issued.profile, "subject": issued.subject,
                               "not_after": issued.not_after.isoformat(),
                               "out": str(out) if out else None}, ensure_ascii=False))
        return
    click.echo(f"serial: {issued.serial}")
    click.echo(f"subject: {issued.subject}")
    click.echo(f"valid until: {issued.not_after:%Y-%m-%d %H:%M:%S} UTC")
    if out:
        click.echo(f"certificate written to {out}")


@cert_group.command("issue")
@click.option("--ca", "ca_name", required=True, help="Issuing CA name.")
@click.option("--profile", required=True, help="official-signing, tls-server, …")
@click.option("--csr", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="PKCS#10 request (PEM or DER); only its key is used.")
@click.option("--subject", required=True, help='Approved subject, e.g. "CN=…,O=…,C=VN".')
@click.option("--email", multiple=True, help="E-mail address for the SAN (repeatable).")
@click.option("--dns", multiple=True, help="DNS name for the SAN (repeatable).")
@click.option("--days", type=int, help="Validity in days (profile default if omitted).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="PEM output file.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def cert_issue(ctx: Context, ca_name: str, profile: str, csr: Path, subject: str,
               email: tuple[str, ...], dns: tuple[str, ...], days: int | None,
               out: Path | None, as_json: bool) -> None:
    """Issue a certificate from a CSR; subject and extensions come from the approved request."""
    _check_out(out)
    authority = ctx.kyso.authority
    request = authority.request_from_csr(profile, _read_file(csr, "CSR"), subject,
                                         emails=email, dns_names=dns, validity_days=days)
    _print_issued(authority.issue(ca_name, request), out, as_json)


@cert_group.command("renew")
@click.argument("serial")
@click.option("--rekey", is_flag=True, help="New key: an official's new HSM key, or --csr.")
@click.option("--csr", type=click.Path(dir_okay=False, path_type=Path),
              help="CSR with the new key (rekey of a CSR-based certificate).")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Official's signing PIN (rekey of an official's key); '-' reads stdin.")
@click.option("--days", type=int)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def cert_renew(ctx: Context, serial: str, rekey: bool, csr: Path | None, pin_file: Path | None,
               days: int | None, out: Path | None, as_json: bool) -> None:
    """Issue a successor certificate (same key, or a new one with --rekey)."""
    _check_out(out)
    authority = ctx.kyso.authority
    old = authority.certificate(serial)
    pin = None
    if rekey and old.official_id is not None:
        pin = _read_pin(pin_file)
    issued = authority.renew(serial, rekey=rekey, pin=pin, validity_days=days,
                             csr=_read_file(csr, "CSR") if csr else None)
    _print_issued(issued, out, as_json)


@cert_group.command("revoke")
@click.argument("serial")
@click.option("--reason", required=True,
              help="RFC 5280 reason: unspecified, keyCompromise, cACompromise, "
                   "affiliationChanged, superseded, cessationOfOperation, certificateHold, "
                   "privilegeWithdrawn, aACompromise.")
@click.option("--invalidity-date", help="When the key was (suspected) compromised, ISO 8601.")
@pass_ctx
@handle_errors
def cert_revoke(ctx: Context, serial: str, reason: str, invalidity_date: str | None) -> None:
    """Revoke a certificate."""
    when = None
    if invalidity_date:
        try:
            when = datetime.fromisoformat(invalidity_date)
        except ValueError:
            raise InvalidRequest(f"invalidity date {invalidity_date!r} is not ISO 8601") from None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
    rec = ctx.kyso.authority.revoke(serial, reason, invalidity_date=when)
    click.echo(f"revoked {rec.serial} ({rec.revocation_reason})")


@cert_group.command("hold")
@click.argument("serial")
@pass_ctx
@handle_errors
def cert_hold(ctx: Context, serial: str) -> None:
    """Suspend a certificate (revocation reason certificateHold)."""
    rec = ctx.kyso.authority.hold(serial)
    click.echo(f"{rec.serial} is on hold")


@cert_group.command("release")
@click.argument("serial")
@pass_ctx
@handle_errors
def cert_release(ctx: Context, serial: str) -> None:
    """Release a certificate from hold."""
    rec = ctx.kyso.authority.release(serial)
    click.echo(f"{rec.serial} is valid again")


@cert_group.command("show")
@click.argument("serial")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def cert_show(ctx: Context, serial: str, as_json: bool) -> None:
    """Show one certificate by serial (hex)."""
    app = ctx.kyso
    info = _cert_dict(app, app.authority.certificate(serial))
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key, value in info.items():
        if key != "pem":
            click.echo(f"{key + ':':<20} {value if value is not None else '-'}")
    if "pem" in info:
        click.echo(info["pem"], nl=False)


@cert_group.command("list")
@click.option("--status", type=click.Choice(["pending", "valid", "revoked", "hold", "failed"]))
@click.option("--expiring-days", type=click.IntRange(min=0),
              help="Only certificates expiring within N days.")
@click.option("--org", help="Only this organization (exact).")
@click.option("--ca", "ca_name", help="Only this CA.")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def cert_list(ctx: Context, status: str | None, expiring_days: int | None, org: str | None,
              ca_name: str | None, as_json: bool) -> None:
    """List certificates."""
    app = ctx.kyso
    now = datetime.now(UTC)
    with app.readers() as s:
        ca_id = store.get_ca(s, ca_name).id if ca_name else None
        names = {c.id: c.name for c in store.list_cas(s)}
        rows = store.list_certificates(
            s, status=status, organization=org, ca_id=ca_id, now=now,
            expiring_before=now + timedelta(days=expiring_days) if expiring_days is not None
            else None,
        )
        items = [{"serial": r.serial, "status": r.status, "ca": names.get(r.ca_id),
                  "profile": r.profile, "subject": r.subject, "organization": r.organization,
                  "not_after": r.not_after.isoformat(), "official_id": r.official_id}
                 for r in rows]
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    for i in items:
        click.echo(f"{i['serial']:<33} {i['status']:<8} {i['not_after'][:10]}  {i['subject']}")
    click.echo(f"{len(items)} certificate(s)", err=True)


# -- officials ---------------------------------------------------------------------------

@main.group("official")
def official_group() -> None:
    """Officials (subscribers) and their HSM signing keys."""


def _default_issuing_ca(app: Any) -> str:
    with app.readers() as s:
        issuing = [c.name for c in store.list_cas(s) if c.kind == "issuing"]
    if len(issuing) != 1:
        raise InvalidRequest(
            "give --ca: " + ("no issuing CA exists yet" if not issuing else
                             f"several issuing CAs exist ({', '.join(issuing)})")
        )
    return issuing[0]


@official_group.command("add")
@click.option("--name", required=True, help="Full name, e.g. \"Nguyễn Thị Hồng Nhung\".")
@click.option("--org", required=True, help="Organization.")
@click.option("--unit", help="Organizational unit.")
@click.option("--locality", help="Locality (ward, district or city).")
@click.option("--province", help="Province or city (ST).")
@click.option("--email", required=True)
@click.option("--title", help="Title / position.")
@click.option("--ca", "ca_name", help="Issuing CA (default: the only issuing CA).")
@click.option("--key-spec", help="Key type (default from settings, ec-p256).")
@click.option("--days", type=int, help="Certificate validity in days.")
@click.option("--pin-file", type=click.Path(dir_okay=False, path_type=Path),
              help="File holding the official's signing PIN ('-' reads stdin); "
                   "prompted when omitted.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the certificate (PEM).")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def official_add(ctx: Context, name: str, org: str, unit: str | None, locality: str | None,
                 province: str | None, email: str, title: str | None, ca_name: str | None,
                 key_spec: str | None, days: int | None, pin_file: Path | None,
                 out: Path | None, as_json: bool) -> None:
    """Create an official: HSM key usable only with their signing PIN, and a certificate."""
    _check_out(out)
    app = ctx.kyso
    pin = _read_pin(pin_file, confirm=True)
    result = app.authority.add_official(
        name=name, organization=org, unit=unit, locality=locality, province=province,
        email=email, title=title, pin=pin, ca_name=ca_name or _default_issuing_ca(app),
        key_spec=key_spec, validity_days=days,
    )
    _write_out(out, result.certificate.pem, result.certificate.serial)
    if as_json:
        click.echo(json.dumps({"official_id": result.official_id,
                               "serial": result.certificate.serial,
                               "subject": result.certificate.subject}, ensure_ascii=False))
        return
    click.echo(f"official: {result.official_id}")
    click.echo(f"serial: {result.certificate.serial}")
    click.echo(f"subject: {result.certificate.subject}")


@official_group.command("unlock")
@click.argument("official_id", type=int)
@pass_ctx
@handle_errors
def official_unlock(ctx: Context, official_id: int) -> None:
    """Unlock an official's key after too many wrong PINs."""
    ctx.kyso.authority.unlock_official(official_id)
    click.echo(f"official {official_id}'s key is unlocked")


@official_group.command("show")
@click.argument("official_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@handle_errors
def official_show(ctx: Context, official_id: int, as_json: bool) -> None:
    """Show an official and their certificates."""
    app = ctx.kyso
    with app.readers() as s:
        o = store.get_official(s, official_id)
        info = {"id": o.id, "name": o.name, "title": o.title, "organization": o.organization,
                "unit": o.unit, "locality": o.locality, "email": o.email, "locked": o.locked,
                "failed_pin_attempts": o.failed_pin_attempts,
                "certificates": [{"serial": c.serial, "status": c.status,
                                  "not_after": c.not_after.isoformat()}
                                 for c in store.official_certificates(s, official_id)]}
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    for key, value in info.items():
        if key != "certificates":
            click.echo(f"{key + ':':<22} {value if value is not None else '-'}")
    for c in info["certificates"]:
        click.echo(f"  {c['serial']:<33} {c['status']:<8} until {c['not_after'][:10]}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@pass_ctx
@handle_errors
def serve(ctx: Context, host: str, port: int) -> None:
    """Serve the web app with gunicorn (production-like, 2 workers)."""
    settings = ctx.settings
    env = dict(os.environ)
    if settings.config_path:
        env["KYSO_CONFIG"] = str(Path(settings.config_path).resolve())
    args = [sys.executable, "-m", "gunicorn", "--workers", "2", "--bind", f"{host}:{port}",
            "--access-logfile", "-", "--no-control-socket", "web.wsgi:app"]
    os.execvpe(args[0], args, env)


# Command groups kept in their own modules register themselves on `main` when imported.
import kyso.cli_audit  # noqa: E402,F401
import kyso.cli_demo  # noqa: E402,F401
import kyso.cli_lifecycle  # noqa: E402,F401
from kyso import cli_account, cli_ceremony, cli_crl, cli_ocsp, cli_sign, cli_tsa, cli_verify  # noqa: E402,F401,E501

if __name__ == "__main__":  # pragma: no cover
    # `python -m kyso.cli`: run the importable module's `main`, the one the command groups of
    # the other modules (ceremony, crl, audit, ...) registered on.
    from kyso.cli import main as _main

    _main()
