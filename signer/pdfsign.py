"""PAdES signing of PDF documents (B-B, B-T, B-LT, B-LTA) with a key that stays in the HSM.

The key is touched in exactly one place, HsmSigner.async_sign_raw; everything else (fields,
appearance, signature and document timestamps, validation data for the DSS) is pyHanko,
composed around it. DocumentSigner holds one opened key and signs any number of documents
with it: one authorization and one HSM unwrap for a whole batch.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.sign import fields as pdf_fields
from pyhanko.sign import signers
from pyhanko.sign.general import SigningError
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathBuildingError, PathValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signer.errors import SignerError, SigningRefused
from signer.pdfinput import DEFAULT_MAX_BYTES, open_for_update, short
from signer.revocation import CLOCK_TOLERANCE, InProcessFetchers, RevocationSource

log = logging.getLogger(__name__)


class Level(StrEnum):
    """PAdES baseline levels (ETSI EN 319 142-1)."""

    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"

    @property
    def timestamped(self) -> bool:
        return self is not Level.B_B

    @property
    def long_term(self) -> bool:
        return self in (Level.B_LT, Level.B_LTA)


class Kind(StrEnum):
    PERSONAL = "personal"
    ORGANIZATION = "organization"


@dataclass(frozen=True)
class Placement:
    """Where a signature goes: a rectangle on a page (PDF points from the bottom-left corner),
    an existing empty signature field, or nowhere (invisible)."""

    page: int = 1
    box: tuple[float, float, float, float] | None = None  # x, y, width, height
    field: str | None = None

    @classmethod
    def parse_visible(cls, text: str) -> Placement:
        """`PAGE,X,Y,W,H` as on the command line."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 5:
            raise SigningRefused("--visible takes PAGE,X,Y,W,H (five numbers, e.g. "
                                 "1,350,50,200,80)")
        try:
            page = int(parts[0])
            x, y, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise SigningRefused(f"--visible {text!r}: PAGE must be an integer and X,Y,W,H "
                                 "numbers (PDF points)") from None
        if page < 1:
            raise SigningRefused("--visible: pages are counted from 1")
        if w < 20 or h < 10 or x < 0 or y < 0:
            raise SigningRefused("--visible: the box must lie on the page and be at least "
                                 "20 x 10 points")
        return cls(page=page, box=(x, y, w, h))

    @property
    def visible(self) -> bool:
        return self.box is not None or self.field is not None


@dataclass(frozen=True)
class SignRequest:
    """What to make of one document; the same request applies to every document of a batch."""

    level: Level = Level.B_LT
    placement: Placement = field(default_factory=Placement)
    kind: Kind = Kind.PERSONAL
    image_png: bytes | None = None  # handwritten signature (personal) or red seal
    reason: str | None = None
    location: str | None = None
    # Certification (DocMDP) by the issuing organization: later changes allowed up to
    # `docmdp` (1 none, 2 form filling and signing, 3 also annotations); every field that
    # exists is locked except the empty signature fields left for later signers.
    certify: bool = False
    docmdp: int = 2


@dataclass(frozen=True)
class SignerIdentity:
    """What the appearance shows; taken from the certificate unless given."""

    name: str
    organization: str
    title: str | None = None


@dataclass
class SignedDocument:
    name: str
    data: bytes | None = None
    error: SignerError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class HsmSigner(signers.Signer):
    """pyHanko's Signer over a cryptography private key object (our HSM keys are those)."""

    def __init__(self, key: Any, certificate: asn1_x509.Certificate,
                 chain: Sequence[asn1_x509.Certificate]) -> None:
        super().__init__(signing_cert=certificate, embed_roots=True,
                         cert_registry=SimpleCertificateStore.from_certs(list(chain)))
        self.key = key
        if isinstance(key, rsa.RSAPrivateKey):
            self._dry_len = (key.key_size + 7) // 8
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            n = (key.curve.key_size + 7) // 8
            self._dry_len = 2 * (n + 3) + 3  # largest DER ECDSA-Sig-Value
        else:
            raise SignerError(f"unsupported key type {type(key).__name__}")

    async def async_sign_raw(self, data: bytes, digest_algorithm: str,
                             dry_run: bool = False) -> bytes:
        if dry_run:  # size estimation: no HSM operation
            return bytes(self._dry_len)
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        algo = _HASHES[digest_algorithm]()
        if mechanism.signature_algo == "ecdsa":
            return self.key.sign(data, ec.ECDSA(algo))
        if mechanism.signature_algo == "rsassa_pkcs1v15":
            return self.key.sign(data, padding.PKCS1v15(), algo)
        raise SigningError(f"signature mechanism {mechanism.signature_algo} not supported")


_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha256": hashes.SHA256, "sha384": hashes.SHA384, "sha512": hashes.SHA512,
}


class InProcessTimeStamper(TimeStamper):
    """pyHanko's TimeStamper answered by our TSA in this process (no HTTP round trip).
    `respond` takes a TimeStampReq and returns a TimeStampResp, both DER."""

    def __init__(self, respond: Callable[[bytes], bytes]) -> None:
        super().__init__(include_nonce=True)
        self._respond = respond

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        return tsp.TimeStampResp.load(self._respond(req.dump()))


def _asn1(cert: x509.Certificate) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


def identity_of(cert: x509.Certificate) -> SignerIdentity:
    def first(oid: x509.ObjectIdentifier) -> str | None:
        attrs = cert.subject.get_attributes_for_oid(oid)
        return str(attrs[0].value) if attrs else None

    from cryptography.x509.oid import NameOID

    return SignerIdentity(name=first(NameOID.COMMON_NAME) or "",
                          organization=first(NameOID.ORGANIZATION_NAME) or "",
                          title=first(NameOID.TITLE))


class DocumentSigner:
    """Signs documents with one key and certificate. `chain` is the issuer chain (issuing CA
    up to the root); `trust_roots` anchor the validation done for B-LT before signing."""

    def __init__(
        self,
        key: Any,
        certificate: x509.Certificate,
        chain: Sequence[x509.Certificate],
        *,
        timestamper: TimeStamper | None = None,
        revocation: RevocationSource | None = None,
        trust_roots: Sequence[x509.Certificate] = (),
        identity: SignerIdentity | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.certificate = certificate
        self._cert = _asn1(certificate)
        self._chain = [_asn1(c) for c in chain]
        self._roots = [_asn1(c) for c in trust_roots] or [
            c for c in self._chain if c.self_signed == "maybe" or c.self_signed == "yes"
        ]
        self.signer = HsmSigner(key, self._cert, self._chain)
        self.timestamper = timestamper
        self.revocation = revocation
        self.identity = identity or identity_of(certificate)
        self.clock = clock
        self.max_bytes = max_bytes
        # The signature's reserved size per "timestamped?": the CMS has the same shape for
        # every document of this signer (same certificates, attributes, token), so pyHanko's
        # estimate -- a dry-run CMS built with a dummy signature and timestamp, a third of
        # the signing time -- is made once and its 50% margin kept.
        self._reserved: dict[bool, int] = {}

    # -- public ---------------------------------------------------------------------------

    def sign(self, data: bytes, request: SignRequest) -> bytes:
        """The signed document (an incremental update of `data`). SignerError if refused."""
        self._check_usable(request)
        return asyncio.run(self._sign(data, request))

    def sign_many(self, documents: Iterable[tuple[str, bytes]],
                  request: SignRequest) -> Iterator[SignedDocument]:
        """Each document signed or refused on its own; one event loop for the batch."""
        self._check_usable(request)
        loop = asyncio.new_event_loop()
        try:
            for name, data in documents:
                try:
                    yield SignedDocument(name, loop.run_until_complete(self._sign(data, request)))
                except SignerError as exc:
                    yield SignedDocument(name, error=exc)
        finally:
            loop.close()

    # -- inside ---------------------------------------------------------------------------

    def _check_usable(self, request: SignRequest) -> None:
        now = self.clock()
        c = self.certificate
        if now < c.not_valid_before_utc:
            raise SigningRefused(f"the signing certificate {c.serial_number:x} is not valid "
                                 f"before {c.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
        if now >= c.not_valid_after_utc:
            raise SigningRefused(f"the signing certificate {c.serial_number:x} expired on "
                                 f"{c.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
        if request.level.timestamped and self.timestamper is None:
            raise SigningRefused(f"level {request.level} needs the timestamp authority, which "
                                 "is not available")
        if request.level.long_term and self.revocation is None:
            raise SigningRefused(f"level {request.level} needs revocation data (OCSP/CRL), "
                                 "which is not available")
        if request.certify and request.docmdp not in (1, 2, 3):
            raise SigningRefused("DocMDP permission must be 1, 2 or 3")
        if request.image_png is not None and request.placement.visible:
            from signer.appearance import check_image

            check_image(request.image_png)  # a bad image refuses the batch, not each document

    def _validation_context(self) -> ValidationContext:
        assert self.revocation is not None
        return ValidationContext(
            trust_roots=self._roots, other_certs=self._chain, allow_fetching=True,
            fetcher_backend=InProcessFetchers(self.revocation), revocation_mode="hard-fail",
            time_tolerance=CLOCK_TOLERANCE,
        )

    async def _sign(self, data: bytes, request: SignRequest) -> bytes:
        """One document; whatever goes wrong is a SignerError naming it (a batch goes on)."""
        try:
            return await self._sign_document(data, request)
        except SignerError:
            raise
        except (SigningError, PdfError) as exc:
            raise SigningRefused(f"cannot sign this document: {short(exc)}") from None
        except (PathValidationError, PathBuildingError) as exc:
            # pyHanko validates the signer's and the TSA's certificates for B-LT: revoked, no
            # path, no revocation data.
            raise SigningRefused(f"the signing certificate does not validate: {short(exc)}") \
                from None
        except Exception as exc:  # noqa: BLE001 - reported per document, details in the log
            log.exception("signing failed")
            raise SigningRefused(f"cannot sign this document ({type(exc).__name__}: "
                                 f"{short(exc)})") from None

    async def _sign_document(self, data: bytes, request: SignRequest) -> bytes:
        writer = open_for_update(data, max_bytes=self.max_bytes)
        # field name -> already signed?
        existing = {name: value is not None for name, value, _ in
                    pdf_fields.enumerate_sig_fields(writer.prev)}
        placement = request.placement
        field_spec: pdf_fields.SigFieldSpec | None = None
        if placement.field is not None:
            if placement.field not in existing:
                raise SigningRefused(f"the document has no signature field {placement.field!r}"
                                     + _fields_hint(existing))
            if existing[placement.field]:
                raise SigningRefused(f"signature field {placement.field!r} is already signed")
            field_name = placement.field
        else:
            field_name = _free_name(existing, "Signature")
            box = None
            if placement.box is not None:
                box = _page_box(writer, placement)
            field_spec = pdf_fields.SigFieldSpec(
                field_name, on_page=placement.page - 1, box=box,
                field_mdp_spec=_field_lock(request, existing, field_name),
            )
        if placement.field is not None and request.certify:
            lock = _field_lock(request, existing, field_name)
            if lock is not None:
                raise SigningRefused("certify into a new field (--visible or invisible), not "
                                     "into an existing one")
        vc = self._validation_context() if request.level.long_term else None
        meta = signers.PdfSignatureMetadata(
            field_name=field_name,
            md_algorithm="sha256",
            subfilter=pdf_fields.SigSeedSubFilter.PADES,
            reason=request.reason,
            location=request.location,
            name=self.identity.name,
            certify=request.certify,
            docmdp_permissions=pdf_fields.MDPPerm(request.docmdp) if request.certify
            else pdf_fields.MDPPerm.FILL_FORMS,
            embed_validation_info=request.level.long_term,
            use_pades_lta=request.level is Level.B_LTA,
            validation_context=vc,
            signer_key_usage={"non_repudiation"},
        )
        signing_time = self.clock()
        style = None
        params: dict[str, str] | None = None
        if placement.visible:
            from signer.appearance import AppearanceSpec, stamp_style

            spec = AppearanceSpec(
                kind=request.kind.value, name=self.identity.name,
                organization=self.identity.organization, title=self.identity.title,
                image_png=request.image_png,
            )
            style, params = stamp_style(spec, signing_time)
        pdf_signer = _TimedPdfSigner(
            signing_time, self._reserved, request.level.timestamped, meta, self.signer,
            timestamper=self.timestamper if request.level.timestamped else None,
            stamp_style=style, new_field_spec=field_spec,
        )
        out = io.BytesIO()
        await pdf_signer.async_sign_pdf(
            writer, existing_fields_only=placement.field is not None,
            appearance_text_params=params, output=out,
        )
        return out.getvalue()


class _TimedPdfSigner(signers.PdfSigner):
    """pyHanko's PdfSigner with the signing time fixed by us: the signingTime attribute and
    the time drawn in the appearance are the same instant. Its size estimate is remembered
    in `reserved` under `size_key` and reused by the next document."""

    def __init__(self, signing_time: datetime, reserved: dict[bool, int], size_key: bool,
                 *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._signing_time = signing_time
        self._reserved = reserved
        self._size_key = size_key

    def init_signing_session(self, pdf_out: Any, existing_fields_only: bool = False) -> Any:
        session = super().init_signing_session(pdf_out, existing_fields_only)
        session.system_time = self._signing_time
        estimate = session.estimate_signature_container_size
        reserved, key = self._reserved, self._size_key

        async def remembered(validation_info: Any, tight: bool = False) -> int:
            if key not in reserved:
                reserved[key] = await estimate(validation_info, tight=tight)
            return reserved[key]

        session.estimate_signature_container_size = remembered
        return session


def _fields_hint(existing: dict[str, bool]) -> str:
    empty = sorted(n for n, filled in existing.items() if not filled)
    return f" (empty signature fields: {', '.join(empty)})" if empty else \
        " (it has no empty signature field)"


def _free_name(existing: dict[str, bool], base: str) -> str:
    n = len(existing) + 1
    while f"{base}{n}" in existing:
        n += 1
    return f"{base}{n}"


def _page_box(writer: IncrementalPdfFileWriter, placement: Placement) -> tuple[int, int, int, int]:
    assert placement.box is not None
    pages = int(writer.root["/Pages"]["/Count"])
    if placement.page > pages:
        raise SigningRefused(f"the document has {pages} page(s); there is no page "
                             f"{placement.page}")
    page = writer.find_page_for_modification(placement.page - 1)[0].get_object()
    media = [float(v) for v in _inherited(page, "/MediaBox")]
    x, y, w, h = placement.box
    if x + w > media[2] + 0.5 or y + h > media[3] + 0.5:
        raise SigningRefused(
            f"the signature box {x:g},{y:g} {w:g}x{h:g} does not fit on page {placement.page} "
            f"({media[2] - media[0]:g} x {media[3] - media[1]:g} points)")
    return (round(x), round(y), round(x + w), round(y + h))


def _inherited(page: Any, key: str) -> Any:
    node = page
    while node is not None:
        if key in node:
            return node[key]
        node = node.get("/Parent")
        node = node.get_object() if node is not None else None
    return [0, 0, 595, 842]


def _field_lock(request: SignRequest, existing: dict[str, bool],
                own: str) -> pdf_fields.FieldMDPSpec | None:
    """A certifying signature locks every field but the empty signature fields."""
    if not request.certify:
        return None
    left_open = sorted(n for n, filled in existing.items() if not filled and n != own)
    if left_open:
        return pdf_fields.FieldMDPSpec(pdf_fields.FieldMDPAction.EXCLUDE, fields=left_open)
    return pdf_fields.FieldMDPSpec(pdf_fields.FieldMDPAction.ALL)
