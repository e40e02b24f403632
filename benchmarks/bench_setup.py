"""A throwaway kyso for the issuance benchmarks: a fresh SoftHSM2 token, a database (SQLite in
the temporary directory, or KYSO_BENCH_DATABASE_URL), pkilint's worker processes and a root CA."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

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
