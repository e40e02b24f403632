"""Ceremony files: one strict YAML document per ceremony (unknown or duplicate keys refused).

Paths in a ceremony file are relative to the data directory (where kyso.toml lives) unless
absolute. PINs never appear in a ceremony file: the token's user PIN comes from the settings
(online token) or from the custodians' shares (quorum-protected token), the SO PIN from the
settings or `--so-pin-file`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ca.errors import CeremonyRefused

TYPES = ("root", "intermediate", "cross-sign", "key", "crl", "service-certs")
SERVICE_PROFILES = ("ocsp-responder", "timestamping")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise CeremonyRefused(f"line {key_node.start_mark.line + 1}: key {key!r} appears "
                                  "twice")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


class _Fields:
    """Reads a mapping, remembering what was read, so unknown keys can be refused."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise CeremonyRefused(f"{where}: expected a mapping of keys to values")
        self.data = data
        self.where = where
        self.used: set[str] = set()

    def _get(self, key: str, required: bool) -> Any:
        self.used.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise CeremonyRefused(f"{self.where}: missing required key {key!r}")
            return None
        return self.data[key]

    def str(self, key: str, required: bool = True, pattern: re.Pattern[str] | None = None,
            choices: tuple[str, ...] | None = None, default: str | None = None) -> Any:
        value = self._get(key, required and default is None)
        if value is None:
            return default
        if not isinstance(value, str) or not value.strip():
            raise CeremonyRefused(f"{self.where}.{key}: expected a non-empty text")
        if pattern is not None and not pattern.match(value):
            raise CeremonyRefused(f"{self.where}.{key}: {value!r} is not a valid name "
                                  "(letters, digits, '.', '_', '-', at most 64)")
        if choices is not None and value not in choices:
            raise CeremonyRefused(f"{self.where}.{key}: {value!r} is not one of "
                                  + ", ".join(choices))
        return value

    def int(self, key: str, required: bool = True, minimum: int = 0,
            maximum: int = 100_000) -> Any:
        value = self._get(key, required)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not (
                minimum <= value <= maximum):
            raise CeremonyRefused(f"{self.where}.{key}: expected a whole number from {minimum} "
                                  f"to {maximum}")
        return value

    def list(self, key: str, required: bool = True) -> list[Any]:
        value = self._get(key, required)
        if value is None:
            return []
        if not isinstance(value, list) or (required and not value):
            raise CeremonyRefused(f"{self.where}.{key}: expected a non-empty list")
        return value

    def sub(self, key: str, required: bool = True) -> _Fields | None:
        value = self._get(key, required)
        return None if value is None else _Fields(value, f"{self.where}.{key}")

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise CeremonyRefused(f"{self.where}: unknown key(s) {', '.join(unknown)} "
                                  f"(allowed: {', '.join(sorted(self.used))})")


@dataclass(frozen=True)
class TokenRef:
    label: str
    module: str | None = None  # None: the module of the settings


@dataclass(frozen=True)
class CASpec:
    name: str
    subject: str
    key: str
    profile: str
    validity_days: int | None
    path_length: int | None = None


@dataclass(frozen=True)
class ServiceCert:
    profile: str
    subject: str
    key: str
    key_label: str
    validity_days: int | None
    certificate: Path


@dataclass(frozen=True)
class Custodian:
    name: str
    share_file: Path | None  # None: the share is printed once on the terminal


@dataclass(frozen=True)
class Ceremony:
    """A parsed ceremony file. `outputs` maps an output's role to its path."""

    type: str
    name: str
    description: str
    source: Path
    source_sha256: str
    token: TokenRef | None
    operator: str | None
    witnesses: tuple[str, ...]
    outputs: dict[str, Path]
    demo: bool = False
    ca: CASpec | None = None
    parent: str | None = None  # intermediate: the signing CA; cross-sign/crl/service: the CA
    custodians: tuple[Custodian, ...] = ()
    threshold: int | None = None
    input_certificate: Path | None = None
    key_label: str | None = None
    key_spec: str | None = None
    csr_subject: str | None = None
    next_update_days: int | None = None
    services: tuple[ServiceCert, ...] = field(default_factory=tuple)

    @property
    def record_path(self) -> Path:
        return self.outputs["record"]

    def all_outputs(self) -> list[tuple[str, Path]]:
        out = list(self.outputs.items())
        out.append(("record-text", self.record_path.with_suffix(".txt")))
        out += [(f"share:{c.name}", c.share_file) for c in self.custodians if c.share_file]
        out += [(f"certificate:{s.key_label}", s.certificate) for s in self.services]
        return out


def _path(value: Any, where: str, base: Path) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise CeremonyRefused(f"{where}: expected a file path")
    path = Path(value)
    return path if path.is_absolute() else base / path


def load(path: Path, base: Path) -> Ceremony:
    """Parse and validate a ceremony file; `base` resolves its relative paths."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CeremonyRefused(f"cannot read ceremony file {path}: {exc.strerror}") from None
    try:
        data = yaml.load(raw.decode("utf-8"), Loader=_StrictLoader)  # noqa: S506 - strict safe
    except UnicodeDecodeError:
        raise CeremonyRefused(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise CeremonyRefused(f"{path}: not valid YAML ({exc})") from None
    top = _Fields(data, path.name)
    kind = top.str("ceremony", choices=TYPES)
    name = top.str("name", pattern=NAME)
    common: dict[str, Any] = {
        "type": kind,
        "name": name,
        "description": top.str("description", required=False, default=""),
        "source": path.resolve(),
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "operator": top.str("operator", required=False),
        "witnesses": tuple(_names(top.list("witnesses", required=False), "witnesses")),
        "demo": bool(top._get("demo", False) or False),
    }
    token = top.sub("token", required=kind in ("root", "key"))
    if token is not None:
        common["token"] = TokenRef(token.str("label", pattern=LABEL),
                                   token.str("module", required=False))
        token.done()
    else:
        common["token"] = None
    outputs = top.sub("outputs")
    assert outputs is not None
    roles = {"root": ("certificate",), "intermediate": ("certificate", "chain"),
             "cross-sign": ("certificate",), "key": ("public_key", "csr"), "crl": ("crl",),
             "service-certs": ()}[kind]
    out: dict[str, Path] = {"record": _path(outputs.str("record"), "outputs.record", base)}
    for role in roles:
        value = outputs.str(role, required=role in ("certificate", "crl", "public_key"))
        if value is not None:
            out[role] = _path(value, f"outputs.{role}", base)
    outputs.done()
    common["outputs"] = out

    if kind in ("root", "intermediate"):
        common["ca"] = _ca(top.sub("ca"), "root-ca" if kind == "root" else "issuing-ca")
    if kind == "root":
        quorum = top.sub("quorum")
        assert quorum is not None
        custodians = []
        for i, item in enumerate(quorum.list("custodians")):
            f = _Fields(item, f"quorum.custodians[{i}]")
            share = f.str("share_file", required=False)
            custodians.append(Custodian(
                f.str("name"), _path(share, f.where + ".share_file", base) if share else None))
            f.done()
        names = [c.name for c in custodians]
        if len(set(names)) != len(names):
            raise CeremonyRefused("quorum.custodians: every custodian needs a distinct name")
        common["custodians"] = tuple(custodians)
        common["threshold"] = quorum.int("threshold", minimum=2, maximum=255)
        if not 2 <= common["threshold"] <= len(custodians):
            raise CeremonyRefused(f"quorum.threshold {common['threshold']} must be between 2 "
                                  f"and the number of custodians ({len(custodians)})")
        quorum.done()
    if kind == "intermediate":
        common["parent"] = top.str("parent", pattern=NAME)
    if kind == "cross-sign":
        common["parent"] = top.str("signer", pattern=NAME)
        common["input_certificate"] = _path(top.str("certificate"), "certificate", base)
        common["ca"] = _ca(top.sub("ca"), "issuing-ca", with_subject=False, with_key=False,
                           with_name=False)
    if kind == "key":
        key = top.sub("key")
        assert key is not None
        common["key_label"] = key.str("label", pattern=LABEL)
        common["key_spec"] = key.str("spec")
        key.done()
        csr = top.sub("csr", required=False)
        if csr is not None:
            common["csr_subject"] = csr.str("subject")
            csr.done()
        if (csr is None) != ("csr" not in out):
            raise CeremonyRefused("a CSR needs both csr.subject and outputs.csr")
    if kind == "crl":
        common["parent"] = top.str("ca", pattern=NAME)
        common["next_update_days"] = top.int("next_update_days", minimum=1, maximum=400)
    if kind == "service-certs":
        common["parent"] = top.str("ca", pattern=NAME)
        services = []
        for i, item in enumerate(top.list("certificates")):
            f = _Fields(item, f"certificates[{i}]")
            services.append(ServiceCert(
                profile=f.str("profile", choices=SERVICE_PROFILES),
                subject=f.str("subject"),
                key=f.str("key"),
                key_label=f.str("key_label", pattern=LABEL),
                validity_days=f.int("validity_days", required=False, minimum=1, maximum=3650),
                certificate=_path(f.str("certificate"), f.where + ".certificate", base),
            ))
            f.done()
        labels = [s.key_label for s in services]
        if len(set(labels)) != len(labels):
            raise CeremonyRefused("certificates: every key_label must be distinct")
        common["services"] = tuple(services)
    top.done()
    ceremony = Ceremony(**common)
    paths = [p for _, p in ceremony.all_outputs()]
    if len({p.resolve() for p in paths}) != len(paths):
        raise CeremonyRefused("two outputs of this ceremony name the same file")
    return ceremony


def _names(values: list[Any], where: str) -> list[str]:
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise CeremonyRefused(f"{where}: expected a list of names")
    return values


def _ca(f: _Fields | None, default_profile: str, *, with_subject: bool = True,
        with_key: bool = True, with_name: bool = True) -> CASpec:
    assert f is not None
    spec = CASpec(
        name=f.str("name", pattern=NAME) if with_name else "",
        subject=f.str("subject") if with_subject else "",
        key=f.str("key") if with_key else "",
        profile=f.str("profile", required=False, default=default_profile),
        validity_days=f.int("validity_days", required=False, minimum=1, maximum=7305),
        path_length=f.int("path_length", required=False, minimum=0, maximum=5),
    )
    f.done()
    return spec
