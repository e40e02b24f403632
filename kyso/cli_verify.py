"""`kyso verify`: check the signatures of a PDF; report in Vietnamese, English or JSON.

Exit codes: 0 every signature TOTAL-PASSED, 1 some TOTAL-FAILED, 2 some INDETERMINATE (none
failed), 3 the file could not be verified at all (not a PDF, damaged, encrypted, too large,
no signature, unreadable trust anchors or settings), 70 internal error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click
from cryptography import x509

from kyso.cli import Context, main, pass_ctx
from kyso.validation import KysoRevocation, trust_anchors
from signer.errors import SignerError
from signer.pdfinput import DEFAULT_MAX_BYTES

# signer.verify imports pyHanko (most of a second): only `kyso verify` itself imports it.
DEFAULT_MAX_MB = DEFAULT_MAX_BYTES // 2**20

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_INDETERMINATE = 2
EXIT_BAD_INPUT = 3
EXIT_INTERNAL = 70


class _VerifyCommand(click.Command):
    """Usage mistakes are bad input here (3): click's own code for them (2) is taken by
    INDETERMINATE."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            exc.exit_code = EXIT_BAD_INPUT
            raise


def _bad_input(code: str, message: str, as_json: bool) -> NoReturn:
    if as_json:
        click.echo(json.dumps({"error": {"code": code, "message": message}},
                              ensure_ascii=False))
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _read_anchors(paths: tuple[Path, ...]) -> list[x509.Certificate]:
    anchors: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"cannot read trust anchor file {path}: "
                             f"{exc.strerror or exc}") from None
        try:
            anchors.extend(x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                           else [x509.load_der_x509_certificate(data)])
        except ValueError:
            raise ValueError(f"{path} holds no PEM or DER certificate") from None
    return anchors


@main.command("verify", cls=_VerifyCommand)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report (JSON).")
@click.option("--lang", type=click.Choice(["vi", "en"]), default="vi", show_default=True,
              help="Language of the text report.")
@click.option("--trust", "trust_files", multiple=True,
              type=click.Path(dir_okay=False, path_type=Path),
              help="Trust anchor certificates, PEM or DER (repeatable; default: the root CAs "
                   "of this installation's database).")
@click.option("--offline", is_flag=True,
              help="No revocation lookups: only the validation data embedded in the file.")
@click.option("--max-mb", type=click.IntRange(min=1), default=DEFAULT_MAX_MB,
              show_default=True, help="Refuse files larger than this (MiB).")
@pass_ctx
def verify(ctx: Context, file: Path, as_json: bool, lang: str, trust_files: tuple[Path, ...],
           offline: bool, max_mb: int) -> None:
    """Verify every signature and document timestamp in FILE (PDF).

    Exit 0: all valid; 1: some invalid; 2: some could not be decided; 3: FILE could not be
    verified at all.
    """
    from signer.report import render_text, report_to_json
    from signer.verify import FAILED, INDETERMINATE, verify_pdf_file

    try:
        if not file.is_file():
            _bad_input("file_not_found", f"{file}: no such file", as_json)
        anchors = _read_anchors(trust_files) if trust_files else None
        app = None
        # The database is needed for the default anchors and for revocation lookups; with
        # --trust and no settings file it is not touched (nothing gets created).
        if anchors is None or not offline:
            try:
                if anchors is None or ctx.settings.config_path is not None:
                    app = ctx.kyso
                    if anchors is None:
                        anchors = trust_anchors(app)
            except Exception as exc:  # noqa: BLE001 - settings, database, HSM: one line
                if anchors is None:
                    _bad_input("trust_unavailable",
                               f"cannot read the trust anchors from the database: "
                               f"{_one_line(exc)} (give --trust PEMFILE)", as_json)
                click.echo(f"warning: revocation lookups unavailable: {_one_line(exc)}",
                           err=True)
                app = None
        if not anchors:
            _bad_input("no_trust_anchors", "no trust anchor: no active root CA in the "
                       "database and no --trust file", as_json)
        revocation = KysoRevocation(app) if app is not None and not offline else None
        report = verify_pdf_file(file, trust_roots=anchors, revocation=revocation,
                                 max_bytes=max_mb * 2**20)
    except SignerError as exc:
        _bad_input(exc.code, f"{file}: {exc.message}", as_json)
    except ValueError as exc:
        _bad_input("bad_input", str(exc), as_json)
    except OSError as exc:
        _bad_input("unreadable", f"{file}: {exc.strerror or exc}", as_json)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        if os.environ.get("KYSO_DEBUG"):
            traceback.print_exc()
        click.echo(f"error: internal error ({type(exc).__name__}); set KYSO_DEBUG=1 for "
                   "details", err=True)
        sys.exit(EXIT_INTERNAL)

    if as_json:
        click.echo(json.dumps(report_to_json(report), ensure_ascii=False, indent=2))
    else:
        click.echo(render_text(report, lang), nl=False)
    indications = {s.indication for s in report.signatures}
    if FAILED in indications:
        sys.exit(EXIT_FAILED)
    if INDETERMINATE in indications:
        sys.exit(EXIT_INDETERMINATE)
    sys.exit(EXIT_PASSED)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
