"""SoftHSM2 token provisioning for development and tests: config file and token init."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hsm._storelock import store_lock
from hsm.errors import HsmError

DEFAULT_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@dataclass(frozen=True)
class SoftHsmToken:
    """Where a SoftHSM2 token lives: pass ``conf_path`` as SOFTHSM2_CONF, ``module`` to Token."""

    conf_path: Path
    label: str
    module: str = DEFAULT_MODULE

    def env(self) -> dict[str, str]:
        """A copy of os.environ with SOFTHSM2_CONF set, for subprocesses (pkcs11-tool, etc.)."""
        return {**os.environ, "SOFTHSM2_CONF": str(self.conf_path)}


def _token_labels(env: dict[str, str]) -> set[str]:
    out = subprocess.run(
        ["softhsm2-util", "--show-slots"], env=env, capture_output=True, text=True, check=False
    ).stdout
    labels = set()
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "Label" and value.strip():
            labels.add(value.strip())
    return labels


def create_softhsm_token(
    directory: Path, label: str, so_pin: str, user_pin: str, *, module: str = DEFAULT_MODULE
) -> SoftHsmToken:
    """Create (once) a SoftHSM2 config under ``directory`` and a token labelled ``label``.

    Idempotent: an existing token with that label is left as it is. SOFTHSM2_CONF must be
    in os.environ before the module is first loaded in a process (see ``Token``).
    """
    directory = Path(directory).resolve()
    tokens = directory / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
    result = SoftHsmToken(conf_path=conf, label=label, module=module)
    env = result.env()
    if label in _token_labels(env):
        return result
    with store_lock(module, str(conf)):  # other processes may be reading the token directory
        proc = subprocess.run(
            [
                "softhsm2-util", "--init-token", "--free", "--label", label,
                "--so-pin", so_pin, "--pin", user_pin,
            ],
            env=env, capture_output=True, text=True, check=False,
        )
    if proc.returncode != 0:
        # softhsm2-util does not echo PINs, but scrub anyway before surfacing its output.
        detail = (proc.stderr or proc.stdout).strip()
        for secret in (so_pin, user_pin):
            if secret:
                detail = detail.replace(secret, "***")
        raise HsmError(f"softhsm2-util could not initialise token {label!r}: {detail}")
    return result
