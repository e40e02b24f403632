"""Signing documents for an official: their current certificate, their HSM key (opened once with
their PIN for the whole batch), our TSA and revocation data, and the audit trail."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography import x509

from ca import audit, store
from signer.errors import SigningRefused

if TYPE_CHECKING:
    from signer.pdfsign import SignedDocument, SignRequest

# pyHanko (behind signer.pdfsign) takes most of a second to import: it is imported where a
# document is signed, so the choices below cost nothing to the CLI and the web pages.
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
KINDS = ("personal", "organization")
DEFAULT_LEVEL = "B-LT"
DEFAULT_KIND = "personal"


@dataclass(frozen=True)
class SigningCertificate:
    serial: str
    ca_name: str
    certificate: x509.Certificate
    chain: list[x509.Certificate]  # issuing CA up to the root


def signing_certificate(kyso: Any, official_id: int,
                        now: datetime | None = None) -> SigningCertificate:
    """The official's newest valid certificate for their active key; SigningRefused with the
    reason (revoked, on hold, expired, none) otherwise."""
    now = now or datetime.now(UTC)
    with kyso.readers() as s:
        store.get_official(s, official_id)
        key = store.active_official_key(s, official_id)
        records = [r for r in store.official_certificates(s, official_id)
                   if r.official_key_id == key.id and r.cert_der is not None]
        if not records:
            raise SigningRefused(f"official {official_id} has no certificate for their "
                                 "signing key")
        usable = [r for r in records if r.status == "valid" and r.not_before <= now < r.not_after]
        if not usable:
            newest = records[-1]
            if newest.status == "revoked":
                why = (f"was revoked on {newest.revoked_at:%Y-%m-%d %H:%M} UTC "
                       f"({newest.revocation_reason or 'unspecified'})")
            elif newest.status == "hold":
                why = "is on hold"
            elif newest.not_after <= now:
                why = f"expired on {newest.not_after:%Y-%m-%d}"
            else:
                why = f"is {newest.status}"
            raise SigningRefused(f"official {official_id}'s certificate {newest.serial} {why}; "
                                 "signing is refused")
        record = usable[-1]
        ca_name = store.get_ca_by_id(s, record.ca_id).name
    return SigningCertificate(record.serial, ca_name,
                              x509.load_der_x509_certificate(record.cert_der),  # type: ignore[arg-type]
                              kyso.authority.chain(ca_name))


def build_sign_request(level: str = DEFAULT_LEVEL, kind: str = DEFAULT_KIND, *,
                       visible: str | None = None, field: str | None = None,
                       image_png: bytes | None = None, reason: str | None = None,
                       location: str | None = None, certify: bool = False,
                       docmdp: int = 2) -> SignRequest:
    """The SignRequest of the CLI's and the portal's options: `visible` is `PAGE,X,Y,W,H`
    (points from the bottom-left corner), `field` an existing empty signature field, neither
    an invisible signature. SigningRefused (safe message) for anything malformed."""
    from signer.pdfsign import Kind, Level, Placement, SignRequest

    if level not in LEVELS:
        raise SigningRefused(f"level must be one of {', '.join(LEVELS)}")
    if kind not in KINDS:
        raise SigningRefused(f"kind must be one of {', '.join(KINDS)}")
    if visible and field:
        raise SigningRefused("a visible box and a signature field exclude each other")
    placement = (Placement.parse_visible(visible) if visible else
                 Placement(field=field) if field else Placement())
    return SignRequest(level=Level(level), placement=placement, kind=Kind(kind),
                       image_png=image_png, reason=reason, location=location,
                       certify=certify, docmdp=docmdp)


@dataclass(frozen=True)
class BatchItem:
    name: str
    data: bytes


def sign_documents(kyso: Any, official_id: int, pin: str, documents: Iterable[BatchItem],
                   request: SignRequest, *, actor: str | None = None) -> Iterator[SignedDocument]:
    """Sign every document with one PIN check and one HSM unwrap; each yields its result.
    The certificate is checked before the key is opened (a revoked official costs no PIN
    attempt), and each signed document is entered in the audit log with its digest."""
    from signer.pdfsign import DocumentSigner, InProcessTimeStamper

    actor = actor or f"official:{official_id}"
    cert = signing_certificate(kyso, official_id)
    timestamper = InProcessTimeStamper(kyso.tsa().respond) if request.level.timestamped \
        else None
    from kyso.validation import KysoRevocation

    revocation = KysoRevocation(kyso) if request.level.long_term else None
    with kyso.authority.official_signing_key(official_id, pin, actor=actor) as key:
        signer = DocumentSigner(key, cert.certificate, cert.chain, timestamper=timestamper,
                                revocation=revocation, trust_roots=cert.chain[-1:])
        for result in signer.sign_many(((d.name, d.data) for d in documents), request):
            _audit(kyso, actor, cert.serial, request, result)
            yield result


def _audit(kyso: Any, actor: str, serial: str, request: SignRequest,
           result: SignedDocument) -> None:
    details: dict[str, Any] = {"document": result.name, "certificate": serial,
                               "level": str(request.level)}
    if result.data is not None:
        details["sha256"] = hashlib.sha256(result.data).hexdigest()
    if result.error is not None:
        details["error"] = result.error.message
    with kyso.sessions.begin() as s:
        audit.record(s, actor=actor, action="document.sign", obj=f"certificate:{serial}",
                     outcome="success" if result.ok else "failure", details=details)

