"""In-process pkilint linting of certificates, CRLs and OCSP responses before issuance."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pkilint import loader, pkix
from pkilint.document import Document, NodeVisitor, PDUNode
from pkilint.pkix import certificate, crl, extension, name, ocsp
from pkilint.validation import (
    DecodingValidator,
    ValidationResult,
    Validator,
    ValidatorContainer,
)

__all__ = [
    "LintFinding",
    "LintReport",
    "lint_certificate",
    "lint_crl",
    "lint_ocsp_response",
]

_BLOCKING_SEVERITIES = frozenset({"FATAL", "ERROR"})


@dataclass(frozen=True)
class LintFinding:
    """A single pkilint finding."""

    severity: str  # "FATAL" | "ERROR" | "WARNING" | "NOTICE" | "INFO" | "DEBUG"
    code: str  # pkilint finding code, e.g. "pkix.certificate_serial_number_out_of_range"
    message: str | None
    node_path: str  # where in the ASN.1 structure, e.g. "certificate.tbsCertificate.serialNumber"
    validator: str = ""  # name of the pkilint validator that raised it (diagnostics only)

    def __str__(self) -> str:
        text = f"{self.severity} {self.code} at {self.node_path}"
        return f"{text}: {self.message}" if self.message else text


@dataclass(frozen=True)
class LintReport:
    """All findings (every severity, including DEBUG) for one linted document."""

    findings: tuple[LintFinding, ...]

    @property
    def errors(self) -> tuple[LintFinding, ...]:
        """Findings that must block issuance (severity ERROR or FATAL)."""
        return tuple(f for f in self.findings if f.severity in _BLOCKING_SEVERITIES)

    @property
    def ok(self) -> bool:
        """True if there are no ERROR or FATAL findings."""
        return not self.errors

    def codes(self, *severities: str) -> frozenset[str]:
        """Finding codes, optionally restricted to the given severities."""
        return frozenset(
            f.code for f in self.findings if not severities or f.severity in severities
        )

    def summary(self) -> str:
        """One line per blocking finding: ``"ERROR code at path: message"``."""
        return "\n".join(str(f) for f in self.errors)


# --- validator construction ---------------------------------------------------------------
#
# These mirror, line for line, what pkilint's own CLIs build (pkilint/bin/lint_pkix_cert.py,
# lint_crl.py with "-p PKIX", lint_ocsp_response.py), so in-process results agree with the CLI.
# Each tree is built once and cached (building costs ~0.2-0.6 ms, a sizeable fraction of the
# ~2.4 ms a certificate lint takes; the rest is pkilint's decode and tree walk).  The validator
# trees hold only configuration (no per-document state): all per-document state lives on the
# Document/PDUNode objects created per call, so one tree can be used from many threads.


def _build_certificate_validator() -> Validator:
    # == pkilint.bin.lint_pkix_cert.main
    return certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
        ),
        [
            certificate.create_issuer_validator_container([]),
            certificate.create_validity_validator_container(),
            certificate.create_subject_validator_container([]),
            certificate.create_extensions_validator_container([]),
            certificate.create_spki_validator_container([]),
        ],
    )


def _build_crl_validator() -> Validator:
    # == pkilint.bin.lint_crl.main with "--profile PKIX" (the CRL/ARL type only matters for BR)
    return crl.create_pkix_crl_validator_container(
        [
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [
            crl.create_issuer_validator_container([]),
            crl.create_validity_validator_container([]),
            crl.create_extensions_validator_container([]),
        ],
    )


def _build_ocsp_response_validator() -> Validator:
    # == pkilint.bin.lint_ocsp_response.main
    return ocsp.create_pkix_ocsp_response_validator_container(
        [
            ocsp.create_response_decoder(),
            pkix.create_attribute_decoder(name.ATTRIBUTE_TYPE_MAPPINGS),
            pkix.create_extension_decoder(extension.EXTENSION_MAPPINGS),
        ],
        [],
    )


class _Linter:
    """A lazily built, cached validator tree plus the pkilint loader for one document type."""

    def __init__(
        self,
        build: Callable[[], Validator],
        doc_loader: loader.DocumentLoader,
        root_name: str,
    ) -> None:
        self._build = build
        self._loader = doc_loader
        self._root_name = root_name  # name pkilint gives the root PDU node
        self._validator: Validator | None = None
        self._lock = threading.Lock()

    @property
    def validator(self) -> Validator:
        v = self._validator
        if v is None:
            with self._lock:
                if self._validator is None:
                    self._validator = self._build()
                v = self._validator
        return v

    def lint(self, der: bytes) -> LintReport:
        validator = self.validator
        try:
            doc: Document = self._loader.load_der_document(bytes(der), self._root_name)
        except ValueError as e:
            # The CLI prints "Failed to load ..." and exits 1; for issuance that must block.
            finding = LintFinding(
                severity="FATAL",
                code=DecodingValidator.VALIDATION_ASN1_DECODING_FAILURE.code,
                message=f"failed to decode DER: {e}",
                node_path=self._root_name,
                validator="loader",
            )
            return LintReport((finding,))
        return LintReport(tuple(_convert(validator.validate(doc.root))))


def _convert(results: Iterable[ValidationResult]) -> Iterable[LintFinding]:
    for result in results:
        for fd in result.finding_descriptions:
            yield LintFinding(
                severity=fd.finding.severity.name,
                code=fd.finding.code,
                message=fd.message,
                node_path=result.node.path,
                validator=str(result.validator),
            )


_CERTIFICATE = _Linter(
    _build_certificate_validator, loader.RFC5280CertificateDocumentLoader(), "certificate"
)
_CRL = _Linter(
    _build_crl_validator, loader.RFC5280CertificateListDocumentLoader(), "certificateList"
)
_OCSP_RESPONSE = _Linter(
    _build_ocsp_response_validator, loader.RFC6960OCSPResponseDocumentLoader(), "oCSPResponse"
)


def lint_certificate(der: bytes) -> LintReport:
    """Lint a DER certificate with the same validators as ``lint_pkix_cert lint``."""
    return _CERTIFICATE.lint(der)


def lint_crl(der: bytes) -> LintReport:
    """Lint a DER CRL with the same validators as ``lint_crl lint -p PKIX``."""
    return _CRL.lint(der)


def lint_ocsp_response(der: bytes) -> LintReport:
    """Lint a DER OCSPResponse with the same validators as ``lint_ocsp_response lint``."""
    return _OCSP_RESPONSE.lint(der)


def warm_up() -> None:
    """Build all validator trees now (e.g. at CA start-up) instead of on first use."""
    for linter in (_CERTIFICATE, _CRL, _OCSP_RESPONSE):
        _ = linter.validator


# -- speed: ask only the validators that can match a node ------------------------------------
#
# pkilint's ValidatorContainer asks every validator whether it matches every node (about 5,500
# calls per certificate). A validator using NodeVisitor's own match() says no at once when the
# node's path, path pattern or ASN.1 class differs from what it is bound to. Those three depend
# only on (path, class of the node's value), so the candidates are computed once per such pair;
# a candidate with further conditions (supertype, predicate, its own match()) still runs its
# full match(): same validators, same order, same findings.
# tests/ca/test_lint.py compares our findings with pkilint's own command line, which runs
# unpatched in a separate process.

_BASE_MATCH = NodeVisitor.match


def _may_match(v: Validator, path: str, pdu_type: type) -> bool:
    if type(v).match is not _BASE_MATCH:
        return True
    if v._path is not None and v._path != path:
        return False
    if v._path_re is not None and v._path_re.match(path) is None:
        return False
    return v._pdu_class is None or issubclass(pdu_type, v._pdu_class)


def _settled(v: Validator) -> bool:
    """True when _may_match already decided everything NodeVisitor.match would check."""
    return type(v).match is _BASE_MATCH and v._pdu_supertype is None and v._predicate is None


def _validate_rec(self: ValidatorContainer, node: PDUNode, results: list[ValidationResult]) -> (
    None
):
    index = self.__dict__.get("_kyso_candidates")
    if index is None:
        index = self.__dict__["_kyso_candidates"] = {}
    key = (node.path, type(node.pdu))
    candidates = index.get(key)
    if candidates is None:
        candidates = index[key] = [(v, _settled(v)) for v in self.validators
                                   if _may_match(v, *key)]
    for v, settled in candidates:
        if settled or v.match(node):
            result = v.validate_wrapper(node)
            if isinstance(result, list):
                results += result
            else:
                results.append(result)
    for child_node in node.children.values():
        self._validate_rec(child_node, results)


ValidatorContainer._validate_rec = _validate_rec  # type: ignore[method-assign]
