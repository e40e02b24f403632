"""The ceremony transcript: who was there, each step with its time, every output's SHA-256,
certificate fingerprints and the outcome -- as signed JSON (the HSM's audit key) and as text."""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ca.errors import CeremonyRefused

FORMAT = "kyso-ceremony-record/1"


class RecordSigner(Protocol):
    label: str

    def sign(self, data: bytes) -> bytes: ...

    @property
    def public_key(self) -> Any: ...


def canonical(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Transcript:
    ceremony_type: str
    ceremony_name: str
    source: str
    source_sha256: str
    operator: str
    witnesses: list[str]
    custodians: list[dict[str, Any]] = field(default_factory=list)
    started_at: str = field(default_factory=_now)
    finished_at: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    outcome: str = "incomplete"
    error: str | None = None

    def step(self, title: str, **details: Any) -> dict[str, Any]:
        entry = {"n": len(self.steps) + 1, "at": _now(), "title": title, **details}
        self.steps.append(entry)
        return entry

    def output(self, role: str, path: Path) -> None:
        self.outputs.append({"role": role, "path": str(path), "sha256": sha256_file(path),
                             "bytes": path.stat().st_size})

    def certificate(self, role: str, cert: x509.Certificate) -> None:
        self.certificates.append({
            "role": role,
            "subject": cert.subject.rfc4514_string(),
            "issuer": cert.issuer.rfc4514_string(),
            "serial": format(cert.serial_number, "x"),
            "not_before": cert.not_valid_before_utc.isoformat(),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256_fingerprint": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
        })

    def as_dict(self) -> dict[str, Any]:
        return {
            "ceremony": {"type": self.ceremony_type, "name": self.ceremony_name,
                         "file": self.source, "file_sha256": self.source_sha256},
            "operator": self.operator,
            "witnesses": self.witnesses,
            "custodians": self.custodians,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "steps": self.steps,
            "outputs": self.outputs,
            "certificates": self.certificates,
            "outcome": self.outcome,
            "error": self.error,
        }


def signed_document(record: dict[str, Any], signer: RecordSigner) -> dict[str, Any]:
    data = canonical(record)
    public = signer.public_key.public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    is_ec = isinstance(signer.public_key, ec.EllipticCurvePublicKey)
    return {
        "format": FORMAT,
        "record": record,
        "signature": {
            "key_label": signer.label,
            "algorithm": "ecdsa-with-SHA256" if is_ec else "sha256WithRSAEncryption",
            "public_key": public.decode(),
            "record_sha256": hashlib.sha256(data).hexdigest(),
            "value": base64.b64encode(signer.sign(data)).decode(),
        },
    }


def record_sha256(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(record)).hexdigest()


def render_text(document: dict[str, Any]) -> str:
    r = document["record"]
    c = r["ceremony"]
    lines = [
        f"KYSO KEY CEREMONY RECORD -- {c['type']} ceremony {c['name']!r}",
        f"ceremony file: {c['file']} (SHA-256 {c['file_sha256']})",
        f"operator: {r['operator']}",
        f"witnesses: {', '.join(r['witnesses']) or '(none)'}",
        "custodians: " + (", ".join(
            f"{x['custodian']} (share {x['index']}, {x['role']})" for x in r["custodians"])
            or "(none)"),
        f"started: {r['started_at']}   finished: {r['finished_at']}",
        f"OUTCOME: {r['outcome'].upper()}" + (f" -- {r['error']}" if r["error"] else ""),
        "",
        "steps:",
    ]
    for s in r["steps"]:
        extra = {k: v for k, v in s.items() if k not in ("n", "at", "title")}
        lines.append(f"  {s['n']:>2}. {s['at']}  {s['title']}")
        for k, v in extra.items():
            if isinstance(v, list):
                lines.append(f"        {k}:")
                lines += [f"          - {item}" for item in v]
            else:
                lines.append(f"        {k}: {v}")
    lines += ["", "outputs (SHA-256):"]
    lines += [f"  {o['sha256']}  {o['path']}  ({o['role']})" for o in r["outputs"]]
    lines += ["", "certificates (SHA-256 fingerprint):"]
    for cert in r["certificates"]:
        lines.append(f"  {cert['role']}: {cert['subject']}")
        lines.append(f"    serial {cert['serial']}, {cert['not_before']} .. {cert['not_after']}")
        lines.append(f"    {cert['sha256_fingerprint']}")
    sig = document["signature"]
    lines += ["", f"signed by HSM key {sig['key_label']!r} ({sig['algorithm']}); record "
              f"SHA-256 {sig['record_sha256']}", "verify with: kyso ceremony verify "
              "<the .json record>", ""]
    return "\n".join(lines)


def load_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CeremonyRefused(f"cannot read record {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CeremonyRefused(f"{path} is not a ceremony record (not JSON: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or not isinstance(
            document.get("record"), dict) or not isinstance(document.get("signature"), dict):
        raise CeremonyRefused(f"{path} is not a kyso ceremony record ({FORMAT})")
    return document


def check_signature(document: dict[str, Any], trusted_key: Any | None) -> list[str]:
    """Problems with the record's signature; `trusted_key` is the audit key from the HSM."""
    problems: list[str] = []
    sig = document["signature"]
    try:
        embedded = serialization.load_pem_public_key(str(sig["public_key"]).encode())
        value = base64.b64decode(str(sig["value"]), validate=True)
    except (KeyError, ValueError, TypeError):
        return ["the signature block is malformed"]
    key = trusted_key or embedded
    if trusted_key is not None and _spki(trusted_key) != _spki(embedded):
        problems.append(f"the record names a public key that is not the HSM's audit key "
                        f"{sig.get('key_label')!r}")
    data = canonical(document["record"])
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(value, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            from cryptography.hazmat.primitives.asymmetric import padding

            key.verify(value, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return problems + ["unsupported signature key type"]
    except InvalidSignature:
        problems.append("the signature does not match the record: the record was changed "
                        "after the ceremony signed it")
    if hashlib.sha256(data).hexdigest() != sig.get("record_sha256"):
        problems.append("the record's SHA-256 differs from the one it was signed with")
    return problems


def check_outputs(document: dict[str, Any]) -> list[str]:
    """Outputs that are missing or no longer match their recorded SHA-256."""
    problems = []
    for out in document["record"].get("outputs", []):
        path = Path(out["path"])
        if not path.exists():
            if str(out["role"]).startswith("share:"):
                continue  # custodians take their shares away
            problems.append(f"output {out['role']} {path} is missing")
        elif sha256_file(path) != out["sha256"]:
            problems.append(f"output {out['role']} {path} was changed after the ceremony "
                            "(SHA-256 differs)")
    return problems


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo))
