"""PDF signature verification: one ETSI EN 319 102-1 verdict per signature, over pyHanko's AdES.

How a signature is judged, in order:
  1. structure: the signature dictionary parses, /SubFilter is one we support, the byte range
     covers its whole revision (coverage) — else TOTAL-FAILED / FORMAT_FAILURE;
  2. modifications after it (pyHanko's difference analysis, DocMDP): anything beyond what the
     signature permits makes it TOTAL-FAILED / FORMAT_FAILURE, whatever the cryptography says;
  3. cryptography, certificate path and revocation: pyHanko's AdES processes — validation with
     time (5.5) when a signature timestamp is present, basic validation (5.3) otherwise — and
     the long-term process (5.6.3, past validation with proofs of existence from document
     timestamps) only when the current-time result leaves room for it. Most documents take one
     pass; nothing is validated twice on the common path.

Policy (kyso's, stated here so a reviewer can argue with it):
  * signer certificates need revocation data for every certificate of the path (OCSP or CRL);
  * timestamp (TSA) certificates are checked against revocation data when there is some, and a
    revoked TSA fails, but missing or stale data for a TSA does not: otherwise no archived
    (B-LTA) document could ever be verified offline;
  * annotations added after a signature are not a permitted change (pyHanko's default diff
    policy), certified or not: an annotation can paint over signed content (EAA);
  * a signature whose trusted timestamp (or own claimed signing time) is at or after its
    certificate's revocation is TOTAL-FAILED / REVOKED (strict ETSI would leave it at
    INDETERMINATE / REVOKED_NO_POE).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import cms as asn1_cms
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import tsp as asn1_tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESPassed, AdESSubIndic
from pyhanko.sign.diff_analysis import DiffResult, ModificationLevel, SuspiciousModification
from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter, enumerate_sig_fields
from pyhanko.sign.general import (
    MultivaluedAttributeError,
    NonexistentAttributeError,
    find_unique_cms_attribute,
)
from pyhanko.sign.validation import ades, generic_cms
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko.sign.validation.status import (
    DocumentTimestampStatus,
    PdfSignatureStatus,
    SignatureCoverageLevel,
    SignatureStatus,
    TimestampSignatureStatus,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import (
    REQUIRE_REVINFO,
    CertRevTrustPolicy,
    FreshnessReqType,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from signer.errors import NoSignatures, PdfDamaged, SignerError
from signer.pdfinput import (
    DEFAULT_MAX_BYTES,
    HEADER_WINDOW,
    check_header,
    check_size,
    open_pdf,
    short,
)
from signer.revocation import CLOCK_TOLERANCE, InProcessFetchers, RevocationSource

__all__ = [
    "DEFAULT_MAX_BYTES",
    "FAILED",
    "INDETERMINATE",
    "PASSED",
    "CertificateInfo",
    "DocumentTimestampRef",
    "Integrity",
    "Modification",
    "Reason",
    "Revocation",
    "SignatureReport",
    "TimestampInfo",
    "VerificationReport",
    "verify_pdf",
    "verify_pdf_file",
]

logger = logging.getLogger(__name__)
# pyHanko logs every validation problem as a warning with a traceback; with no logging set up
# Python's last-resort handler would print those to stderr. Our reports carry the reasons.
for _name in ("pyhanko", "pyhanko_certvalidator", __name__):
    logging.getLogger(_name).addHandler(logging.NullHandler())

_ANY_AGE = timedelta(days=365 * 100)

PASSED = "TOTAL-PASSED"
FAILED = "TOTAL-FAILED"
INDETERMINATE = "INDETERMINATE"

_SIGNATURE_SUBFILTERS = frozenset({SigSeedSubFilter.ADOBE_PKCS7_DETACHED.value,
                                   SigSeedSubFilter.PADES.value})
_TIMESTAMP_SUBFILTER = SigSeedSubFilter.ETSI_RFC3161.value

# Current-time results the long-term process (past validation with proofs of existence) can
# still turn into a pass; anything else is final after the first pass.
_LTA_CAN_IMPROVE = frozenset({
    AdESIndeterminate.REVOKED_NO_POE,
    AdESIndeterminate.REVOKED_CA_NO_POE,
    AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.TRY_LATER,
})
_REVOCATION_UNKNOWN = frozenset({
    AdESIndeterminate.TRY_LATER,
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
    AdESIndeterminate.NO_POE,
    AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE,
})

_MODIFICATION_LEVELS = {
    ModificationLevel.NONE: "none",
    ModificationLevel.LTA_UPDATES: "lta_updates",
    ModificationLevel.FORM_FILLING: "form_filling",
    ModificationLevel.ANNOTATIONS: "annotations",
    ModificationLevel.OTHER: "other",
}
_COVERAGE = {
    SignatureCoverageLevel.ENTIRE_FILE: "entire_file",
    SignatureCoverageLevel.ENTIRE_REVISION: "entire_revision",
    SignatureCoverageLevel.CONTIGUOUS_BLOCK_FROM_START: "contiguous_block",
    SignatureCoverageLevel.UNCLEAR: "unclear",
}


# -- report ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reason:
    """Why a verdict is what it is: a stable `code` (see signer/report.py for the wording)
    and an optional technical detail (English, from pyHanko or the parser)."""

    code: str
    detail: str = ""


@dataclass(frozen=True)
class CertificateInfo:
    common_name: str | None
    organization: str | None
    serial: str  # lowercase hex, like everywhere in kyso
    issuer_common_name: str | None
    subject: str
    not_before: datetime
    not_after: datetime


@dataclass(frozen=True)
class TimestampInfo:
    time: datetime
    valid: bool  # token intact and its signature correct
    trusted: bool  # and the TSA certificate chains to a trust anchor, not revoked
    tsa: str | None  # TSA certificate common name (or the TSTInfo tsa name)


@dataclass(frozen=True)
class DocumentTimestampRef:
    field_name: str
    time: datetime
    indication: str


@dataclass(frozen=True)
class Integrity:
    digest_ok: bool | None  # the byte-range digest matches the signed messageDigest
    signature_ok: bool | None  # the signature value verifies with the certificate's key
    digest_algorithm: str | None
    signature_algorithm: str | None


@dataclass(frozen=True)
class Revocation:
    """Status of the signer certificate at signing time. `revoked_at`/`reason` are filled
    whenever a revocation is known, also one after the signature (status stays "good")."""

    status: str  # good | revoked | unknown
    revoked_at: datetime | None = None
    reason: str | None = None
    ca_revoked: bool = False
    sources: tuple[str, ...] = ()  # dss, cms (embedded in the file), fetched (revocation source)


@dataclass(frozen=True)
class Modification:
    """What happened to the document after this signature's revision."""

    level: str  # none | lta_updates | form_filling | annotations | other
    coverage: str  # entire_file | entire_revision | contiguous_block | unclear
    changed_fields: tuple[str, ...] = ()
    details: tuple[str, ...] = ()  # pyHanko's diff reasons and our description of the change
    docmdp_permission: int | None = None  # 1, 2 or 3 when this is a certification signature
    permitted: bool = True  # the changes respect what the signature (DocMDP) allows


@dataclass(frozen=True)
class SignatureReport:
    field_name: str
    kind: str  # signature | document_timestamp
    revision: int | None
    sub_filter: str | None
    signer: CertificateInfo | None
    claimed_signing_time: datetime | None
    timestamp: TimestampInfo | None
    document_timestamps: tuple[DocumentTimestampRef, ...]
    integrity: Integrity
    certificate_path: tuple[str, ...]  # subject CNs, signer first, trust anchor last
    path_trusted: bool
    revocation: Revocation
    pades_level: str | None  # B-B, B-T, B-LT, B-LTA (None: not even B-B holds)
    modification: Modification
    certified: bool
    indication: str  # TOTAL-PASSED | TOTAL-FAILED | INDETERMINATE
    sub_indication: str | None  # ETSI EN 319 102-1 sub-indication
    reasons: tuple[Reason, ...]
    best_signature_time: datetime | None  # earliest proven existence (timestamp) if any

    @property
    def passed(self) -> bool:
        return self.indication == PASSED

    @property
    def verdict(self) -> str:
        """Alias of `indication` (TOTAL-PASSED / TOTAL-FAILED / INDETERMINATE)."""
        return self.indication


@dataclass(frozen=True)
class VerificationReport:
    signatures: tuple[SignatureReport, ...]  # signatures and document timestamps, file order
    signature_count: int  # approval/certification signatures (document timestamps excluded)
    document_timestamp_count: int
    revisions: int
    last_revision_covered: bool  # the last signature or timestamp covers the whole file
    validation_time: datetime
    indication: str  # worst of the signatures'
    file_size: int = 0
    certified: bool = False
    notes: tuple[Reason, ...] = field(default_factory=tuple)


# -- entry points ---------------------------------------------------------------------------

def verify_pdf_file(path: str | os.PathLike[str], *, trust_roots: Sequence[x509.Certificate],
                    revocation: RevocationSource | None = None, now: datetime | None = None,
                    max_bytes: int = DEFAULT_MAX_BYTES) -> VerificationReport:
    """Verify a PDF on disk; the size is checked before anything is read."""
    size = Path(path).stat().st_size
    check_size(size, max_bytes)
    with open(path, "rb") as fh:
        head = fh.read(HEADER_WINDOW)
        check_header(head)
        data = head + fh.read()
    return verify_pdf(data, trust_roots=trust_roots, revocation=revocation, now=now,
                      max_bytes=max_bytes)


def verify_pdf(data: bytes, *, trust_roots: Sequence[x509.Certificate],
               revocation: RevocationSource | None = None, now: datetime | None = None,
               max_bytes: int = DEFAULT_MAX_BYTES) -> VerificationReport:
    """Verify every signature and document timestamp of a PDF.

    Structural problems of the file raise a SignerError subclass (NotAPdf, PdfDamaged,
    PdfEncrypted, PdfTooLarge, NoSignatures); problems of a signature are in its report.
    """
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    reader = open_pdf(data, max_bytes)
    try:
        return asyncio.run(_Verifier(reader, trust_roots, revocation, now, len(data)).run())
    except SignerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a structure the verifier cannot walk
        logger.warning("verification aborted", exc_info=True)
        raise PdfDamaged(f"the PDF could not be processed: {short(exc)}") from None


# -- the verifier ---------------------------------------------------------------------------

class _Signature(EmbeddedPdfSignature):
    """pyHanko's embedded signature, with the integrity analysis (digest, coverage, diff)
    computed once: its AdES long-term process asks for it again for every signature."""

    def compute_integrity_info(self, diff_policy: Any = None, skip_diff: bool = False) -> None:
        if self._integrity_checked and (skip_diff or self.diff_result is not None):
            return
        super().compute_integrity_info(diff_policy=diff_policy, skip_diff=skip_diff)


@dataclass
class _Broken:
    """A signature field whose value could not even be read as a signature."""

    field_name: str
    sub_filter: str | None
    kind: str
    reason: Reason


class _Source:
    """The caller's RevocationSource as pyHanko's fetchers see it.

    Remembers which certificates the source answered for (the report's "fetched"), and falls
    back to the file's own data when it has no answer: pyHanko discards the embedded data
    for a certificate whose fetch fails, so a source that does not know a certificate (one
    of another PKI, say) would otherwise hide a perfectly good DSS."""

    def __init__(self, source: RevocationSource, embedded: _Embedded) -> None:
        self.source = source
        self.embedded = embedded
        self.answered: set[int] = set()

    def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None:
        try:
            der = self.source.ocsp(cert_der, issuer_der)
        except Exception:  # noqa: BLE001 - a failing source is a source without an answer
            logger.warning("revocation source failed (OCSP)", exc_info=True)
            der = None
        cert = asn1_x509.Certificate.load(cert_der)
        if der is not None:
            self.answered.add(cert.serial_number)
            return der
        for resp in self.embedded.ocsps + self.embedded.cms_ocsps:
            if _has_revinfo(cert, [resp], []):
                return resp.dump()
        return None

    def crls(self, cert_der: bytes) -> list[bytes]:
        try:
            ders = self.source.crls(cert_der)
        except Exception:  # noqa: BLE001 - as above
            logger.warning("revocation source failed (CRL)", exc_info=True)
            ders = []
        cert = asn1_x509.Certificate.load(cert_der)
        if ders:
            self.answered.add(cert.serial_number)
            return ders
        return [c.dump() for c in self.embedded.crls + self.embedded.cms_crls
                if _has_revinfo(cert, [], [c])]


class _NoSource:
    """Fetcher backend for offline verification: never asked (fetching is off), but given so
    pyHanko does not provision an HTTP client per operation."""

    def ocsp(self, cert_der: bytes, issuer_der: bytes) -> bytes | None:
        return None

    def crls(self, cert_der: bytes) -> list[bytes]:
        return []


@dataclass
class _Embedded:
    """Validation data carried by the file: DSS and CMS revocationInfoArchival."""

    ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)
    crls: list[asn1_crl.CertificateList] = field(default_factory=list)
    certs: list[asn1_x509.Certificate] = field(default_factory=list)
    cms_ocsps: list[asn1_ocsp.OCSPResponse] = field(default_factory=list)
    cms_crls: list[asn1_crl.CertificateList] = field(default_factory=list)


class _Verifier:
    def __init__(self, reader: PdfFileReader, trust_roots: Sequence[x509.Certificate],
                 revocation: RevocationSource | None, now: datetime, size: int) -> None:
        self.reader = reader
        self.now = now
        self.size = size
        self.revocation = revocation
        self.source: _Source | None = None
        self.roots = [asn1_x509.Certificate.load(c.public_bytes(serialization.Encoding.DER))
                      for c in trust_roots]
        self.timing = ValidationTimingInfo(validation_time=now, best_signature_time=now,
                                           point_in_time_validation=False)

    # -- orchestration ----------------------------------------------------------------------

    async def run(self) -> VerificationReport:
        sigs, broken = self._collect()
        if not sigs and not broken:
            raise NoSignatures("the PDF has no signatures")
        # pyHanko's long-term process enumerates the reader's signatures itself: hand it ours,
        # so the integrity analysis is shared and unreadable fields are left out.
        self.reader._embedded_signatures = sigs  # noqa: SLF001
        embedded = self._embedded(sigs)
        self.embedded = embedded
        if self.revocation is not None:
            self.source = _Source(self.revocation, embedded)
        self.spec = self._spec(embedded)
        certification = self._certification_ref()

        doc_ts: dict[int, SignatureReport] = {}
        for emb in sigs:
            if emb.sig_object_type == "/DocTimeStamp":
                doc_ts[id(emb)] = await self._document_timestamp(emb)
        reports: list[tuple[int, SignatureReport]] = []
        first_signed = min((e.signed_revision for e in sigs), default=None)
        for emb in sigs:
            if id(emb) in doc_ts:
                report = doc_ts[id(emb)]
            else:
                later_ts = [(e, doc_ts[id(e)]) for e in sigs if id(e) in doc_ts
                            and e.signed_revision > emb.signed_revision]
                report = await self._signature(emb, later_ts, certification, first_signed)
            reports.append((emb.signed_revision, report))
        ordered = [r for _, r in sorted(reports, key=lambda x: x[0])]
        ordered += [self._broken_report(b) for b in broken]

        last = max(sigs, key=lambda e: e.signed_revision, default=None)
        covered = bool(last is not None and last.coverage == SignatureCoverageLevel.ENTIRE_FILE)
        order = {PASSED: 0, INDETERMINATE: 1, FAILED: 2}
        overall = max((r.indication for r in ordered), key=order.__getitem__)
        notes: list[Reason] = []
        if not covered and last is not None:
            last_report = next(r for rev, r in reports if rev == last.signed_revision)
            if last_report.modification.level == "lta_updates":
                notes.append(Reason("validation_data_at_end"))
            else:
                notes.append(Reason("unsigned_changes_at_end"))
        return VerificationReport(
            signatures=tuple(ordered),
            signature_count=sum(1 for r in ordered if r.kind == "signature"),
            document_timestamp_count=sum(1 for r in ordered if r.kind == "document_timestamp"),
            revisions=self.reader.xrefs.total_revisions,
            last_revision_covered=covered,
            validation_time=self.now,
            indication=overall,
            file_size=self.size,
            certified=certification is not None,
            notes=tuple(notes),
        )

    def _collect(self) -> tuple[list[_Signature], list[_Broken]]:
        sigs: list[_Signature] = []
        broken: list[_Broken] = []
        try:
            found = list(enumerate_sig_fields(self.reader, filled_status=True))
        except Exception as exc:  # noqa: BLE001 - a broken form is a damaged file
            raise PdfDamaged(f"the PDF's form fields cannot be read: {short(exc)}") from None
        for name, sig_obj, sig_field in found:
            sub_filter = kind = None
            try:
                obj = sig_obj.get_object()
                kind = ("document_timestamp" if obj.get("/Type") == "/DocTimeStamp"
                        else "signature")
                sub_filter = str(obj.get("/SubFilter")) if "/SubFilter" in obj else None
                expected = ({_TIMESTAMP_SUBFILTER} if kind == "document_timestamp"
                            else _SIGNATURE_SUBFILTERS)
                if sub_filter not in expected:
                    broken.append(_Broken(name, sub_filter, kind, Reason(
                        "unsupported_format", f"/SubFilter {sub_filter} for a {kind}")))
                    continue
                emb = _Signature(self.reader, sig_field, name)
                content_type = emb.signed_data["encap_content_info"]["content_type"].native
                if (content_type == "tst_info") != (kind == "document_timestamp"):
                    broken.append(_Broken(name, sub_filter, kind, Reason(
                        "unsupported_format", f"{content_type} content in a {kind}")))
                    continue
                sigs.append(emb)
            except Exception as exc:  # noqa: BLE001 - USF: missing/garbage /ByteRange, /Contents
                broken.append(_Broken(name, sub_filter, kind or "signature",
                                      Reason("signature_unreadable", short(exc))))
        sigs.sort(key=lambda e: e.signed_revision)
        return sigs, broken

    def _certification_ref(self) -> generic.Reference | None:
        try:
            ref = self.reader.root["/Perms"].raw_get("/DocMDP")
            return ref.reference if isinstance(ref, generic.IndirectObject) else None
        except (KeyError, AttributeError, misc.PdfError):
            return None

    # -- validation settings ----------------------------------------------------------------

    def _embedded(self, sigs: Iterable[_Signature]) -> _Embedded:
        out = _Embedded()
        try:
            dss = DocumentSecurityStore.read_dss(self.reader)
            for ref in dss.ocsps:
                out.ocsps.append(asn1_ocsp.OCSPResponse.load(
                    ref.get_object().read_data(DecodePurpose.OCSP_RESPONSE)))
            for ref in dss.crls:
                out.crls.append(asn1_crl.CertificateList.load(
                    ref.get_object().read_data(DecodePurpose.CRL)))
            out.certs.extend(dss.load_certs())
        except NoDSSFoundError:
            pass
        except Exception as exc:  # noqa: BLE001 - a broken DSS is just no embedded data
            logger.info("unreadable DSS: %s", exc)
        for emb in sigs:
            try:
                archival = find_unique_cms_attribute(emb.signer_info["signed_attrs"],
                                                     "adobe_revocation_info_archival")
            except (NonexistentAttributeError, MultivaluedAttributeError, KeyError):
                continue
            out.cms_crls.extend(archival["crl"])
            out.cms_ocsps.extend(archival["ocsp"])
        return out

    def _spec(self, embedded: _Embedded) -> SignatureValidationSpec:
        trust = SimpleTrustManager.build(trust_roots=self.roots)
        signer_policy = CertValidationPolicySpec(
            trust_manager=trust, revinfo_policy=CertRevTrustPolicy(REQUIRE_REVINFO),
            time_tolerance=CLOCK_TOLERANCE)
        # TSA certificates: whatever revocation data exists counts, however old (a revoked
        # TSA fails), and none at all is tolerated — see the module docstring.
        soft = RevocationCheckingRule.CHECK_IF_DECLARED_SOFT
        tsa_policy = CertValidationPolicySpec(
            trust_manager=trust,
            revinfo_policy=CertRevTrustPolicy(
                RevocationCheckingPolicy(soft, soft), freshness=_ANY_AGE,
                freshness_req_type=FreshnessReqType.MAX_DIFF_REVOCATION_VALIDATION),
            time_tolerance=CLOCK_TOLERANCE)
        if self.source is not None:
            gathering = RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.NO_HISTORICAL_FETCH,
                fetcher_backend=InProcessFetchers(self.source))
        else:
            gathering = RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.LOCAL_ONLY,
                fetcher_backend=InProcessFetchers(_NoSource()))
        ocsps = [c for r in embedded.ocsps + embedded.cms_ocsps
                 for c in OCSPContainer.load_multi(r)]
        crls = [CRLContainer(c) for c in embedded.crls + embedded.cms_crls]
        return SignatureValidationSpec(
            cert_validation_policy=signer_policy,
            ts_cert_validation_policy=tsa_policy,
            revinfo_gathering_policy=gathering,
            local_knowledge=LocalKnowledge(known_ocsps=ocsps, known_crls=crls,
                                           known_certs=list(embedded.certs)),
            key_usage_settings=KeyUsageConstraints(
                key_usage={"digital_signature", "non_repudiation"}),
        )

    # -- document timestamps ----------------------------------------------------------------

    async def _document_timestamp(self, emb: _Signature) -> SignatureReport:
        reasons: list[Reason] = []
        modification, structure = self._integrity(emb, reasons)
        result: ades.AdESBasicValidationResult | None = None
        status: Any = None
        try:
            result = await ades.ades_timestamp_validation(
                emb.signed_data, self.spec, expected_tst_imprint=emb.compute_digest,
                timing_info=self.timing, extra_status_kwargs=emb.summarise_integrity_info(),
                status_cls=DocumentTimestampStatus)
            status = result.api_status
        except Exception as exc:  # noqa: BLE001 - report, never a traceback
            logger.warning("document timestamp validation failed", exc_info=True)
            reasons.append(Reason("validation_error", short(exc)))
        tst = _tst_info(emb.signed_data)
        indication, sub = _verdict(result.ades_subindic if result else None, structure)
        if result is not None and result.failure_msg:
            reasons.append(Reason("ades", result.failure_msg))
        if result is not None and indication != PASSED and structure is None:
            reasons.append(_reason_for(result.ades_subindic, status, timestamp=True))
        tsa_cert = _signer_cert_safe(emb)
        ts_info = None
        if tst is not None:
            ts_info = TimestampInfo(time=tst["gen_time"].native,
                                    valid=bool(status and status.intact and status.valid),
                                    trusted=bool(status and status.trusted),
                                    tsa=_tsa_name(tst, tsa_cert))
        return SignatureReport(
            field_name=emb.field_name, kind="document_timestamp",
            revision=emb.signed_revision, sub_filter=str(emb.sig_object.get("/SubFilter")),
            signer=_cert_info(tsa_cert) if tsa_cert else None,
            claimed_signing_time=None, timestamp=ts_info, document_timestamps=(),
            integrity=_integrity_of(status, emb), certificate_path=_path_names(status, emb),
            path_trusted=bool(status and status.validation_path is not None
                              and status.trust_problem_indic is None),
            revocation=Revocation("good" if indication == PASSED else "unknown"),
            pades_level=None, modification=modification, certified=False,
            indication=indication, sub_indication=sub, reasons=tuple(_dedupe(reasons)),
            best_signature_time=ts_info.time if ts_info and indication == PASSED else None,
        )

    # -- signatures -------------------------------------------------------------------------

    async def _signature(self, emb: _Signature,
                         later_ts: list[tuple[_Signature, SignatureReport]],
                         certification: generic.Reference | None,
                         first_signed: int | None) -> SignatureReport:
        reasons: list[Reason] = []
        modification, structure = self._integrity(emb, reasons)
        is_certification = (certification is not None
                            and emb.sig_object.container_ref == certification) \
            or _has_docmdp_reference(emb.sig_object)
        if is_certification and emb.signed_revision != first_signed:
            # ISO 32000-2 12.8.2.2: the certification signature is the document's first.
            reasons.append(Reason("certification_not_first"))
            structure = structure or AdESFailure.FORMAT_FAILURE

        has_ts = next(generic_cms.extract_tst_data_iter(emb.signer_info, signed=False),
                      None) is not None
        result: ades.AdESBasicValidationResult | None = None
        try:
            result = await self._validate(emb, has_ts)
        except Exception as exc:  # noqa: BLE001 - report, never a traceback
            logger.warning("signature validation failed", exc_info=True)
            reasons.append(Reason("validation_error", short(exc)))
        status: PdfSignatureStatus | None = result.api_status if result else None
        subindic = result.ades_subindic if result else None
        best_time = getattr(result, "best_signature_time", None)
        if best_time is not None and best_time >= self.now:
            best_time = None  # "now" is no proof of anything

        ts_status = self._timestamp_status(result, status)
        ts_info = await self._timestamp_info(emb, ts_status, has_ts)
        claimed = generic_cms.extract_self_reported_ts(emb.signer_info) \
            or _pdf_date(emb, "/M")

        if subindic == AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE \
                and self._revinfo_missing(emb, status):
            # pyHanko's generic answer when no revocation data exists for a certificate of
            # the path; ETSI's word for "could work with data obtained later" is TRY_LATER.
            subindic = AdESIndeterminate.TRY_LATER
        revocation = self._revocation(emb, status, subindic, best_time)
        # Signed (per its trusted timestamp, or its own claim) once the certificate was
        # revoked: that is a failure, not an open question.
        if subindic == AdESIndeterminate.REVOKED_NO_POE and revocation.revoked_at is not None:
            proof = best_time if ts_info and ts_info.trusted else None
            when = proof or claimed
            if when is not None and when >= revocation.revoked_at:
                subindic = AdESFailure.REVOKED
                what = "timestamp" if proof else "claimed signing time"
                reasons.append(Reason("signed_after_revocation",
                                      f"{what} {when.isoformat()}, certificate revoked at "
                                      f"{revocation.revoked_at.isoformat()}"))

        indication, sub = _verdict(subindic, structure)
        if result is not None and subindic is not None and subindic != AdESPassed.OK:
            reasons.append(_reason_for(subindic, status, timestamp=False,
                                       ts_failed=has_ts and not (ts_info and ts_info.trusted)))
            if result.failure_msg:
                reasons.append(Reason("ades", result.failure_msg))
        seed_error = getattr(status, "seed_value_constraint_error", None)
        if seed_error is not None:
            reasons.append(Reason("seed_value", str(seed_error)))

        doc_refs = tuple(DocumentTimestampRef(e.field_name, r.timestamp.time, r.indication)
                         for e, r in later_ts if r.timestamp is not None)
        level = self._level(emb, status, ts_info, later_ts)
        return SignatureReport(
            field_name=emb.field_name, kind="signature", revision=emb.signed_revision,
            sub_filter=str(emb.sig_object.get("/SubFilter")),
            signer=_cert_info(_signer_cert_safe(emb)),
            claimed_signing_time=claimed, timestamp=ts_info, document_timestamps=doc_refs,
            integrity=_integrity_of(status, emb), certificate_path=_path_names(status, emb),
            path_trusted=bool(status and status.validation_path is not None
                              and (status.trust_problem_indic is None
                                   or subindic == AdESPassed.OK)),
            revocation=revocation, pades_level=level, modification=modification,
            certified=is_certification, indication=indication, sub_indication=sub,
            reasons=tuple(_dedupe(reasons)),
            best_signature_time=best_time,
        )

    async def _validate(self, emb: _Signature, has_ts: bool) -> ades.AdESBasicValidationResult:
        kwargs: dict[str, Any] = dict(raw_digest=emb.compute_digest(), timing_info=self.timing)
        if not has_ts:
            # (pyHanko's basic validation builds a plain CMS status whatever it is asked for.)
            return await ades.ades_basic_validation(emb.signed_data, self.spec, **kwargs)
        kwargs.update(extra_status_kwargs=emb.summarise_integrity_info(),
                      status_cls=PdfSignatureStatus)
        result = await ades.ades_with_time_validation(emb.signed_data, self.spec, **kwargs)
        if result.ades_subindic in _LTA_CAN_IMPROVE:
            # Only now is the long-term process worth its cost: proofs of existence from the
            # document timestamps, past validation with the embedded revocation data.
            lta = await ades.ades_lta_validation(
                emb, PdfSignatureValidationSpec(self.spec), timing_info=self.timing)
            if lta.ades_subindic.status.name in ("PASSED", "FAILED"):
                if lta.api_status is None:
                    return dataclasses.replace(lta, api_status=result.api_status)
                return lta
            # Still open: the current-time answer says more (REVOKED_NO_POE, TRY_LATER ...)
            # than the past-validation one (usually NO_POE).
        return result

    def _timestamp_status(self, result: Any, status: PdfSignatureStatus | None,
                          ) -> TimestampSignatureStatus | None:
        lta_ts = getattr(result, "signature_timestamp_status", None)
        if lta_ts is not None and lta_ts.api_status is not None:
            return lta_ts.api_status
        return status.timestamp_validity if status is not None else None

    async def _timestamp_info(self, emb: _Signature, ts_status: TimestampSignatureStatus | None,
                              has_ts: bool) -> TimestampInfo | None:
        if not has_ts:
            return None
        token = next(generic_cms.extract_tst_data_iter(emb.signer_info, signed=False))
        tst = _tst_info(token)
        if tst is None:
            return None
        if ts_status is None:
            # pyHanko stops before (or after) the signature timestamp without keeping its
            # status when the signature itself fails; judge the token on its own (this is
            # the failure path, the extra work is fine).
            try:
                result = await ades.ades_timestamp_validation(
                    token, self.spec,
                    expected_tst_imprint=generic_cms.message_imprint_checker(emb.signer_info),
                    timing_info=self.timing)
                ts_status = result.api_status
            except Exception as exc:  # noqa: BLE001 - a broken token is just not trusted
                logger.info("signature timestamp unreadable: %s", exc)
        if ts_status is None:
            return TimestampInfo(time=tst["gen_time"].native, valid=False, trusted=False,
                                 tsa=_tsa_name(tst, _first_cert(token)))
        return TimestampInfo(time=ts_status.timestamp, valid=ts_status.intact and ts_status.valid,
                             trusted=ts_status.trusted, tsa=_tsa_name(tst, ts_status.signing_cert))

    def _revocation(self, emb: _Signature, status: PdfSignatureStatus | None,
                    subindic: AdESSubIndic | None, best_time: datetime | None) -> Revocation:
        cert = _signer_cert_safe(emb)
        sources: list[str] = []
        if cert is not None:
            if _has_revinfo(cert, self.embedded.ocsps, self.embedded.crls):
                sources.append("dss")
            if _has_revinfo(cert, self.embedded.cms_ocsps, self.embedded.cms_crls):
                sources.append("cms")
            if self.source is not None and cert.serial_number in self.source.answered:
                sources.append("fetched")
        details = status.revocation_details if status is not None else None
        if details is not None:
            reason = details.revocation_reason.native if details.revocation_reason else None
            before = best_time is not None and best_time < details.revocation_date
            good = before and subindic == AdESPassed.OK
            return Revocation("good" if good else "revoked", details.revocation_date,
                              reason, details.ca_revoked, tuple(sources))
        if subindic == AdESPassed.OK:
            return Revocation("good", sources=tuple(sources))
        return Revocation("unknown", sources=tuple(sources))

    def _revinfo_missing(self, emb: _Signature, status: PdfSignatureStatus | None) -> bool:
        path = status.validation_path if status is not None else None
        certs = (list(path.iter_certs(include_root=False)) if path is not None
                 else self._chain_below_anchor(emb))
        answered = self.source.answered if self.source is not None else set()
        e = self.embedded
        return any(cert.ocsp_no_check_value is None
                   and cert.serial_number not in answered
                   and not _has_revinfo(cert, e.ocsps + e.cms_ocsps, e.crls + e.cms_crls)
                   for cert in certs)

    def _level(self, emb: _Signature, status: PdfSignatureStatus | None,
               ts_info: TimestampInfo | None,
               later_ts: list[tuple[_Signature, SignatureReport]]) -> str | None:
        if status is None or not (status.intact and status.valid):
            return None
        if ts_info is None or not ts_info.trusted:
            return "B-B"
        path = status.validation_path
        certs = (list(path.iter_certs(include_root=False)) if path is not None
                 else self._chain_below_anchor(emb))
        if not certs or not self._dss_covers(certs):
            return "B-T"
        if any(r.indication == PASSED for _, r in later_ts):
            return "B-LTA"
        return "B-LT"

    def _dss_covers(self, certs: Iterable[asn1_x509.Certificate]) -> bool:
        """B-LT: the DSS has revocation data for every certificate of the signer's path
        below the trust anchor, and each of those certificates is in the file."""
        known = {c.dump() for c in self.embedded.certs}
        for cert in certs:
            if cert.ocsp_no_check_value is not None:
                continue
            if not _has_revinfo(cert, self.embedded.ocsps, self.embedded.crls):
                return False
            if cert.dump() not in known and not self._in_some_cms(cert):
                return False
        return True

    def _chain_below_anchor(self, emb: _Signature) -> list[asn1_x509.Certificate]:
        """Without a validated path (e.g. revocation data too old to check today): the
        chain by issuer names through the file's certificates, if it reaches an anchor."""
        leaf = _signer_cert_safe(emb)
        if leaf is None:
            return []
        pool = list(self.embedded.certs) + [
            c.chosen for c in emb.signed_data["certificates"] or () if c.name == "certificate"]
        anchors = {r.subject.dump() for r in self.roots}
        chain = [leaf]
        while len(chain) < 10:
            if chain[-1].issuer.dump() in anchors:
                return chain
            nxt = next((c for c in pool if c.subject == chain[-1].issuer
                        and c.subject != c.issuer), None)
            if nxt is None or nxt in chain:
                return []
            chain.append(nxt)
        return []

    def _in_some_cms(self, cert: asn1_x509.Certificate) -> bool:
        der = cert.dump()
        for emb in self.reader.embedded_signatures:
            for choice in emb.signed_data["certificates"] or ():
                if choice.name == "certificate" and choice.chosen.dump() == der:
                    return True
        return False

    # -- integrity and modifications --------------------------------------------------------

    def _integrity(self, emb: _Signature, reasons: list[Reason],
                   ) -> tuple[Modification, AdESSubIndic | None]:
        """Digest, byte-range coverage and the difference analysis of later revisions.
        Returns the modification summary and a structural failure (or None)."""
        docmdp = emb.docmdp_level
        perm = docmdp.value if isinstance(docmdp, MDPPerm) else None
        try:
            emb.compute_integrity_info()
        except Exception as exc:  # noqa: BLE001 - byte range outside the file, etc.
            reasons.append(Reason("byte_range_invalid", short(exc)))
            return Modification("other", "unclear", docmdp_permission=perm,
                                permitted=False), AdESFailure.FORMAT_FAILURE
        coverage = emb.coverage
        diff = emb.diff_result
        info = emb.summarise_integrity_info()
        details: list[str] = []
        changed: tuple[str, ...] = ()
        if isinstance(diff, DiffResult):
            level = _MODIFICATION_LEVELS[diff.modification_level]
            changed = tuple(sorted(diff.changed_form_fields))
        elif isinstance(diff, SuspiciousModification):
            level = "other"
            details.append(short(diff, 600))
        else:
            level = "none" if coverage == SignatureCoverageLevel.ENTIRE_FILE else "other"
        permitted = bool(info.get("docmdp_ok")) and level != "other"
        structure: AdESSubIndic | None = None
        if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
            reasons.append(Reason("byte_range_invalid",
                                  "the signed byte range does not cover its whole revision "
                                  f"({_COVERAGE.get(coverage, 'unclear')})"))
            structure = AdESFailure.FORMAT_FAILURE
            permitted = False
        elif not permitted:
            changes = _describe_changes(self.reader, emb.signed_revision,
                                        details[0] if details else "")
            details.extend(changes)
            if level == "other":
                reasons.append(Reason("modified_after_signing",
                                      "; ".join(changes or details)))
            else:
                reasons.append(Reason("docmdp_violated",
                                      f"changes at level {level} exceed DocMDP P={perm}"))
            structure = AdESFailure.FORMAT_FAILURE
        return Modification(level, _COVERAGE.get(coverage, "unclear"), changed,
                            tuple(details), perm, permitted), structure

    def _broken_report(self, broken: _Broken) -> SignatureReport:
        return SignatureReport(
            field_name=broken.field_name, kind=broken.kind, revision=None,
            sub_filter=broken.sub_filter, signer=None, claimed_signing_time=None,
            timestamp=None, document_timestamps=(),
            integrity=Integrity(None, None, None, None), certificate_path=(),
            path_trusted=False, revocation=Revocation("unknown"), pades_level=None,
            modification=Modification("other", "unclear", permitted=False), certified=False,
            indication=FAILED, sub_indication=AdESFailure.FORMAT_FAILURE.name,
            reasons=(broken.reason,), best_signature_time=None)


# -- helpers --------------------------------------------------------------------------------

def _verdict(subindic: AdESSubIndic | None, structure: AdESSubIndic | None,
             ) -> tuple[str, str | None]:
    """ETSI indication and sub-indication; a structural failure overrides anything that is
    not already a failure (a hash failure stays a hash failure)."""
    if subindic is not None and subindic.status.name == "FAILED":
        return FAILED, subindic.standard_name
    if structure is not None:
        return FAILED, structure.standard_name
    if subindic is None:
        return INDETERMINATE, AdESIndeterminate.GENERIC.standard_name
    if subindic == AdESPassed.OK:
        return PASSED, None
    return INDETERMINATE, subindic.standard_name


_SUBINDIC_REASONS: dict[AdESSubIndic, str] = {
    AdESFailure.HASH_FAILURE: "hash_mismatch",
    AdESFailure.SIG_CRYPTO_FAILURE: "signature_invalid",
    AdESFailure.REVOKED: "certificate_revoked",
    AdESFailure.NOT_YET_VALID: "certificate_not_yet_valid",
    AdESFailure.FORMAT_FAILURE: "format_failure",
    AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND: "no_trusted_chain",
    AdESIndeterminate.NO_SIGNING_CERTIFICATE_FOUND: "no_signing_certificate",
    AdESIndeterminate.CHAIN_CONSTRAINTS_FAILURE: "certificate_constraints",
    AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE: "certificate_chain_failure",
    AdESIndeterminate.REVOKED_NO_POE: "certificate_revoked",
    AdESIndeterminate.REVOKED_CA_NO_POE: "ca_revoked",
    AdESIndeterminate.OUT_OF_BOUNDS_NO_POE: "certificate_expired",
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED: "certificate_expired",
    AdESIndeterminate.EXPIRED: "certificate_expired",
    AdESIndeterminate.NOT_YET_VALID: "certificate_not_yet_valid",
    AdESIndeterminate.TRY_LATER: "revocation_unknown",
    AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE: "revocation_unknown",
    AdESIndeterminate.NO_POE: "no_proof_of_existence",
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE: "weak_algorithm",
    AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE: "weak_algorithm",
    AdESIndeterminate.TIMESTAMP_ORDER_FAILURE: "timestamp_order",
    AdESIndeterminate.SIG_CONSTRAINTS_FAILURE: "signature_constraints",
}


def _reason_for(subindic: AdESSubIndic, status: Any, *, timestamp: bool,
                ts_failed: bool = False) -> Reason:
    code = _SUBINDIC_REASONS.get(subindic, "validation_failed")
    if ts_failed and status is not None and status.intact and status.valid \
            and status.trust_problem_indic is None:
        # The signature itself is fine; its timestamp is what failed.
        return Reason("timestamp_invalid", subindic.standard_name)
    if timestamp:
        return Reason(code, "document timestamp")
    return Reason(code)


def _dedupe(reasons: Iterable[Reason]) -> list[Reason]:
    seen: set[Reason] = set()
    out = []
    for r in reasons:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def _has_docmdp_reference(sig_object: generic.DictionaryObject) -> bool:
    """A signature dictionary with a DocMDP transform is a certification signature."""
    try:
        refs = sig_object.get("/Reference") or ()
        return any(r.get_object().get("/TransformMethod") == "/DocMDP" for r in refs)
    except Exception:  # noqa: BLE001 - malformed /Reference: not a certification
        return False


def _signer_cert_safe(emb: EmbeddedPdfSignature) -> asn1_x509.Certificate | None:
    try:
        return emb.signer_cert
    except Exception:  # noqa: BLE001 - no signer certificate in the CMS
        return None


def _name_part(name: asn1_x509.Name, key: str) -> str | None:
    value = name.native.get(key)
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return str(value) if value is not None else None


def _cert_info(cert: asn1_x509.Certificate | None) -> CertificateInfo | None:
    if cert is None:
        return None
    return CertificateInfo(
        common_name=_name_part(cert.subject, "common_name"),
        organization=_name_part(cert.subject, "organization_name"),
        serial=format(cert.serial_number, "x"),
        issuer_common_name=_name_part(cert.issuer, "common_name"),
        subject=cert.subject.human_friendly,
        not_before=cert.not_valid_before,
        not_after=cert.not_valid_after,
    )


def _cn(cert: asn1_x509.Certificate) -> str:
    return _name_part(cert.subject, "common_name") or cert.subject.human_friendly


def _path_names(status: SignatureStatus | None, emb: EmbeddedPdfSignature) -> tuple[str, ...]:
    """Signer first, trust anchor last; without a validated path, the chain as far as the
    certificates in the signature reach (by issuer name)."""
    if status is not None and status.validation_path is not None:
        certs = list(status.validation_path.iter_certs(include_root=True))
        return tuple(_cn(c) for c in reversed(certs))
    leaf = _signer_cert_safe(emb)
    if leaf is None:
        return ()
    pool = [c.chosen for c in emb.signed_data["certificates"] or ()
            if c.name == "certificate"]
    chain = [leaf]
    while len(chain) < 10 and chain[-1].issuer != chain[-1].subject:
        nxt = next((c for c in pool if c.subject == chain[-1].issuer), None)
        if nxt is None:
            break
        chain.append(nxt)
    return tuple(_cn(c) for c in chain)


def _integrity_of(status: SignatureStatus | None, emb: EmbeddedPdfSignature) -> Integrity:
    si = emb.signer_info
    digest = si["digest_algorithm"]["algorithm"].native
    mech = si["signature_algorithm"]["algorithm"].native
    if status is None:
        return Integrity(None, None, digest, mech)
    return Integrity(status.intact, status.valid, digest, mech)


def _tst_info(signed_data: asn1_cms.SignedData) -> asn1_tsp.TSTInfo | None:
    try:
        content = signed_data["encap_content_info"]["content"]
        parsed = content.parsed
        return parsed if isinstance(parsed, asn1_tsp.TSTInfo) else None
    except Exception:  # noqa: BLE001 - not a timestamp token
        return None


def _first_cert(signed_data: asn1_cms.SignedData) -> asn1_x509.Certificate | None:
    try:
        return generic_cms.extract_certificate_info(signed_data).signer_cert
    except Exception:  # noqa: BLE001
        return None


def _tsa_name(tst: asn1_tsp.TSTInfo, cert: asn1_x509.Certificate | None) -> str | None:
    if cert is not None:
        return _cn(cert)
    tsa = tst["tsa"]
    if tsa.native is not None and tsa.name == "directory_name":
        return _name_part(tsa.chosen, "common_name")
    return None


def _pdf_date(emb: EmbeddedPdfSignature, key: str) -> datetime | None:
    try:
        return generic.parse_pdf_date(emb.sig_object[key], strict=False)
    except Exception:  # noqa: BLE001 - absent or malformed date
        return None


def _has_revinfo(cert: asn1_x509.Certificate, ocsps: Iterable[asn1_ocsp.OCSPResponse],
                 crls: Iterable[asn1_crl.CertificateList]) -> bool:
    """Some OCSP response about `cert`, or a CRL from its issuer (matched by name)."""
    serial = cert.serial_number
    issuer_hash = cert.issuer.sha1
    for resp in ocsps:
        try:
            data = resp["response_bytes"]["response"].parsed["tbs_response_data"]
            for single in data["responses"]:
                cid = single["cert_id"]
                if cid["serial_number"].native != serial:
                    continue
                if cid["hash_algorithm"]["algorithm"].native == "sha1" \
                        and cid["issuer_name_hash"].native != issuer_hash:
                    continue
                return True
        except Exception:  # noqa: BLE001 - unusable response
            continue
    for c in crls:
        try:
            if c["tbs_cert_list"]["issuer"] == cert.issuer:
                return True
        except Exception:  # noqa: BLE001
            continue
    return False


_REF = re.compile(r"(?:Reference\(idnum=|IndirectObject\()(\d+), (?:generation=)?(\d+)\)")
_REVISION = re.compile(r"revision (\d+)")
_DICT_KEY = re.compile(r"Values for dict key (/[^ :]+) differ")


def _describe_changes(reader: PdfFileReader, signed_revision: int, diff_message: str = "",
                      limit: int = 12) -> list[str]:
    """What the revisions after `signed_revision` change, in words (new catalog, page
    content, annotations, fonts ...): the diff analysis only names object numbers. When it
    named the objects it could not explain, only those are described."""
    out: list[str] = []
    try:
        suspects = {(int(n), int(g)) for n, g in _REF.findall(diff_message)}
        key = _DICT_KEY.search(diff_message)
        if key:
            out.append(f"{key.group(1)} changed")
        rev_match = _REVISION.search(diff_message)
        suspect_rev = int(rev_match.group(1)) if rev_match and suspects else None
        base_root = reader.get_historical_resolver(signed_revision).root_ref
        for rev in range(signed_revision + 1, reader.xrefs.total_revisions):
            if suspect_rev is not None and rev != suspect_rev:
                continue
            hist = reader.get_historical_resolver(rev)
            items: list[str] = []
            if hist.root_ref != base_root:
                items.append("new document catalog (/Root replaced)")
                base_root = hist.root_ref
            freed = hist.refs_freed_in_revision()
            if freed:
                items.append(f"{len(freed)} object(s) deleted")
            contents = _page_content_refs(hist)
            for ref in sorted(hist.explicit_refs_in_revision(), key=lambda r: r.idnum):
                if suspects and (ref.idnum, ref.generation) not in suspects:
                    continue
                existed = reader.xrefs.get_historical_ref(ref, signed_revision) is not None
                kind = ("page content stream" if (ref.idnum, ref.generation) in contents
                        else _object_kind(hist(ref)))
                items.append(f"{'replaced' if existed else 'added'} {kind} (object "
                             f"{ref.idnum})")
            if items:
                shown = items[:limit] + ([f"... {len(items) - limit} more"]
                                         if len(items) > limit else [])
                out.append(f"revision {rev}: " + ", ".join(shown))
    except Exception as exc:  # noqa: BLE001 - best effort, the verdict does not depend on it
        logger.info("cannot describe changes: %s", exc)
    return out


def _page_content_refs(hist: Any, limit: int = 2000) -> set[tuple[int, int]]:
    """(number, generation) of the content streams of the pages in a revision."""
    found: set[tuple[int, int]] = set()
    seen = 0
    try:
        stack = [hist(hist.root_ref).raw_get("/Pages")]
        while stack and seen < limit:
            node_ref = stack.pop()
            seen += 1
            node = node_ref.get_object()
            if node.get("/Type") == "/Pages":
                stack.extend(node["/Kids"].raw_get(i) for i in range(len(node["/Kids"])))
                continue
            contents = node.raw_get("/Contents") if "/Contents" in node else None
            refs = contents.get_object() if isinstance(contents, generic.IndirectObject) \
                and isinstance(contents.get_object(), generic.ArrayObject) else contents
            items = ([refs.raw_get(i) for i in range(len(refs))]
                     if isinstance(refs, generic.ArrayObject) else [refs])
            for item in items:
                if isinstance(item, generic.IndirectObject):
                    found.add((item.idnum, item.generation))
    except Exception:  # noqa: BLE001 - best effort
        pass
    return found


def _object_kind(obj: Any) -> str:
    if isinstance(obj, generic.DictionaryObject):
        typ = obj.get("/Type")
        sub = obj.get("/Subtype")
        if typ == "/Annot" or (sub is not None and "/Rect" in obj):
            return f"annotation {str(sub).lstrip('/')}" if sub else "annotation"
        if "/FT" in obj:
            return f"form field {obj.get('/T', '')}".strip()
        if typ is not None:
            name = str(typ).lstrip("/")
            return f"{name} {str(sub).lstrip('/')}" if sub and name != "Page" else name
        if isinstance(obj, generic.StreamObject):
            return "stream"
        return "dictionary"
    return type(obj).__name__.replace("Object", "").lower() or "object"

