"""The OpenAPI document of /api/v1 against the implementation: the routes it lists, the
vocabularies of the report, and schemathesis-generated requests to every operation."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
import schemathesis
from asn1crypto import crl as asn1_crl
from cryptography import x509
from flask import Flask
from hypothesis import HealthCheck, Phase, given, settings
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from signer import verify as signer_verify
from signer.report import _MESSAGES
from web import openapi
from web.openapi import document

CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance,
          content_type_conformance]
MAX_EXAMPLES = 25
OPERATIONS = sorted((method.upper(), path) for path, item in document()["paths"].items()
                    for method in item)


@pytest.fixture(scope="module")
def spec(app: Flask) -> Any:
    """The document as served at /api/v1/openapi.json, loaded by schemathesis (which then
    sends its requests to the same WSGI app)."""
    return schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)


def _flask_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_document_lists_exactly_the_routes_of_the_blueprint(app: Flask) -> None:
    doc = document()
    base = doc["servers"][0]["url"]
    documented = {(method.upper(), base + path) for path, item in doc["paths"].items()
                  for method in item}
    served = {(method, _flask_path(rule.rule)) for rule in app.url_map.iter_rules()
              if rule.rule.startswith(base + "/")
              for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}}
    assert documented == served
    # Every path parameter of a route is documented, and nothing else.
    for path, item in doc["paths"].items():
        for operation in item.values():
            names = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), path


def test_document_is_valid_openapi(spec: Any) -> None:
    spec.validate()
    assert spec.raw_schema == document()


def test_every_error_status_has_the_error_schema() -> None:
    doc = document()
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if status.startswith("2"):  # success answers have their own schemas
                    continue
                ref = response["$ref"].rsplit("/", 1)[-1]
                content = doc["components"]["responses"][ref]["content"]
                assert content["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (method, path, status)


# -- the report's vocabularies and fields, against their sources ---------------------------

def test_report_vocabularies_match_the_verifier() -> None:
    assert set(openapi.SUB_INDICATIONS) == {
        s.standard_name for enum in (AdESFailure, AdESIndeterminate) for s in enum}
    for lang in ("vi", "en"):
        assert set(openapi.REASON_CODES) == {
            k.removeprefix("reason.") for k in _MESSAGES[lang] if k.startswith("reason.")}
    assert set(openapi.REPORT_REVOCATION_REASONS) == set(asn1_crl.CRLReason._map.values())
    assert set(openapi.MODIFICATION_LEVELS) == set(signer_verify._MODIFICATION_LEVELS.values())
    assert set(openapi.COVERAGE_LEVELS) == set(signer_verify._COVERAGE.values())
    assert set(openapi.INDICATIONS) == {signer_verify.PASSED, signer_verify.FAILED,
                                        signer_verify.INDETERMINATE}
    assert set(openapi.CERTIFICATE_REVOCATION_REASONS) == {f.value for f in x509.ReasonFlags}


@pytest.mark.parametrize(("schema", "cls", "extra"), [
    ("VerificationReport", signer_verify.VerificationReport, {"passed"}),
    ("SignatureReport", signer_verify.SignatureReport, set()),
    ("CertificateInfo", signer_verify.CertificateInfo, set()),
    ("TimestampInfo", signer_verify.TimestampInfo, set()),
    ("DocumentTimestampRef", signer_verify.DocumentTimestampRef, set()),
    ("Integrity", signer_verify.Integrity, set()),
    ("Revocation", signer_verify.Revocation, set()),
    ("Modification", signer_verify.Modification, set()),
    ("Reason", signer_verify.Reason, set()),
])
def test_report_schemas_have_exactly_the_dataclass_fields(schema: str, cls: type,
                                                          extra: set[str]) -> None:
    properties = document()["components"]["schemas"][schema]["properties"]
    assert set(properties) == {f.name for f in dataclasses.fields(cls)} | extra


# -- generated requests ---------------------------------------------------------------------

def _run(operation: Any, mode: GenerationMode) -> None:
    checks = CHECKS + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        case.call_and_validate(checks=checks)

    run()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_generated_valid_requests_conform(spec: Any, method: str, path: str) -> None:
    _run(spec[path][method], GenerationMode.POSITIVE)


@pytest.mark.parametrize(("method", "path"), [
    op for op in OPERATIONS if op[1].startswith(("/verify", "/certificates", "/sign"))])
def test_generated_invalid_requests_get_a_documented_4xx(spec: Any, method: str,
                                                         path: str) -> None:
    _run(spec[path][method], GenerationMode.NEGATIVE)
