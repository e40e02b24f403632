"""Acceptance tests of the `kyso` command line, run as subprocesses like an operator would.

Everything is checked from outside: exit codes, what is printed, the files written, and
independent tools (openssl, pkilint's lint_pkix_cert, OpenSC's pkcs11-tool) on the results.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import KYSO, LINT_PKIX_CERT, KysoData, new_data_dir
from cryptography import x509
from cryptography.hazmat.primitives import serialization

ORG = "Ủy ban nhân dân phường Bến Thành"
OFFICIAL_ARGS = (
    "--name", "Nguyễn Thị Hồng Nhung", "--org", ORG, "--unit", "Văn phòng",
    "--locality", "Thành phố Hồ Chí Minh", "--email", "nhung@benthanh.hochiminhcity.gov.vn",
    "--title", "Chánh Văn phòng",
)
# Distinctive, so finding it anywhere cannot be a coincidence.
OFFICIAL_PIN = "Nhung-PIN-7391-5046"
TLS_SUBJECT = "CN=dvc.hochiminhcity.gov.vn,O=Trung tâm Chuyển đổi số,C=VN"
SIGNING_SUBJECT = "CN=Trần Văn Bình,O=Sở Nội vụ TP.HCM,C=VN"
PEM_CERT = re.compile(
    rb"-----BEGIN CERTIFICATE-----\r?\n.+?-----END CERTIFICATE-----\r?\n?", re.DOTALL
)
HELPER = Path(__file__).with_name("issue_many.py")


# -- helpers -----------------------------------------------------------------------------

def run(*args: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, input=input,
                          timeout=120)


def make_csr(directory: Path, name: str, key: str = "rsa:2048") -> Path:
    """A CSR made by openssl, a tool independent of kyso."""
    csr = directory / f"{name}.csr"
    proc = run("openssl", "req", "-new", "-newkey", key, "-nodes", "-keyout",
               directory / f"{name}.key", "-out", csr, "-subj", "/CN=not used by kyso")
    assert proc.returncode == 0, proc.stderr
    return csr


def serial_of(output: str) -> str:
    match = re.search(r"^serial: ([0-9a-f]+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def split_pem(data: bytes) -> list[bytes]:
    return PEM_CERT.findall(data)


@pytest.fixture(scope="module")
def kyso_data(tmp_path_factory: pytest.TempPathFactory) -> KysoData:
    """`kyso init` + `kyso demo setup` in a fresh directory (and PostgreSQL schema), once.

    Kept here, not in a tests/cli/conftest.py: a second module named `conftest` would shadow
    tests/conftest.py for test modules that do `from conftest import ...`.
    """
    if shutil.which("pkcs11-tool") is None or shutil.which("openssl") is None:
        pytest.fail("pkcs11-tool (opensc) and openssl are needed by the CLI tests")
    return new_data_dir(tmp_path_factory.mktemp("kyso-cli"))


@pytest.fixture(scope="module")
def chain(kyso_data: KysoData, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """issuing.pem and root.pem, cut from `kyso ca chain issuing --out`."""
    directory = tmp_path_factory.mktemp("chain")
    out = directory / "chain.pem"
    kyso_data.run("ca", "chain", "issuing", "--out", out)
    issuing, root = split_pem(out.read_bytes())
    (directory / "issuing.pem").write_bytes(issuing)
    (directory / "root.pem").write_bytes(root)
    return {"chain": out, "issuing": directory / "issuing.pem", "root": directory / "root.pem"}


def openssl_verify(chain: dict[str, Path], cert: Path, purpose: str | None = None) -> None:
    args = ["openssl", "verify", "-CAfile", chain["root"], "-untrusted", chain["issuing"]]
    if purpose:
        args += ["-purpose", purpose]
    proc = run(*args, cert)
    assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr


def assert_lints_clean(pem: str) -> None:
    """pkilint's own command: no ERROR or FATAL finding (exit 1 only means 'some finding')."""
    proc = run(LINT_PKIX_CERT, "lint", "-", input=pem)
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    assert "BEGIN" not in proc.stderr and "rror parsing" not in proc.stderr, proc.stderr
    bad = [line for line in proc.stdout.splitlines() if re.search(r"\((ERROR|FATAL)\)", line)]
    assert bad == [], proc.stdout


def public_key_der(pem: str) -> bytes:
    return x509.load_pem_x509_certificate(pem.encode()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def issue_tls(kyso_data: KysoData, tmp_path: Path, name: str = "tls", *extra: str) -> str:
    csr = make_csr(tmp_path, name)
    result = kyso_data.run("cert", "issue", "--ca", "issuing", "--profile", "tls-server",
                           "--csr", csr, "--subject", TLS_SUBJECT,
                           "--dns", "dvc.hochiminhcity.gov.vn", *extra)
    return serial_of(result.stdout)


@pytest.fixture(scope="module")
def official(kyso_data: KysoData, tmp_path_factory: pytest.TempPathFactory) -> dict:
    directory = tmp_path_factory.mktemp("official")
    pin_file = directory / "pin"
    pin_file.write_text(OFFICIAL_PIN + "\n")
    result = kyso_data.run("official", "add", *OFFICIAL_ARGS, "--pin-file", pin_file)
    match = re.search(r"^official: (\d+)$", result.stdout, re.MULTILINE)
    assert match, result.output
    return {"id": int(match.group(1)), "serial": serial_of(result.stdout),
            "pin_file": pin_file, "output": result.output}


# -- setup is idempotent -----------------------------------------------------------------

def ca_identity(kyso_data: KysoData) -> dict[str, tuple[str, str]]:
    cas = kyso_data.run("ca", "list", "--json").json()
    return {c["name"]: (c["serial"], c["sha256_fingerprint"]) for c in cas}  # type: ignore[union-attr]


def test_init_and_demo_setup_twice_reuse_everything(kyso_data: KysoData) -> None:
    data = kyso_data.data_dir
    assert "data directory ready" in kyso_data.init_output
    assert ("demo ceremonies run: demo-root, demo-issuing, demo-root-crl-1, "
            "demo-service-certs") in kyso_data.demo_output
    for name in ("kyso.toml", "secrets/hsm-user.pin", "secrets/hsm-so.pin",
                 "softhsm/softhsm2.conf", "published/ca/root.crt", "published/ca/issuing.crt"):
        assert (data / name).is_file(), name
    if kyso_data.database_url is None:
        assert (data / "kyso.db").is_file()

    pins = {p: (data / "secrets" / p).read_bytes() for p in ("hsm-user.pin", "hsm-so.pin")}
    settings_text = (data / "kyso.toml").read_bytes()
    token_dirs = sorted(p.name for p in (data / "softhsm" / "tokens").iterdir())
    objects = kyso_data.token_objects()
    before = ca_identity(kyso_data)
    root_before = kyso_data.run("ca", "show", "root", "--json").json()
    assert set(before) == {"root", "issuing"}

    again = kyso_data.run("init", "--data-dir", data)
    assert "data directory ready" in again.stdout
    demo = kyso_data.run("--config", kyso_data.config, "demo", "setup")
    assert "nothing to do" in demo.stdout and "ceremonies run" not in demo.stdout

    assert ca_identity(kyso_data) == before
    assert kyso_data.run("ca", "show", "root", "--json").json() == root_before
    assert {p: (data / "secrets" / p).read_bytes() for p in pins} == pins
    assert (data / "kyso.toml").read_bytes() == settings_text
    assert sorted(p.name for p in (data / "softhsm" / "tokens").iterdir()) == token_dirs
    after = kyso_data.token_objects()
    assert after.count("Private Key Object") == objects.count("Private Key Object")
    assert sorted(re.findall(r"ID:\s+(\w+)", after)) == sorted(re.findall(r"ID:\s+(\w+)",
                                                                           objects))


def test_demo_setup_completes_a_half_made_hierarchy(tmp_path) -> None:
    """A first run that stopped after the root: the next one adds the issuing CA, keeps the root."""
    data = new_data_dir(tmp_path, "kyso_cli_partial", demo=False)
    data.run("ca", "create-root", "--name", "root", "--subject",
             "CN=Kyso Demo Root CA,O=Kyso Demo,C=VN")
    root = data.run("ca", "show", "root", "--json").json()
    result = data.run("demo", "setup")
    assert "demo ceremonies run: demo-issuing" in result.stdout
    assert ca_identity(data)["root"] == (root["serial"], root["sha256_fingerprint"])  # type: ignore[index]
    assert set(ca_identity(data)) == {"root", "issuing"}
    listing = data.token_objects()
    assert re.findall(r"label:\s+(ca-\S+)", listing).count("ca-root") == 2  # private + public
    assert re.findall(r"label:\s+(ca-\S+)", listing).count("ca-issuing") == 2
    assert "nothing to do" in data.run("demo", "setup").stdout


def test_ca_keys_are_sensitive_and_never_extractable(kyso_data: KysoData, official) -> None:
    """pkcs11-tool sees only the CA and service keys as private keys on the online token (the
    root's is on its own token): officials' keys exist only wrapped."""
    listing = kyso_data.token_objects()
    blocks = re.split(r"\n(?=\S)", listing)
    private = [b for b in blocks if b.startswith("Private Key Object")]
    labels = sorted(re.search(r"label:\s+(\S+)", b).group(1) for b in private)  # type: ignore[union-attr]
    assert labels == ["ca-issuing", "kyso-audit", "ocsp-issuing", "tsa-issuing"], listing
    for block in private:
        assert re.search(r"Access:\s+sensitive, always sensitive, never extractable", block), block
    assert official["id"] >= 1  # an official exists, and no private key object of theirs


# -- CAs ---------------------------------------------------------------------------------

def test_ca_list_and_show(kyso_data: KysoData) -> None:
    listing = kyso_data.run("ca", "list").stdout
    assert re.search(r"^root\s+root\s+ec-p384\s", listing, re.MULTILINE), listing
    assert re.search(r"^issuing\s+issuing\s+ec-p256\s", listing, re.MULTILINE), listing
    assert "Kyso Demo Root CA" in listing

    shown = kyso_data.run("ca", "show", "issuing").stdout
    assert re.search(r"^parent:\s+root$", shown, re.MULTILINE), shown
    assert re.search(r"^kind:\s+issuing$", shown, re.MULTILINE), shown
    info = kyso_data.run("ca", "show", "issuing", "--json").json()
    assert info["parent"] == "root" and info["kind"] == "issuing"  # type: ignore[index]
    assert info["status"] == "active"  # type: ignore[index]
    assert "Trung tâm Chuyển đổi số" in info["subject"]  # type: ignore[index]
    published = kyso_data.data_dir / "published" / "ca" / "issuing.crt"
    cert = x509.load_der_x509_certificate(published.read_bytes())
    assert format(cert.serial_number, "x") == info["serial"]  # type: ignore[index]


def test_ca_chain_is_leaf_most_first_and_verifies(kyso_data: KysoData, chain) -> None:
    certs = [x509.load_pem_x509_certificate(p) for p in split_pem(chain["chain"].read_bytes())]
    assert len(certs) == 2
    assert "Issuing" in certs[0].subject.rfc4514_string()
    assert certs[0].issuer == certs[1].subject == certs[1].issuer
    proc = run("openssl", "verify", "-CAfile", chain["root"], chain["issuing"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root_chain = chain["chain"].with_name("root-chain.pem")
    kyso_data.run("ca", "chain", "root", "--out", root_chain)
    assert split_pem(root_chain.read_bytes()) == [chain["root"].read_bytes()]


@pytest.mark.parametrize("command", [("ca", "show"), ("ca", "show", "--json"),
                                     ("ca", "chain", "--out", "x.pem")])
def test_unknown_ca(kyso_data: KysoData, command: tuple[str, ...]) -> None:
    result = kyso_data.fail(*command[:2], "no-such-ca", *command[2:])
    assert "no-such-ca" in result.stderr
    assert "root" in result.stderr and "issuing" in result.stderr


# -- issuance ----------------------------------------------------------------------------

def test_issue_official_signing_from_openssl_csr(kyso_data: KysoData, chain, tmp_path) -> None:
    csr = make_csr(tmp_path, "signing")
    out = tmp_path / "signing.pem"
    result = kyso_data.run("cert", "issue", "--ca", "issuing", "--profile", "official-signing",
                           "--csr", csr, "--subject", SIGNING_SUBJECT,
                           "--email", "binh@noivu.hochiminhcity.gov.vn", "--out", out)
    serial = serial_of(result.stdout)
    assert f"certificate written to {out}" in result.stdout
    assert "Trần Văn Bình" in result.stdout
    pem = out.read_text()
    assert pem.startswith("-----BEGIN CERTIFICATE-----")
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert format(cert.serial_number, "x") == serial
    # The key is the CSR's; the subject is the approved one, not the CSR's.
    key_pub = run("openssl", "pkey", "-in", tmp_path / "signing.key", "-pubout").stdout
    assert public_key_der(pem) == serialization.load_pem_public_key(
        key_pub.encode()).public_bytes(serialization.Encoding.DER,
                                       serialization.PublicFormat.SubjectPublicKeyInfo)
    assert "not used by kyso" not in cert.subject.rfc4514_string()
    openssl_verify(chain, out)
    openssl_verify(chain, out, purpose="smimesign")
    assert_lints_clean(pem)
    shown = kyso_data.cert(serial)
    assert shown["status"] == "valid" and shown["profile"] == "official-signing"
    assert shown["subject"] == "CN=Trần Văn Bình,O=Sở Nội vụ TP.HCM,C=VN"
    assert shown["pem"] == pem


def test_issue_tls_server_with_dns(kyso_data: KysoData, chain, tmp_path) -> None:
    csr = make_csr(tmp_path, "tls", key="ec:" + str(_ec_params(tmp_path)))
    out = tmp_path / "tls.pem"
    result = kyso_data.run("cert", "issue", "--ca", "issuing", "--profile", "tls-server",
                           "--csr", csr, "--subject", TLS_SUBJECT,
                           "--dns", "dvc.hochiminhcity.gov.vn",
                           "--dns", "www.dvc.hochiminhcity.gov.vn", "--out", out)
    serial_of(result.stdout)
    cert = x509.load_pem_x509_certificate(out.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["dvc.hochiminhcity.gov.vn",
                                                     "www.dvc.hochiminhcity.gov.vn"]
    openssl_verify(chain, out, purpose="sslserver")
    proc = run("openssl", "verify", "-CAfile", chain["root"], "-untrusted", chain["issuing"],
               "-verify_hostname", "www.dvc.hochiminhcity.gov.vn", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_lints_clean(out.read_text())


def _ec_params(directory: Path) -> Path:
    params = directory / "p256.pem"
    proc = run("openssl", "ecparam", "-name", "prime256v1", "-out", params)
    assert proc.returncode == 0, proc.stderr
    return params


# -- officials ---------------------------------------------------------------------------

def test_official_add(kyso_data: KysoData, official, chain, tmp_path) -> None:
    assert re.search(r"^serial: [0-9a-f]+$", official["output"], re.MULTILINE)
    shown = kyso_data.cert(official["serial"])
    assert shown["status"] == "valid"
    assert shown["official_id"] == official["id"]
    assert shown["profile"] == "official-signing"
    assert shown["organization"] == ORG
    for part in ("CN=Nguyễn Thị Hồng Nhung", "T=Chánh Văn phòng", f"O={ORG}", "OU=Văn phòng",
                 "L=Thành phố Hồ Chí Minh", "C=VN"):
        assert part in shown["subject"], shown["subject"]
    cert_file = tmp_path / "official.pem"
    cert_file.write_text(shown["pem"])
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == \
        "Nguyễn Thị Hồng Nhung"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.RFC822Name) == ["nhung@benthanh.hochiminhcity.gov.vn"]
    openssl_verify(chain, cert_file)
    assert_lints_clean(shown["pem"])
    info = kyso_data.run("official", "show", str(official["id"]), "--json").json()
    assert info["name"] == "Nguyễn Thị Hồng Nhung" and not info["locked"]  # type: ignore[index]


def test_official_pin_is_stored_nowhere(kyso_data: KysoData, official) -> None:
    pin = OFFICIAL_PIN.encode()
    assert OFFICIAL_PIN not in official["output"]
    dump = kyso_data.database_dump()
    assert "Nguyễn Thị Hồng Nhung".encode() in dump  # the dump does see what is stored
    assert pin not in dump
    for encoded in (pin, OFFICIAL_PIN.encode("utf-16-le"), base64.b64encode(pin)):
        assert encoded not in dump
    for path in kyso_data.data_dir.rglob("*"):  # database file, WAL, token, published files
        if path.is_file():
            content = path.read_bytes()
            assert pin not in content and base64.b64encode(pin) not in content, path


def test_official_add_reads_the_pin_from_stdin(kyso_data: KysoData) -> None:
    result = kyso_data.run("official", "add", "--name", "Lê Văn Cường", "--org", ORG,
                           "--email", "cuong@benthanh.hochiminhcity.gov.vn", "--pin-file", "-",
                           "--json", input="Cuong-PIN-20240611\n")
    created = result.json()
    assert created["subject"].startswith("CN=Lê Văn Cường")  # type: ignore[index]
    assert "Cuong-PIN-20240611" not in result.output
    assert kyso_data.cert(created["serial"])["official_id"] == created["official_id"]  # type: ignore[index]


# -- renewal, revocation, hold -----------------------------------------------------------

def test_renew_same_key(kyso_data: KysoData, chain, tmp_path) -> None:
    old = issue_tls(kyso_data, tmp_path)
    out = tmp_path / "renewed.pem"
    new = serial_of(kyso_data.run("cert", "renew", old, "--out", out).stdout)
    assert new != old
    shown_new, shown_old = kyso_data.cert(new), kyso_data.cert(old)
    assert shown_new["predecessor"] == old
    assert shown_new["status"] == "valid"
    assert shown_new["subject"] == shown_old["subject"]
    assert public_key_der(shown_new["pem"]) == public_key_der(shown_old["pem"])
    assert out.read_text() == shown_new["pem"]
    openssl_verify(chain, out, purpose="sslserver")


def test_renew_official_with_rekey(kyso_data: KysoData, official, chain, tmp_path) -> None:
    old = kyso_data.cert(official["serial"])
    result = kyso_data.run("cert", "renew", official["serial"], "--rekey",
                           "--pin-file", official["pin_file"])
    assert OFFICIAL_PIN not in result.output
    new = kyso_data.cert(serial_of(result.stdout))
    assert new["serial"] != old["serial"]
    assert new["predecessor"] == old["serial"]
    assert new["official_id"] == official["id"]
    assert new["subject"] == old["subject"]
    assert public_key_der(new["pem"]) != public_key_der(old["pem"])
    cert_file = tmp_path / "rekeyed.pem"
    cert_file.write_text(new["pem"])
    openssl_verify(chain, cert_file)
    assert_lints_clean(new["pem"])
    # Still no private key object of the official's on the token.
    assert kyso_data.token_objects().count("Private Key Object") == 4  # CA, OCSP, TSA, audit


def test_rekey_with_a_wrong_pin_is_refused(kyso_data: KysoData, tmp_path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text("Right-PIN-555123")
    created = kyso_data.run("official", "add", "--name", "Phạm Thị Dung", "--org", ORG,
                            "--email", "dung@benthanh.hochiminhcity.gov.vn",
                            "--pin-file", pin_file, "--json").json()
    wrong = tmp_path / "wrong"
    wrong.write_text("Wrong-PIN-555124")
    before = kyso_data.table_counts()
    result = kyso_data.fail("cert", "renew", created["serial"], "--rekey",  # type: ignore[index]
                            "--pin-file", wrong)
    assert "wrong signing PIN" in result.stderr and "4 attempt(s) left" in result.stderr
    assert "Wrong-PIN-555124" not in result.output and "Right-PIN-555123" not in result.output
    assert kyso_data.table_counts() == before


def test_revoke_twice_and_unknown_serial(kyso_data: KysoData, tmp_path) -> None:
    serial = issue_tls(kyso_data, tmp_path)
    result = kyso_data.run("cert", "revoke", serial, "--reason", "keyCompromise")
    assert serial in result.stdout and "keyCompromise" in result.stdout
    shown = kyso_data.cert(serial)
    assert shown["status"] == "revoked" and shown["revocation_reason"] == "keyCompromise"
    assert shown["revoked_at"]

    again = kyso_data.fail("cert", "revoke", serial, "--reason", "keyCompromise")
    assert "already revoked" in again.stderr
    assert kyso_data.cert(serial)["revoked_at"] == shown["revoked_at"]

    unknown = kyso_data.fail("cert", "revoke", "0abc0def0123", "--reason", "superseded")
    assert "no certificate" in unknown.stderr
    assert "no certificate" in kyso_data.fail("cert", "show", "0abc0def0123").stderr
    assert "not a certificate serial" in kyso_data.fail("cert", "show", "xyz").stderr


def test_revoke_with_an_unknown_reason_lists_the_reasons(kyso_data: KysoData, tmp_path) -> None:
    serial = issue_tls(kyso_data, tmp_path)
    result = kyso_data.fail("cert", "revoke", serial, "--reason", "tired")
    for reason in ("unspecified", "keyCompromise", "cACompromise", "affiliationChanged",
                   "superseded", "cessationOfOperation", "certificateHold",
                   "privilegeWithdrawn", "aACompromise"):
        assert reason in result.stderr
    assert kyso_data.cert(serial)["status"] == "valid"


def test_hold_and_release(kyso_data: KysoData, tmp_path) -> None:
    serial = issue_tls(kyso_data, tmp_path)
    assert "on hold" in kyso_data.run("cert", "hold", serial).stdout
    shown = kyso_data.cert(serial)
    assert shown["status"] == "hold" and shown["revocation_reason"] == "certificateHold"
    assert "only a valid certificate" in kyso_data.fail("cert", "hold", serial).stderr
    assert "valid again" in kyso_data.run("cert", "release", serial).stdout
    shown = kyso_data.cert(serial)
    assert shown["status"] == "valid" and shown["revocation_reason"] is None
    again = kyso_data.fail("cert", "release", serial)
    assert "not on hold" in again.stderr
    # Hold, then revoke for good: keyCompromise replaces certificateHold.
    kyso_data.run("cert", "hold", serial)
    kyso_data.run("cert", "revoke", serial, "--reason", "keyCompromise")
    assert kyso_data.cert(serial)["status"] == "revoked"
    assert "not on hold" in kyso_data.fail("cert", "release", serial).stderr


# -- listing -----------------------------------------------------------------------------

def test_cert_list_filters(kyso_data: KysoData, official, tmp_path) -> None:
    tls = issue_tls(kyso_data, tmp_path)
    short = issue_tls(kyso_data, tmp_path, "short", "--days", "1")
    revoked = issue_tls(kyso_data, tmp_path, "revoked")
    kyso_data.run("cert", "revoke", revoked, "--reason", "superseded")

    everything = kyso_data.certs()
    serials = [c["serial"] for c in everything]
    assert len(serials) == len(set(serials))
    assert {tls, short, revoked, official["serial"]} <= set(serials)

    only_revoked = kyso_data.certs("--status", "revoked")
    assert only_revoked and all(c["status"] == "revoked" for c in only_revoked)
    assert revoked in {c["serial"] for c in only_revoked}
    assert tls not in {c["serial"] for c in only_revoked}

    by_org = kyso_data.certs("--org", ORG)
    assert by_org and all(c["organization"] == ORG for c in by_org)
    assert official["serial"] in {c["serial"] for c in by_org}
    assert tls not in {c["serial"] for c in by_org}

    soon = {c["serial"] for c in kyso_data.certs("--expiring-days", "800")}
    assert {tls, short, official["serial"]} <= soon
    tomorrow = {c["serial"] for c in kyso_data.certs("--expiring-days", "1")}
    assert short in tomorrow
    assert tls not in tomorrow and official["serial"] not in tomorrow
    assert kyso_data.certs("--status", "valid", "--org", "Không có tổ chức này") == []

    text = kyso_data.run("cert", "list", "--status", "revoked")
    assert revoked in text.stdout and f"{len(only_revoked)} certificate(s)" in text.stderr
    bad = kyso_data.run("cert", "list", "--status", "nonsense", expect=2)
    assert "nonsense" in bad.stderr


# -- bad input: exit 1, a message to act on, nothing stored -------------------------------

def _tampered_csr(directory: Path) -> Path:
    good = make_csr(directory, "good")
    der = bytearray(base64.b64decode(b"".join(
        line for line in good.read_bytes().splitlines() if not line.startswith(b"-----"))))
    der[-5] ^= 0x01  # inside the signature value
    out = directory / "tampered.csr"
    body = base64.encodebytes(bytes(der)).decode()
    out.write_text("-----BEGIN CERTIFICATE REQUEST-----\n" + body
                   + "-----END CERTIFICATE REQUEST-----\n")
    return out


def _garbage_csr(directory: Path) -> Path:
    out = directory / "garbage.csr"
    out.write_bytes(b"this is not a certificate request\n\x00\x01\x02")
    return out


BAD_ISSUES = {
    "tampered signature": (lambda d: ["--csr", _tampered_csr(d)], "does not verify"),
    "garbage CSR": (lambda d: ["--csr", _garbage_csr(d)], "cannot be parsed"),
    "missing CSR file": (lambda d: ["--csr", d / "absent.csr"], "does not exist"),
    "RSA-1024 key": (lambda d: ["--csr", make_csr(d, "weak", "rsa:1024")], "1024"),
    "subject with C=US": (lambda d: ["--csr", make_csr(d, "us"), "--subject",
                                     "CN=dvc.hochiminhcity.gov.vn,O=Org,C=US"], "C=VN"),
    "unknown profile": (lambda d: ["--csr", make_csr(d, "p"), "--profile", "no-such-profile"],
                        "official-signing"),
    "unknown CA": (lambda d: ["--csr", make_csr(d, "ca"), "--ca", "no-such-ca"], "issuing"),
    "too long validity": (lambda d: ["--csr", make_csr(d, "long"), "--days", "4000"], "398"),
    "output directory missing": (lambda d: ["--csr", make_csr(d, "out"),
                                            "--out", d / "absent" / "x.pem"], "does not exist"),
}


@pytest.mark.parametrize("case", list(BAD_ISSUES))
def test_bad_issue_input_is_refused(kyso_data: KysoData, tmp_path: Path, case: str) -> None:
    make_args, words = BAD_ISSUES[case]
    args = {"--ca": "issuing", "--profile": "tls-server", "--subject": TLS_SUBJECT,
            "--dns": "dvc.hochiminhcity.gov.vn", "--out": tmp_path / "never.pem"}
    extra = make_args(tmp_path)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        args[flag] = value
    before = kyso_data.table_counts()
    result = kyso_data.fail("cert", "issue", *[x for kv in args.items() for x in kv])
    assert words in result.stderr, result.stderr
    assert not (tmp_path / "never.pem").exists()
    assert kyso_data.table_counts() == before
    # What an operator sees: `kyso cert list` lists every certificate row, none was added.
    assert len(kyso_data.certs()) == before["certificates"]


def test_official_with_a_short_pin_is_refused(kyso_data: KysoData, tmp_path) -> None:
    before = kyso_data.table_counts()
    objects = kyso_data.token_objects()
    for pin, words in (("12345", "at least 6"), ("", "empty"), ("aaaaaaaa", "repeat")):
        pin_file = tmp_path / "pin"
        pin_file.write_text(pin + "\n")
        result = kyso_data.fail("official", "add", *OFFICIAL_ARGS, "--pin-file", pin_file)
        assert words in result.stderr, result.stderr
        if pin:
            assert pin not in result.output
    missing = kyso_data.fail("official", "add", *OFFICIAL_ARGS, "--pin-file", tmp_path / "nope")
    assert "does not exist" in missing.stderr
    assert kyso_data.table_counts() == before
    assert kyso_data.token_objects() == objects


def test_wrong_settings_file(kyso_data: KysoData, tmp_path) -> None:
    absent = tmp_path / "absent" / "kyso.toml"
    result = kyso_data.fail("--config", absent, "cert", "list")
    assert str(absent) in result.stderr and "does not exist" in result.stderr
    env = dict(kyso_data.env, KYSO_CONFIG=str(absent))
    result = kyso_data.fail("ca", "list", env=env)
    assert "does not exist" in result.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("base_url = \n")
    assert "not valid TOML" in kyso_data.fail("--config", broken, "ca", "list").stderr
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    assert "unknown setting colour" in kyso_data.fail("--config", unknown, "ca", "list").stderr


# -- help --------------------------------------------------------------------------------

def _all_commands() -> list[tuple[str, ...]]:
    import click

    from kyso.cli import main

    found: list[tuple[str, ...]] = [()]

    def walk(group: click.Group, prefix: tuple[str, ...]) -> None:
        for name, command in group.commands.items():
            found.append((*prefix, name))
            if isinstance(command, click.Group):
                walk(command, (*prefix, name))

    walk(main, ())
    return found


REQUIRED_COMMANDS = {
    ("init",), ("demo",), ("demo", "setup"), ("ca",), ("ca", "list"), ("ca", "show"),
    ("ca", "chain"), ("cert",), ("cert", "issue"), ("cert", "renew"), ("cert", "revoke"),
    ("cert", "hold"), ("cert", "release"), ("cert", "show"), ("cert", "list"),
    ("official",), ("official", "add"),
}


def test_help_for_every_command(kyso_data: KysoData, tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from kyso.cli import main

    commands = _all_commands()
    assert REQUIRED_COMMANDS <= set(commands)
    # --help must not need a settings file or the database: the real entry point once, in a
    # process of its own, then every command in this one (a process each cost ~1 s of CPU).
    env = dict(kyso_data.env, KYSO_CONFIG=str(tmp_path / "absent.toml"))
    top = subprocess.run([str(KYSO), "--help"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert top.returncode == 0 and top.stdout.startswith("Usage: kyso"), top.stderr
    monkeypatch.chdir(tmp_path)
    runner = CliRunner(env={"KYSO_CONFIG": str(tmp_path / "absent.toml")})
    for command in commands:
        result = runner.invoke(main, [*command, "--help"], prog_name="kyso")
        assert result.exit_code == 0, (command, result.output, result.exception)
        assert result.output.startswith("Usage: kyso"), (command, result.output)
        assert " ".join(command) in result.output.splitlines()[0], (command, result.output)
    assert not (tmp_path / "absent.toml").exists()
    issue_help = runner.invoke(main, ["cert", "issue", "-h"], prog_name="kyso").output
    for option in ("--ca", "--profile", "--csr", "--subject", "--out", "--email", "--dns"):
        assert option in issue_help


# -- concurrency -------------------------------------------------------------------------

def test_two_processes_issuing_at_once(kyso_data: KysoData, tmp_path) -> None:
    """Two processes issuing at the same time (100 each): 200 distinct serials, all recorded."""
    per_process = 100
    csrs = [make_csr(tmp_path, f"proc{i}", key="ec:" + str(_ec_params(tmp_path)))
            for i in range(2)]
    before = {c["serial"] for c in kyso_data.certs()}
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    procs = [subprocess.Popen([sys.executable, str(HELPER), str(kyso_data.config), str(csr),
                               str(per_process), f"p{i}", str(barrier)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=kyso_data.env, cwd=tmp_path)
             for i, csr in enumerate(csrs)]
    deadline = time.monotonic() + 120
    while not all((barrier / f"ready-p{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        assert time.monotonic() < deadline, "the issuing processes did not get ready"
        time.sleep(0.02)
    (barrier / "go").touch()
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
        assert err.decode().strip() == ""
    printed = [line for out, _ in outputs for line in out.decode().split()]
    assert len(printed) == 2 * per_process
    assert len(set(printed)) == 2 * per_process
    assert all(re.fullmatch(r"[0-9a-f]+", s) for s in printed)
    assert not set(printed) & before

    recorded = {c["serial"]: c for c in kyso_data.certs()}
    assert set(printed) <= set(recorded)
    assert all(recorded[s]["status"] == "valid" for s in printed)
    assert len(recorded) == len(before) + 2 * per_process
    assert kyso_data.certs("--status", "pending") == []
    assert kyso_data.certs("--status", "failed") == []
    # The two really issued at the same time: their records interleave in insertion order.
    order = [c["subject"].split("-", 1)[0] for c in recorded.values() if c["serial"] in printed]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches >= 2, order
    sample = kyso_data.cert(printed[0])
    assert sample["subject"] == "CN=p0-0.concurrency.kyso.test,O=Kyso Concurrency Test,C=VN"
