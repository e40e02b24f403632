"""What the benchmarks share: installing the peers they compare with when missing, and a
throwaway kyso for the issuance benchmarks (a fresh SoftHSM2 token, a database -- SQLite in the
temporary directory, or KYSO_BENCH_DATABASE_URL --, pkilint's worker processes and a root CA)."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

SO_PIN, USER_PIN = "bench-so-1234", "bench-user-1234"


def throwaway_kyso(lint_workers: int) -> tuple[Any, Path]:
    """(the Kyso, its temporary directory) with the root CA `root` (ECDSA P-384) made."""
    tmp = Path(tempfile.mkdtemp(prefix="kyso-bench-"))
    from hsm import create_softhsm_token

    softhsm = create_softhsm_token(tmp / "softhsm", "bench", SO_PIN, USER_PIN)
    os.environ["SOFTHSM2_CONF"] = str(softhsm.conf_path)
    os.environ["KYSO_BENCH_HSM_PIN"] = USER_PIN

    from ca.lintpool import LintPool
    from kyso.app import Kyso
    from kyso.settings import HsmSettings, Settings

    settings = Settings(
        data_dir=tmp,
        database_url=os.environ.get("KYSO_BENCH_DATABASE_URL", ""),
        hsm=HsmSettings(token_label="bench", pin_env="KYSO_BENCH_HSM_PIN",
                        softhsm2_conf=str(softhsm.conf_path)),
    )
    app = Kyso(settings)
    app.migrate()
    app.authority.lint_pool = LintPool(lint_workers)
    app.authority.create_root("root", "CN=Bench Root,O=Kyso,C=VN", key_spec="ec-p384")
    return app, tmp


def need_bench_extra(command: str) -> None:
    """Install the project's `bench` extra (pyhanko-cli, ...) into this venv when ``command``
    is not there yet, as scripts/run and scripts/test install what they miss."""
    bin_dir = Path(sys.executable).parent
    if shutil.which(command, path=str(bin_dir)) is not None:
        return
    print(f"{command} missing: installing the bench extra into {bin_dir.parent} ...",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "--disable-pip-version-check",
                    "-q", "-e", f"{ROOT}[bench]"], check=True)
    if shutil.which(command, path=str(bin_dir)) is None:
        raise SystemExit(f"{command} is still missing after installing the bench extra")


def need_commands(*pairs: str) -> None:
    """``COMMAND:DEBIAN_PACKAGE`` pairs: apt-get install the packages whose command is missing
    (through scripts/_bootstrap.sh, like the two scripts)."""
    def present(command: str) -> bool:
        return shutil.which(command) is not None or Path("/usr/sbin", command).exists()

    if all(present(pair.partition(":")[0]) for pair in pairs):
        return
    script = f"source scripts/_bootstrap.sh && kyso_need_commands {shlex.join(pairs)}"
    subprocess.run(["bash", "-c", script], cwd=ROOT, check=True)
