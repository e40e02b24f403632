"""Issue COUNT tls-server certificates through the Python API; run as its own process.

    python tests/cli/issue_many.py CONFIG CSR_FILE COUNT TAG [BARRIER_DIR]

Prints one serial per line on stdout. The concurrency test starts two of these at once; with
BARRIER_DIR each one, once loaded and connected, creates BARRIER_DIR/ready-TAG and waits for
BARRIER_DIR/go, so that the issuing itself overlaps rather than just the start-up.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from kyso.app import Kyso
    from kyso.settings import load_settings

    config, csr_file, count, tag = argv[1], Path(argv[2]), int(argv[3]), argv[4]
    barrier = Path(argv[5]) if len(argv) > 5 else None
    app = Kyso(load_settings(config))
    try:
        authority = app.authority
        csr = csr_file.read_bytes()
        authority.issuer("issuing")  # HSM login, key lookup, a database round trip
        if barrier is not None:
            (barrier / f"ready-{tag}").touch()
            deadline = time.monotonic() + 120
            while not (barrier / "go").exists():
                if time.monotonic() > deadline:
                    raise SystemExit("no go signal within 120 s")
                time.sleep(0.01)
        for i in range(count):
            name = f"{tag}-{i}.concurrency.kyso.test"
            request = authority.request_from_csr(
                "tls-server", csr, f"CN={name},O=Kyso Concurrency Test,C=VN", dns_names=(name,)
            )
            issued = authority.issue("issuing", request, actor=f"concurrency-{tag}")
            print(issued.serial, flush=True)
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
