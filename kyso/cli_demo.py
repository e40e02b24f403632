"""`kyso demo accounts`: a demo official and one web account per role, credentials in a file."""

from __future__ import annotations

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from kyso.bootstrap import DEMO_ISSUING
from kyso.cli import Context, demo, handle_errors, pass_ctx

CREDENTIALS_FILE = "demo-accounts.txt"
ACTOR = "cli:demo"
OFFICIAL = {
    "name": "Nguyễn Thị Hồng Nhung",
    "title": "Chuyên viên",
    "organization": "Ủy ban nhân dân phường Bến Thành",
    "locality": "Thành phố Hồ Chí Minh",
    "email": "nhung.demo@benthanh.hochiminhcity.gov.vn",
}
# username, roles, name shown on pages; `nhung` is linked to the demo official.
ACCOUNTS = (
    ("admin", ("admin",), "Quản trị viên (demo)"),
    ("operator", ("operator",), "Cán bộ vận hành (demo)"),
    ("auditor", ("auditor",), "Kiểm toán viên (demo)"),
    ("nhung", ("official",), OFFICIAL["name"]),
)


def _find_official(kyso: Any) -> int | None:
    from ca.models import OfficialRecord

    with kyso.readers() as s:
        return s.scalars(select(OfficialRecord.id).where(
            OfficialRecord.name == OFFICIAL["name"],
            OfficialRecord.organization == OFFICIAL["organization"],
            OfficialRecord.email == OFFICIAL["email"]).order_by(OfficialRecord.id)).first()


def _append(path: Path, text: str) -> None:
    """Append to the credentials file, made owner-only (0600) before anything is written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(text)


def create_demo_accounts(kyso: Any) -> tuple[list[str], Path]:
    """Create what is missing of the demo official and accounts; what was created, and the
    file the new credentials were appended to."""
    from ca import accounts, store
    from ca.errors import InvalidRequest

    with kyso.readers() as s:
        if store.find_ca(s, DEMO_ISSUING[0]) is None:
            raise InvalidRequest(f"no CA {DEMO_ISSUING[0]!r} yet: run `kyso demo setup` first")
    path = Path(kyso.settings.data_dir) / CREDENTIALS_FILE
    lines: list[str] = []
    created: list[str] = []
    official_id = _find_official(kyso)
    if official_id is None:
        pin = "".join(secrets.choice("0123456789") for _ in range(8))
        new = kyso.authority.add_official(pin=pin, ca_name=DEMO_ISSUING[0], actor=ACTOR,
                                          **OFFICIAL)
        official_id = new.official_id
        created.append(f"official #{official_id}")
        lines += [f"official #{official_id}: {OFFICIAL['name']}, {OFFICIAL['title']}, "
                  f"{OFFICIAL['organization']}",
                  f"  certificate serial: {new.certificate.serial}",
                  f"  signing PIN: {pin}", ""]
    from kyso.cli_account import _key  # here: kyso.cli imports this module while loading

    key = _key(kyso.settings)
    for username, roles, display_name in ACCOUNTS:
        with kyso.sessions.begin() as s:
            if accounts.find(s, username) is not None:
                continue
            password = accounts.random_password()
            _, secret = accounts.create_account(
                s, username=username, password=password, roles=roles, key=key,
                display_name=display_name,
                official_id=official_id if "official" in roles else None, actor=ACTOR)
        created.append(username)
        lines += [f"account {username} ({', '.join(roles)})",
                  f"  password: {password}",
                  f"  TOTP secret (base32): {secret}",
                  f"  TOTP URI: {accounts.provisioning_uri(secret, username)}", ""]
    if lines:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        _append(path, f"# kyso demo accounts, created {stamp} -- DEMO ONLY, keep this file "
                      "private\n" + "\n".join(lines))
    return created, path


@demo.command("accounts")
@pass_ctx
@handle_errors
def demo_accounts(ctx: Context) -> None:
    """Create the demo official (Nguyễn Thị Hồng Nhung, with a signing PIN) and the web
    accounts admin, operator, auditor and nhung (official) when missing.

    Their passwords, TOTP secrets and the PIN are written to DATA_DIR/demo-accounts.txt
    (mode 0600; DEMO ONLY). Run `kyso demo setup` first. Running it again changes nothing.
    """
    created, path = create_demo_accounts(ctx.kyso)
    if created:
        click.echo(f"demo accounts created: {', '.join(created)}")
        click.echo(f"credentials (passwords, TOTP secrets, signing PIN) written to {path}")
    else:
        click.echo(f"demo official and accounts present; nothing to do (credentials: {path})")
