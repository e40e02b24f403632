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
# ~1.5 ms a certificate lint takes; the rest is pkilint's decode and tree walk).  The validator
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
        report = LintReport(tuple(_convert(validator.validate(doc.root))))
        _release(doc)
        return report


def _release(doc: Document) -> None:
    """Take a linted document apart once its findings are copied out.

    Each PDUNode points to its parent and its document, which point back: every linted
    document would otherwise be cyclic garbage, left for the cycle collector (about a tenth of
    a lint's time, plus its traversals of everything else in the process). Emptied, the nodes
    are freed at once by reference counting. The findings are already plain strings."""
    stack = [doc.root]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        children = node.__dict__.get("children")
        if children:
            stack.extend(children.values())
        node.__dict__.clear()
    doc.__dict__.clear()


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
# A few pkilint validators override match() but begin it with `super().match(node)` (refusing
# when that refuses): NodeVisitor's checks are then a precondition of their match(), so they are
# narrowed the same way and their own match() runs in full on the remaining candidates. Which
# overrides qualify is read from their source (see _checks_super_first), never assumed.
# tests/ca/test_lint.py compares our findings with pkilint's own command line, which runs
# unpatched in a separate process.

_BASE_MATCH = NodeVisitor.match


def _checks_super_first(fn: object) -> bool:
    """True if `fn` is a match(self, node) whose first statement refuses when
    ``super().match(node)`` does: ``if not super().match(node): return False`` or
    ``return super().match(node) and ...``."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))  # type: ignore[arg-type]
    except (OSError, TypeError, SyntaxError):
        return False
    func = tree.body[0] if tree.body else None
    if not isinstance(func, ast.FunctionDef) or len(func.args.args) != 2 or not func.body:
        return False
    node_arg = func.args.args[1].arg

    def is_super_match(e: ast.expr) -> bool:
        return (isinstance(e, ast.Call) and isinstance(e.func, ast.Attribute)
                and e.func.attr == "match" and isinstance(e.func.value, ast.Call)
                and isinstance(e.func.value.func, ast.Name) and e.func.value.func.id == "super"
                and not e.func.value.args and not e.keywords and len(e.args) == 1
                and isinstance(e.args[0], ast.Name) and e.args[0].id == node_arg)

    first = func.body[0]
    if isinstance(first, ast.If):
        t = first.test
        return (isinstance(t, ast.UnaryOp) and isinstance(t.op, ast.Not)
                and is_super_match(t.operand) and len(first.body) == 1 and not first.orelse
                and isinstance(first.body[0], ast.Return)
                and isinstance(first.body[0].value, ast.Constant)
                and first.body[0].value.value is False)
    if isinstance(first, ast.Return) and isinstance(first.value, ast.BoolOp):
        return isinstance(first.value.op, ast.And) and is_super_match(first.value.values[0])
    return False


_prefilterable: dict[type, bool] = {}
_super_first: dict[object, bool] = {}


def _base_checks_apply(cls: type) -> bool:
    """True when NodeVisitor.match's checks are a precondition of cls.match: every match() on
    the way down the MRO to NodeVisitor's checks super().match(node) first."""
    known = _prefilterable.get(cls)
    if known is None:
        known = False
        for klass in cls.__mro__:
            fn = klass.__dict__.get("match")
            if fn is None:
                continue
            if fn is _BASE_MATCH:
                known = True
                break
            ok = _super_first.get(fn)
            if ok is None:
                ok = _super_first[fn] = _checks_super_first(fn)
            if not ok:
                break
        _prefilterable[cls] = known
    return known


def _may_match(v: Validator, path: str, pdu_type: type) -> bool:
    if not _base_checks_apply(type(v)):
        return True
    if v._path is not None and v._path != path:
        return False
    if v._path_re is not None and v._path_re.match(path) is None:
        return False
    return v._pdu_class is None or issubclass(pdu_type, v._pdu_class)


def _settled(v: Validator) -> bool:
    """True when _may_match already decided everything NodeVisitor.match would check."""
    return type(v).match is _BASE_MATCH and v._pdu_supertype is None and v._predicate is None


def _candidates(self: ValidatorContainer, key: tuple[str, type]) -> list[tuple[Validator, bool]]:
    index = self.__dict__.get("_kyso_candidates")
    if index is None:
        index = self.__dict__["_kyso_candidates"] = {}
    candidates = index[key] = [(v, _settled(v)) for v in self.validators if _may_match(v, *key)]
    return candidates


def _walk(self: ValidatorContainer, index: dict[tuple[str, type], list[tuple[Validator, bool]]],
          node: PDUNode, results: list[ValidationResult]) -> None:
    # == ValidatorContainer._validate_rec, asking only the candidates for (path, value class)
    key = (node.path, type(node.pdu))
    candidates = index.get(key)
    if candidates is None:
        candidates = _candidates(self, key)
    for v, settled in candidates:
        if settled or v.match(node):
            result = v.validate_wrapper(node)
            if isinstance(result, list):
                results += result
            else:
                results.append(result)
    children = node.children
    if children:
        for child_node in children.values():
            _walk(self, index, child_node, results)


def _validate_rec(self: ValidatorContainer, node: PDUNode, results: list[ValidationResult]) -> (
    None
):
    index = self.__dict__.get("_kyso_candidates")
    if index is None:
        index = self.__dict__["_kyso_candidates"] = {}
    _walk(self, index, node, results)


ValidatorContainer._validate_rec = _validate_rec  # type: ignore[method-assign]


# -- speed: the `validators` package, which pkilint checks URIs, DNS names and e-mail addresses
# with, looks up the signature of its own functions (inspect.getfullargspec) each time one of them
# says no -- as its URL check's IP-address tries do for every host name. A function's signature
# does not change, so it is looked up once; what the checks return is the same.


def _cache_validators_argspec() -> None:
    import functools
    import inspect

    try:
        from validators import utils
    except ImportError:  # pragma: no cover - pkilint depends on validators
        return
    if getattr(utils, "getfullargspec", None) is inspect.getfullargspec:
        utils.getfullargspec = functools.cache(inspect.getfullargspec)


_cache_validators_argspec()
