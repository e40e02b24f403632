"""`kyso verify`: report on stdout, one-line errors on stderr, exit codes 0/1/2/3."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import verify_docs as docs
from click.testing import CliRunner

import kyso.cli_verify  # noqa: F401 - registers `verify` (also imported by kyso/cli.py)
from kyso.cli import main


@pytest.fixture()
def run(tmp_path, pki, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no var/kyso.toml to pick up
    anchors = tmp_path / "root.pem"
    anchors.write_bytes(pki.root.pem)

    def invoke(data: bytes | None, *args: str, trust: bool = True) -> tuple[int, str, str]:
        target = tmp_path / "doc.pdf"
        if data is not None:
            target.write_bytes(data)
        argv = ["verify", str(target), *args] + (["--trust", str(anchors)] if trust else [])
        # No settings file: nothing may create a database in the working directory.
        result = CliRunner().invoke(main, argv, env={
            "KYSO_CONFIG": "", "KYSO_DEBUG": ""}, catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    return invoke


def test_valid_document_vietnamese_by_default(run, signed):
    code, out, err = run(signed["B-LT"], "--offline")
    assert code == 0, err
    assert "Chữ ký hợp lệ" in out and "Người ký: Nguyễn Thị Hồng Nhung" in out
    assert err == ""


def test_english_and_json(run, signed):
    code, out, _ = run(signed["B-LTA"], "--offline", "--lang", "en")
    assert code == 0 and "Valid signature" in out
    code, out, _ = run(signed["B-LTA"], "--offline", "--json")
    data = json.loads(out)
    assert code == 0 and data["indication"] == "TOTAL-PASSED"
    assert [s["kind"] for s in data["signatures"]] == ["signature", "document_timestamp"]


def test_attacked_document_exits_1(run, signed):
    code, out, _ = run(docs.isa_add_content(signed["B-LT"]), "--offline")
    assert code == 1 and "Chữ ký không hợp lệ" in out


def test_undecided_document_exits_2(run, signed):
    # B-B without revocation data and no lookups: INDETERMINATE.
    code, out, _ = run(signed["B-B"], "--offline")
    assert code == 2 and "Không xác định" in out


def test_without_settings_file_trust_still_works_offline(run, signed):
    code, _, err = run(signed["B-LT"])  # no --offline: no settings, so no lookups either
    assert code == 0, err


@pytest.mark.parametrize("data, needle", [
    (b"not a pdf at all", "not a PDF"),
    (docs.base_pdf(), "no signatures"),
])
def test_bad_input_exits_3_with_one_line(run, data, needle):
    code, out, err = run(data, "--offline")
    assert code == 3 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: ") and needle in err
    assert "Traceback" not in err


def test_bad_input_json_error(run):
    code, out, _ = run(b"hello", "--offline", "--json")
    assert code == 3 and json.loads(out)["error"]["code"] == "not_a_pdf"


def test_missing_file_and_bad_options_exit_3(run, tmp_path, signed):
    code, _, err = run(None, "--offline")
    assert code == 3 and "no such file" in err
    code, _, _ = run(signed["B-LT"], "--offline", "--lang", "fr")
    assert code == 3
    bad = tmp_path / "bad.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    result = CliRunner().invoke(main, ["verify", str(tmp_path / "doc.pdf"), "--offline",
                                       "--trust", str(bad)], env={"KYSO_CONFIG": ""})
    assert result.exit_code == 3 and "no PEM or DER certificate" in result.stderr


def test_too_large(run, tmp_path, signed):
    code, _, err = run(signed["B-LT"], "--offline", "--max-mb", "1")
    assert code == 0
    big = tmp_path / "doc.pdf"
    with open(big, "wb") as fh:
        fh.write(b"%PDF-1.7\n")
        fh.truncate(2 * 2**20)
    code, _, err = run(None, "--offline", "--max-mb", "1")
    assert code == 3 and "at most" in err


def test_database_roots_are_the_active_self_signed_cas(kyso_app):
    """The default trust anchors: the installation's root CA, not its issuing CAs."""
    from cryptography import x509

    from kyso.validation import trust_anchors

    roots = trust_anchors(kyso_app)
    names = [r.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
             for r in roots]
    assert "Test Root CA" in names and "Test Issuing CA" not in names
    assert all(r.subject == r.issuer for r in roots)


def test_cli_is_registered_or_importable():
    """kyso/cli.py imports the command modules at its end; until `cli_verify` is among them
    this test module's import does the registering."""
    assert "verify" in main.commands
    assert Path(kyso.cli_verify.__file__).name == "cli_verify.py"


def test_the_cli_size_default_is_the_library_limit() -> None:
    from kyso.cli_verify import DEFAULT_MAX_MB
    from signer.verify import DEFAULT_MAX_BYTES

    assert DEFAULT_MAX_MB * 2**20 == DEFAULT_MAX_BYTES
