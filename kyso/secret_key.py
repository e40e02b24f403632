"""The web secret key (session cookies, CSRF tokens, sealing TOTP secrets): one file of random
bytes, made on first use, shared by every worker and by `kyso account`."""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from kyso.settings import SettingsError

log = logging.getLogger(__name__)

SECRET_KEY_BYTES = 32


def load_secret_key(path: Path) -> bytes:
    """The secret key in `path`; made (32 random bytes, mode 0600) when the file is missing.

    Several workers may start at once: the key is written to a private temporary file and
    linked into place, so a reader never sees a half-written key and only one key wins."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(SECRET_KEY_BYTES))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
            log.info("created the web secret key %s", path)
        except FileExistsError:  # another worker was first: use its key
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key(path)


def _read_key(path: Path) -> bytes:
    try:
        key = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise  # the caller makes one
    except OSError as exc:
        raise SettingsError(f"cannot read the web secret key {path}: "
                            f"{exc.strerror or exc}") from None
    if len(key) < SECRET_KEY_BYTES:
        raise SettingsError(f"the web secret key {path} is shorter than {SECRET_KEY_BYTES} "
                            "bytes; delete it to have a new one made")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("the web secret key %s is readable by others: chmod 600 it", path)
    return key
