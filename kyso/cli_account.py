"""`kyso account add|unlock`: web accounts (password + TOTP, roles) from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from kyso.cli import Context, cli_actor, handle_errors, main, pass_ctx
from kyso.settings import Settings

ROLE_CHOICES = ("official", "operator", "auditor", "admin")


def _key(settings: Settings) -> bytes:
    # The web app's secret key (made if missing): the web app must open the same TOTP secrets.
    from ca.accounts import totp_key
    from kyso.secret_key import load_secret_key

    return totp_key(load_secret_key(settings.web.secret_key_path(settings.data_dir)))


def add_account(kyso: Any, username: str, password: str, roles: tuple[str, ...], *,
                official_id: int | None = None, display_name: str | None = None,
                actor: str = "cli") -> str:
    """Create the account (audited); the TOTP provisioning URI, to show once."""
    from ca import accounts

    with kyso.sessions.begin() as s:
        _, secret = accounts.create_account(
            s, username=username, password=password, roles=roles, key=_key(kyso.settings),
            display_name=display_name, official_id=official_id, actor=actor)
    return accounts.provisioning_uri(secret, username.strip())


def unlock_account(kyso: Any, username: str, *, actor: str = "cli") -> None:
    """Unlock the account and clear its failure count (audited as `account.unlock`)."""
    from ca import accounts

    with kyso.sessions.begin() as s:
        accounts.unlock(s, username, actor=actor)


@main.group("account")
def account_group() -> None:
    """Web accounts: officials, operators, auditors, administrators."""


def _read_password(password_file: Path | None) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@account_group.command("add")
@click.argument("username")
@click.option("--role", "roles", multiple=True, required=True, type=click.Choice(ROLE_CHOICES),
              help="A role of the account; repeat for several.")
@click.option("--official", "official_id", type=int, default=None,
              help="The official (officials.id) this account signs as; needed for --role "
                   "official.")
@click.option("--display-name", default=None, help="The name shown on pages.")
@click.option("--password-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Read the password from the first line of this file "
                                 "(otherwise it is asked for).")
@pass_ctx
@handle_errors
def account_add(ctx: Context, username: str, roles: tuple[str, ...], official_id: int | None,
                display_name: str | None, password_file: Path | None) -> None:
    """Create an account; prints the TOTP enrolment URI once (otpauth://)."""
    password = _read_password(password_file)
    uri = add_account(ctx.kyso, username, password, roles, official_id=official_id,
                      display_name=display_name, actor=cli_actor())
    click.echo(f"created account {username} ({', '.join(roles)})")
    click.echo("Add this to the person's authenticator app now; it is not shown again:")
    click.echo(uri)


@account_group.command("unlock")
@click.argument("username")
@pass_ctx
@handle_errors
def account_unlock(ctx: Context, username: str) -> None:
    """Unlock an account locked after failed logins."""
    unlock_account(ctx.kyso, username, actor=cli_actor())
    click.echo(f"unlocked account {username}")
