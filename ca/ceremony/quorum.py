"""k-of-n custody of a token's activation secret (Shamir, pycryptodome's implementation).

At the root ceremony a random 128-bit activation secret is split among the custodians. The
token's user PIN is derived from it, so the token cannot be logged into without k shares.
The database keeps only public checks: a salted commitment per share (so a wrong share is
named before anything is combined) and a salted hash of the secret. A share's text carries a
checksum of its own, which catches a mistyped or damaged share even without the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from Crypto.Protocol.SecretSharing import Shamir
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ca.errors import CeremonyRefused

SHARE_LINE = re.compile(r"^share-secret:\s*(\d+)-([0-9a-f]{32})-([0-9a-f]{8})\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Share:
    index: int
    value: bytes  # 16 bytes
    source: str  # where it came from (file name or "prompt 2"), for messages


@dataclass(frozen=True)
class IssuedShare:
    index: int
    custodian: str
    text: str  # the whole share document handed to the custodian


@dataclass(frozen=True)
class QuorumPlan:
    """Everything the database keeps about a split, and the shares to hand out."""

    token_label: str
    threshold: int
    salt: str
    secret_check: str
    commitments: list[dict[str, object]]
    shares: list[IssuedShare]
    activation_pin: str

    def shares_json(self) -> str:
        return json.dumps(self.commitments, ensure_ascii=False, sort_keys=True)


def _checksum(token_label: str, index: int, value: bytes) -> str:
    return hashlib.sha256(b"kyso-share|" + token_label.encode() + b"|"
                          + bytes([index]) + value).hexdigest()[:8]


def _commitment(salt: str, index: int, value: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + bytes([index]) + value).hexdigest()


def _secret_check(salt: str, secret: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + b"secret" + secret).hexdigest()


def activation_pin(secret: bytes, token_label: str) -> str:
    """The token user PIN derived from the activation secret (HKDF-SHA256, 160 bits, hex)."""
    return HKDF(algorithm=hashes.SHA256(), length=20, salt=None,
                info=b"kyso token activation pin|" + token_label.encode()).derive(secret).hex()


def split(token_label: str, ceremony: str, custodians: Sequence[str], threshold: int,
          *, demo: bool = False) -> QuorumPlan:
    n = len(custodians)
    if not 2 <= threshold <= n:
        raise CeremonyRefused(f"quorum threshold {threshold} must be between 2 and the number "
                              f"of custodians ({n})")
    if n > 255:
        raise CeremonyRefused("at most 255 custodians")
    secret = secrets.token_bytes(16)
    salt = secrets.token_hex(16)
    commitments: list[dict[str, object]] = []
    issued: list[IssuedShare] = []
    for (index, value), custodian in zip(Shamir.split(threshold, n, secret), custodians,
                                         strict=True):
        commitments.append({"index": index, "custodian": custodian,
                            "commitment": _commitment(salt, index, value)})
        issued.append(IssuedShare(index, custodian, _share_text(
            token_label, ceremony, custodian, index, n, threshold, value, demo)))
    return QuorumPlan(token_label, threshold, salt, _secret_check(salt, secret), commitments,
                      issued, activation_pin(secret, token_label))


def _share_text(token_label: str, ceremony: str, custodian: str, index: int, total: int,
                threshold: int, value: bytes, demo: bool) -> str:
    banner = ("DEMO ONLY -- a test share for the local demo; never use it for a real CA.\n"
              if demo else "")
    return (
        f"{banner}KYSO QUORUM SHARE -- secret. Keep it offline; bring it to every ceremony\n"
        f"that uses a key on token {token_label!r}.\n"
        f"token: {token_label}\n"
        f"ceremony: {ceremony}\n"
        f"custodian: {custodian}\n"
        f"share: {index} of {total} ({threshold} needed)\n"
        f"share-secret: {index}-{value.hex()}-{_checksum(token_label, index, value)}\n"
    )


def parse_share(text: str, token_label: str, source: str) -> Share:
    """A share from its document (or just its `share-secret:` line); checks its checksum."""
    if "share-secret:" not in text:
        text = "share-secret: " + text.strip()
    match = SHARE_LINE.search(text)
    if match is None:
        raise CeremonyRefused(f"share from {source} is not a kyso share "
                              "(no valid 'share-secret: N-<32 hex>-<8 hex>' line)")
    index, value_hex, check = int(match.group(1)), match.group(2), match.group(3)
    value = bytes.fromhex(value_hex)
    if not 1 <= index <= 255 or not hmac.compare_digest(
            check, _checksum(token_label, index, value)):
        raise CeremonyRefused(f"share from {source} failed its checksum: it is damaged, "
                              f"mistyped or belongs to another token than {token_label!r}")
    return Share(index, value, source)


def read_share_file(path: Path, token_label: str) -> Share:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CeremonyRefused(f"cannot read share file {path}: {exc}") from None
    return parse_share(text, token_label, str(path))


@dataclass(frozen=True)
class QuorumCheck:
    """A stored quorum, as the database holds it."""

    token_label: str
    threshold: int
    total: int
    salt: str
    secret_check: str
    commitments: list[dict[str, object]]


def combine(quorum: QuorumCheck, shares: Sequence[Share]) -> tuple[str, list[dict[str, object]]]:
    """Check every share against its commitment, then combine; returns the activation PIN and
    who contributed. Refuses -- naming the share -- before any key is touched."""
    by_index = {int(c["index"]): c for c in quorum.commitments}  # type: ignore[call-overload]
    seen: dict[int, Share] = {}
    for share in shares:
        expected = by_index.get(share.index)
        if expected is None or not hmac.compare_digest(
                str(expected["commitment"]), _commitment(quorum.salt, share.index, share.value)):
            raise CeremonyRefused(
                f"share {share.index} from {share.source} failed its check: it is not the "
                f"share issued for token {quorum.token_label!r}"
                + (f" to {expected['custodian']}" if expected else "")
            )
        if share.index in seen:
            first = seen[share.index].source
            raise CeremonyRefused(f"share {share.index} was entered twice ({first} and "
                                  f"{share.source})")
        seen[share.index] = share
    if len(seen) < quorum.threshold:
        raise CeremonyRefused(
            f"token {quorum.token_label!r} needs {quorum.threshold} of {quorum.total} custodian "
            f"shares; {len(seen)} valid share(s) given"
        )
    chosen = sorted(seen.values(), key=lambda s: s.index)[: quorum.threshold]
    secret = Shamir.combine([(s.index, s.value) for s in chosen])
    if not hmac.compare_digest(_secret_check(quorum.salt, secret), quorum.secret_check):
        raise CeremonyRefused("the shares do not combine to the activation secret")
    return activation_pin(secret, quorum.token_label), [
        {"index": s.index, "custodian": by_index[s.index]["custodian"]} for s in chosen]
