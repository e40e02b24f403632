"""OpenSC's pkcs11-tool as the tests' independent view of a token's objects."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping


def list_objects(module: str, label: str, pin: str, env: Mapping[str, str]) -> str:
    """pkcs11-tool's listing of every object on the token, logged in as the user."""
    proc = subprocess.run(
        ["pkcs11-tool", "--module", module, "--token-label", label, "--login", "--pin", pin,
         "--list-objects"],
        env=dict(env), capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def parse_objects(listing: str) -> list[dict[str, str]]:
    """One dict per object: "kind" (its heading line) and its "Key: value" lines."""
    objects: list[dict[str, str]] = []
    for line in listing.splitlines():
        if line and not line.startswith(" ") and "Object;" in line:
            objects.append({"kind": line.strip()})
        elif objects and ":" in line:
            key, _, value = line.strip().partition(":")
            objects[-1][key.strip()] = value.strip()
    return objects
