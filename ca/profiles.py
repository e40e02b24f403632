"""Certificate profiles as data: loaded from TOML, validated at load, unknown keys rejected."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from ca.errors import ProfileError, SubjectRejected, UnknownProfile, WeakKey

PROFILES_DIR = Path(__file__).parent / "profiles"

ID_KP_DOCUMENT_SIGNING = ObjectIdentifier("1.3.6.1.5.5.7.3.36")

KEY_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)

EKUS: dict[str, ObjectIdentifier] = {
    "server_auth": ExtendedKeyUsageOID.SERVER_AUTH,
    "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH,
    "email_protection": ExtendedKeyUsageOID.EMAIL_PROTECTION,
    "document_signing": ID_KP_DOCUMENT_SIGNING,
    "ocsp_signing": ExtendedKeyUsageOID.OCSP_SIGNING,
    "time_stamping": ExtendedKeyUsageOID.TIME_STAMPING,
    "code_signing": ExtendedKeyUsageOID.CODE_SIGNING,
}

# Subject attributes we accept, by their short name, in X.500 order (most general first),
# with RFC 5280 Appendix A upper bounds.
SUBJECT_ATTRIBUTES: dict[str, tuple[ObjectIdentifier, int]] = {
    "C": (NameOID.COUNTRY_NAME, 2),
    "ST": (NameOID.STATE_OR_PROVINCE_NAME, 128),
    "L": (NameOID.LOCALITY_NAME, 128),
    "O": (NameOID.ORGANIZATION_NAME, 64),
    "OU": (NameOID.ORGANIZATIONAL_UNIT_NAME, 64),
    "T": (NameOID.TITLE, 64),
    "CN": (NameOID.COMMON_NAME, 64),
}
_SHORT_BY_OID = {oid: short for short, (oid, _) in SUBJECT_ATTRIBUTES.items()}
# Names people type beyond RFC 4514's short list, so a refusal can say "not allowed" by name.
_NAME_OVERRIDES = {
    "T": NameOID.TITLE,
    "TITLE": NameOID.TITLE,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER,
    "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
    "E": NameOID.EMAIL_ADDRESS,
    "GN": NameOID.GIVEN_NAME,
    "GIVENNAME": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME,
    "SURNAME": NameOID.SURNAME,
    "UID": NameOID.USER_ID,
    "CN": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "L": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME,
}
# cryptography matches attribute names case-sensitively; people do not type them that way.
_NAME_OVERRIDES |= {k.lower(): v for k, v in _NAME_OVERRIDES.items()}
_NAME_OVERRIDES |= {"serialNumber": NameOID.SERIAL_NUMBER, "emailAddress": NameOID.EMAIL_ADDRESS,
                    "givenName": NameOID.GIVEN_NAME, "Title": NameOID.TITLE}

KEY_SPECS = ("rsa-2048", "rsa-3072", "rsa-4096", "ec-p256", "ec-p384")
SAN_RULES = ("required", "optional", "forbidden")
KINDS = ("end-entity", "ca", "root")


@dataclass(frozen=True)
class SubjectRules:
    required: tuple[str, ...]
    optional: tuple[str, ...]
    country: str | None


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    kind: str
    default_validity_days: int
    max_validity_days: int
    key_usage: tuple[str, ...]
    extended_key_usage: tuple[str, ...]
    extended_key_usage_critical: bool
    allowed_keys: tuple[str, ...]
    include_crl_distribution_point: bool
    include_ocsp_url: bool
    ocsp_no_check: bool
    path_length: int | None
    subject: SubjectRules
    san_email: str
    san_dns: str

    @property
    def is_ca(self) -> bool:
        return self.kind in ("ca", "root")

    def key_usage_extension(self, public_key: object = None) -> x509.KeyUsage:
        usages = set(self.key_usage)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            # Encipherment is an RSA notion (RFC 5480 3): an EC key never carries it.
            usages -= {"key_encipherment", "data_encipherment"}
        flags = {name: name in usages for name in KEY_USAGES}
        return x509.KeyUsage(
            **flags, encipher_only=False, decipher_only=False  # type: ignore[arg-type]
        )

    def extended_key_usage_extension(self) -> x509.ExtendedKeyUsage | None:
        if not self.extended_key_usage:
            return None
        return x509.ExtendedKeyUsage([EKUS[name] for name in self.extended_key_usage])

    def check_public_key(self, key: object) -> str:
        """Return the key's spec name, or raise WeakKey saying what the profile accepts."""
        spec = key_spec_of(key)
        if spec not in self.allowed_keys:
            raise WeakKey(
                f"profile {self.name} does not accept a {spec} key; "
                f"accepted: {', '.join(self.allowed_keys)}"
            )
        return spec

    def build_subject(self, subject: str | x509.Name) -> x509.Name:
        """Parse and check a subject against this profile; returns it in canonical order."""
        name = parse_subject(subject) if isinstance(subject, str) else subject
        values: dict[str, str] = {}
        for attr in name:
            short = _SHORT_BY_OID.get(attr.oid)
            if short is None:
                raise SubjectRejected(
                    f"subject attribute {attr.oid.dotted_string} ({attr.oid._name}) is not "
                    f"allowed; use {', '.join(SUBJECT_ATTRIBUTES)}"
                )
            if short in values:
                raise SubjectRejected(f"subject attribute {short} appears more than once")
            values[short] = str(attr.value)
        allowed = set(self.subject.required) | set(self.subject.optional)
        for short, value in values.items():
            if short not in allowed:
                raise SubjectRejected(
                    f"profile {self.name} does not allow subject attribute {short}; "
                    f"allowed: {', '.join(sorted(allowed))}"
                )
            if not value.strip():
                raise SubjectRejected(f"subject attribute {short} is empty")
            if value != value.strip():
                raise SubjectRejected(f"subject attribute {short} has leading/trailing spaces")
            limit = SUBJECT_ATTRIBUTES[short][1]
            if len(value) > limit:
                raise SubjectRejected(
                    f"subject attribute {short} is {len(value)} characters; at most {limit}"
                )
            if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
                raise SubjectRejected(f"subject attribute {short} contains control characters")
        missing = [s for s in self.subject.required if s not in values]
        if missing:
            raise SubjectRejected(
                f"profile {self.name} requires subject attribute(s) {', '.join(missing)}"
            )
        country = values.get("C")
        if self.subject.country and country is not None and country != self.subject.country:
            raise SubjectRejected(
                f"profile {self.name} requires C={self.subject.country}, got C={country}"
            )
        return x509.Name(
            [
                x509.NameAttribute(SUBJECT_ATTRIBUTES[short][0], values[short])
                for short in SUBJECT_ATTRIBUTES
                if short in values
            ]
        )


def parse_subject(text: str) -> x509.Name:
    """Parse "CN=…,O=…,C=VN" (RFC 4514, T= for title accepted) into a Name."""
    if not text or not text.strip():
        raise SubjectRejected("the subject is empty; give it as \"CN=…,O=…,C=VN\"")
    try:
        return x509.Name.from_rfc4514_string(text, _NAME_OVERRIDES)
    except ValueError as exc:
        hint = str(exc) or "use comma-separated NAME=value pairs such as CN=…,O=…,C=VN"
        raise SubjectRejected(f"cannot parse subject {text!r}: {hint}") from None


def format_subject(name: x509.Name) -> str:
    """The subject as people read it: CN first, as in RFC 4514."""
    return name.rfc4514_string({NameOID.TITLE: "T"})


def key_spec_of(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        if key.key_size < 2048:
            raise WeakKey(f"RSA key of {key.key_size} bits is below the minimum of 2048 bits")
        if isinstance(key, rsa.RSAPublicKey) and key.public_numbers().e != 65537:
            raise WeakKey("RSA public exponent must be 65537")
        spec = f"rsa-{key.key_size}"
        if spec not in KEY_SPECS:
            raise WeakKey(f"RSA key size {key.key_size} is not supported; use 2048, 3072 or 4096")
        return spec
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        curve = key.curve.name
        spec = {"secp256r1": "ec-p256", "secp384r1": "ec-p384"}.get(curve)
        if spec is None:
            raise WeakKey(f"elliptic curve {curve} is not accepted; use P-256 or P-384")
        return spec
    raise WeakKey(f"key type {type(key).__name__} is not accepted; use RSA or ECDSA")


_TOP_KEYS = {f.name for f in fields(Profile)} - {"subject", "san_email", "san_dns"} | {
    "subject",
    "san",
}
_DEFAULTS: dict[str, Any] = {
    "extended_key_usage": (),
    "extended_key_usage_critical": False,
    "include_crl_distribution_point": True,
    "include_ocsp_url": True,
    "ocsp_no_check": False,
    "path_length": None,
}


def _need(raw: dict[str, Any], key: str, kind: type, where: str) -> Any:
    if key not in raw:
        raise ProfileError(f"{where}: missing key {key!r}")
    value = raw[key]
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ProfileError(f"{where}: {key!r} must be {kind.__name__}")
    return value


def _string_list(value: Any, allowed: Any, key: str, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where}: {key!r} must be a list of strings")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise ProfileError(f"{where}: {key!r} has unknown value(s) {', '.join(bad)}")
    return tuple(value)


def profile_from_dict(raw: dict[str, Any], where: str = "profile") -> Profile:
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    values = {**_DEFAULTS}
    values["name"] = _need(raw, "name", str, where)
    values["description"] = _need(raw, "description", str, where)
    values["kind"] = _need(raw, "kind", str, where)
    if values["kind"] not in KINDS:
        raise ProfileError(f"{where}: kind must be one of {', '.join(KINDS)}")
    values["default_validity_days"] = _need(raw, "default_validity_days", int, where)
    values["max_validity_days"] = _need(raw, "max_validity_days", int, where)
    if not 0 < values["default_validity_days"] <= values["max_validity_days"]:
        raise ProfileError(f"{where}: need 0 < default_validity_days <= max_validity_days")
    values["key_usage"] = _string_list(_need(raw, "key_usage", list, where), KEY_USAGES,
                                       "key_usage", where)
    values["allowed_keys"] = _string_list(_need(raw, "allowed_keys", list, where), KEY_SPECS,
                                          "allowed_keys", where)
    if "extended_key_usage" in raw:
        values["extended_key_usage"] = _string_list(raw["extended_key_usage"], EKUS,
                                                    "extended_key_usage", where)
    for key in ("extended_key_usage_critical", "include_crl_distribution_point",
                "include_ocsp_url", "ocsp_no_check"):
        if key in raw:
            values[key] = _need(raw, key, bool, where)
    if "path_length" in raw:
        values["path_length"] = _need(raw, "path_length", int, where)
    subject = _need(raw, "subject", dict, where)
    unknown = set(subject) - {"required", "optional", "country"}
    if unknown:
        raise ProfileError(f"{where}: unknown key(s) in [subject]: {', '.join(sorted(unknown))}")
    values["subject"] = SubjectRules(
        required=_string_list(subject.get("required", []), SUBJECT_ATTRIBUTES,
                              "subject.required", where),
        optional=_string_list(subject.get("optional", []), SUBJECT_ATTRIBUTES,
                              "subject.optional", where),
        country=subject.get("country"),
    )
    san = raw.get("san", {})
    if not isinstance(san, dict) or set(san) - {"email", "dns"}:
        raise ProfileError(f"{where}: [san] takes only email and dns")
    for key in ("email", "dns"):
        rule = san.get(key, "forbidden")
        if rule not in SAN_RULES:
            raise ProfileError(f"{where}: san.{key} must be one of {', '.join(SAN_RULES)}")
        values[f"san_{key}"] = rule
    profile = Profile(**values)
    if profile.is_ca and "key_cert_sign" not in profile.key_usage:
        raise ProfileError(f"{where}: a CA profile needs key_cert_sign")
    if not profile.is_ca and {"key_cert_sign", "crl_sign"} & set(profile.key_usage):
        raise ProfileError(f"{where}: an end-entity profile must not have key_cert_sign/crl_sign")
    return profile


def load_profile_file(path: Path) -> Profile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"profile file {path.name} is not valid TOML: {exc}") from None
    profile = profile_from_dict(raw, where=f"profile file {path.name}")
    if profile.name != path.stem:
        raise ProfileError(f"profile file {path.name} names itself {profile.name!r}")
    return profile


class ProfileRegistry:
    """All profiles of a directory, loaded (and so validated) once."""

    def __init__(self, directory: Path = PROFILES_DIR) -> None:
        self._profiles = {
            p.name: p for p in (load_profile_file(f) for f in sorted(directory.glob("*.toml")))
        }

    def get(self, name: str) -> Profile:
        try:
            return self._profiles[name]
        except KeyError:
            raise UnknownProfile(
                f"unknown profile {name!r}; known: {', '.join(sorted(self._profiles))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._profiles)
