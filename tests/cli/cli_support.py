"""Support for the command-line acceptance tests: run the real `kyso` executable as a user would
and look at what it leaves behind (database, token) with independent means.

On PostgreSQL (KYSO_TEST_DATABASE_URL set) the CLI tests use schemas of their own (`kyso_cli`,
...), reset here: dropping `public` would pull the tables from under the session-wide fixtures
of tests/conftest.py that the other test directories share in the same pytest run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from pkcs11_tool import list_objects

BIN = Path(sys.executable).parent
KYSO = BIN / "kyso"
LINT_PKIX_CERT = BIN / "lint_pkix_cert"
SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so"
PG_SCHEMA = "kyso_cli"
TABLES = ("cas", "cert_requests", "certificates", "officials", "official_keys")


def pg_url_with_schema(url: str, schema: str = PG_SCHEMA) -> str:
    """The same database with `schema` first on the search path (psycopg's `options`)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options=-csearch_path%3D{schema}"


def reset_pg_schema(url: str, schema: str = PG_SCHEMA) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    finally:
        engine.dispose()


def query(database_url: str | None, sqlite_file: Path, sql: str) -> list[tuple]:
    """Rows straight from the database (not through kyso): PostgreSQL when a URL is given,
    else the SQLite file."""
    if database_url is None:
        with closing(sqlite3.connect(sqlite_file, timeout=30)) as conn:
            return list(conn.execute(sql).fetchall())
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            return [tuple(r) for r in conn.execute(text(sql))]
    finally:
        engine.dispose()


@dataclass
class Result:
    args: Sequence[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> object:
        return json.loads(self.stdout)


@dataclass
class KysoData:
    """A data directory made by `kyso init`, and how to run commands against it."""

    data_dir: Path
    config: Path
    database_url: str | None  # None: the SQLite file in data_dir
    env: dict[str, str]
    init_output: str
    demo_output: str

    @property
    def user_pin(self) -> str:
        return (self.data_dir / "secrets" / "hsm-user.pin").read_text().strip()

    @property
    def softhsm_conf(self) -> Path:
        return self.data_dir / "softhsm" / "softhsm2.conf"

    def run(self, *args: str | Path, expect: int | None = 0, input: str | None = None,
            env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        """Run `kyso ARGS`; assert the exit code (unless expect is None) and no traceback."""
        argv = [str(KYSO), *map(str, args)]
        proc = subprocess.run(argv, capture_output=True, encoding="utf-8", input=input,
                              env=env or self.env, timeout=timeout, cwd=self.data_dir.parent)
        result = Result(argv, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in result.output, result.output
        if expect is not None:
            assert result.returncode == expect, (
                f"kyso {' '.join(map(str, args))} exited {result.returncode}, "
                f"expected {expect}\n{result.output}"
            )
        return result

    def fail(self, *args: str | Path, **kw: object) -> Result:
        """Run a command that must be refused: exit 1, an `error:` line, no traceback."""
        result = self.run(*args, expect=1, **kw)  # type: ignore[arg-type]
        assert "error:" in result.stderr, result.output
        assert "internal error" not in result.stderr, result.output
        return result

    def certs(self, *filters: str) -> list[dict]:
        return self.run("cert", "list", "--json", *filters).json()  # type: ignore[return-value]

    def cert(self, serial: str) -> dict:
        return self.run("cert", "show", serial, "--json").json()  # type: ignore[return-value]

    def table_counts(self) -> dict[str, int]:
        """Rows per CA table, read straight from the database (not through kyso)."""
        if self.database_url is None:
            with closing(sqlite3.connect(self.data_dir / "kyso.db", timeout=30)) as conn:
                return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                        for t in TABLES}
        from sqlalchemy import create_engine, text

        engine = create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                        for t in TABLES}
        finally:
            engine.dispose()

    def database_dump(self) -> bytes:
        """Every byte the database holds that a PIN could hide in."""
        if self.database_url is None:
            return b"".join(p.read_bytes() for p in sorted(self.data_dir.glob("kyso.db*")))
        from sqlalchemy import create_engine, inspect, text

        engine = create_engine(self.database_url)
        chunks: list[bytes] = []
        try:
            with engine.connect() as conn:
                for table in inspect(conn).get_table_names():
                    for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                        for value in row:
                            if isinstance(value, (bytes, memoryview)):
                                chunks.append(bytes(value))
                            elif value is not None:
                                chunks.append(str(value).encode())
        finally:
            engine.dispose()
        return b"\n".join(chunks)

    def token_objects(self) -> str:
        """pkcs11-tool's (OpenSC) listing of every object on the token, logged in as user."""
        env = dict(self.env, SOFTHSM2_CONF=str(self.softhsm_conf))
        return list_objects(SOFTHSM_MODULE, "kyso", self.user_pin, env)


def base_env() -> dict[str, str]:
    """The caller's environment without anything that could steer kyso or SoftHSM2 elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def new_data_dir(root: Path, schema: str = PG_SCHEMA, *, demo: bool = True) -> KysoData:
    """`kyso init --data-dir ROOT/data` (and `kyso demo setup`) on a fresh database.

    On PostgreSQL the database is KYSO_TEST_DATABASE_URL with `schema` on the search path,
    emptied first.
    """
    data_dir = root / "data"
    config = data_dir / "kyso.toml"
    env = base_env()
    env["KYSO_CONFIG"] = str(config)
    database_url = None
    if os.environ.get("KYSO_TEST_DATABASE_URL"):
        reset_pg_schema(os.environ["KYSO_TEST_DATABASE_URL"], schema)
        database_url = pg_url_with_schema(os.environ["KYSO_TEST_DATABASE_URL"], schema)
        env["KYSO_DATABASE_URL"] = database_url
    data = KysoData(data_dir, config, database_url, env, "", "")
    data.init_output = data.run("init", "--data-dir", data_dir).output
    if demo:
        data.demo_output = data.run("--config", config, "demo", "setup").output
    return data
