"""`kyso demo accounts` after `kyso demo setup`: the demo official and one account per role,
credentials in DATA_DIR/demo-accounts.txt (0600); a second run changes nothing."""

from __future__ import annotations

import re
import stat

import pyotp
import pytest
from argon2 import PasswordHasher
from cli_support import KysoData, new_data_dir, query

SCHEMA = "kyso_cli_demo_accounts"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> KysoData:
    return new_data_dir(tmp_path_factory.mktemp("kyso-cli-demo-accounts"), SCHEMA)


def _sql(data: KysoData, sql: str) -> list[tuple]:
    return query(data.database_url, data.data_dir / "kyso.db", sql)


def test_demo_accounts_created_once_with_credentials_file(data: KysoData) -> None:
    first = data.run("demo", "accounts")
    path = data.data_dir / "demo-accounts.txt"
    assert str(path) in first.stdout
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")

    officials = _sql(data, "SELECT id, name, title, organization, locality FROM officials")
    assert [o[1:] for o in officials] == [("Nguyễn Thị Hồng Nhung", "Chuyên viên",
                                           "Ủy ban nhân dân phường Bến Thành",
                                           "Thành phố Hồ Chí Minh")]
    official_id = officials[0][0]
    rows = {r[0]: r[1:] for r in _sql(
        data, "SELECT username, roles, official_id, password_hash FROM accounts")}
    assert {u: r[:2] for u, r in rows.items()} == {
        "admin": ("admin", None), "operator": ("operator", None),
        "auditor": ("auditor", None), "nhung": ("official", official_id)}

    assert re.search(r"signing PIN: \d{8}", text)
    hasher = PasswordHasher()
    for username, (_, _, password_hash) in rows.items():
        block = text.split(f"account {username} (")[1].split("\n\n")[0]
        password = re.search(r"password: (\S+)", block)
        secret = re.search(r"TOTP secret \(base32\): ([A-Z2-7]+)", block)
        uri = re.search(r"TOTP URI: (otpauth://totp/\S+)", block)
        assert password and secret and uri, block
        assert hasher.verify(password_hash, password.group(1))
        assert pyotp.parse_uri(uri.group(1)).secret == secret.group(1)

    again = data.run("demo", "accounts")
    assert "nothing to do" in again.stdout
    assert path.read_text(encoding="utf-8") == text
    assert len(_sql(data, "SELECT id FROM accounts")) == 4
    assert len(_sql(data, "SELECT id FROM officials")) == 1
    actions = [r[0] for r in _sql(data, "SELECT actor FROM audit_events "
                                        "WHERE action = 'account.create'")]
    assert actions == ["cli:demo"] * 4
