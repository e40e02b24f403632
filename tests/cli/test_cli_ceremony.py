"""Key ceremonies from the command line: the shipped demo ceremonies on fresh tokens, quorum
refusals that leave the tokens untouched, and signed transcripts that notice tampering.

Checked from outside: openssl (verify, crl, req), pkilint's lint_* commands, OpenSC's
pkcs11-tool on both tokens, and the database read directly.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_support import BIN, SOFTHSM_MODULE, KysoData, new_data_dir
from cli_support import query as query_db
from pkcs11_tool import list_objects

from ca.ceremony import quorum as q

ROOT_TOKEN = "offline-root"
LINT_CRL = BIN / "lint_crl"
LINT_CERT = BIN / "lint_pkix_cert"
DEMO = Path(__file__).resolve().parents[2] / "ceremonies" / "demo"
SHARES = ("custodian-1.share", "custodian-2.share", "custodian-3.share")
CA_TABLES = ("cas", "certificates", "quorums", "crls")


def run(*args: str | Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, input=input,
                          timeout=120)


def query(data: KysoData, sql: str) -> list[tuple]:
    return query_db(data.database_url, data.data_dir / "kyso.db", sql)


def counts(data: KysoData) -> dict[str, int]:
    return {t: query(data, f"SELECT COUNT(*) FROM {t}")[0][0] for t in CA_TABLES}


def activation_pin(data: KysoData) -> str:
    """What two custodians' shares open: computed here from the share files and the public
    checks in the database, the way the ceremony does."""
    label, threshold, total, salt, check, shares = query(
        data, "SELECT token_label, threshold, total, salt, secret_check, shares FROM quorums")[0]
    stored = q.QuorumCheck(label, threshold, total, salt, check, json.loads(shares))
    parsed = [q.read_share_file(data.data_dir / "demo-shares" / s, label) for s in SHARES[:2]]
    return q.combine(stored, parsed)[0]


def root_objects(data: KysoData) -> str:
    env = dict(data.env, SOFTHSM2_CONF=str(data.softhsm_conf))
    return list_objects(SOFTHSM_MODULE, ROOT_TOKEN, activation_pin(data), env)


def public_objects(data: KysoData, label: str) -> str:
    """Without logging in: what anybody sees (public keys appear when a key pair is made)."""
    env = dict(data.env, SOFTHSM2_CONF=str(data.softhsm_conf))
    proc = subprocess.run(["pkcs11-tool", "--module", SOFTHSM_MODULE, "--token-label", label,
                           "--list-objects"], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def private_labels(listing: str) -> list[str]:
    blocks = re.split(r"\n(?=\S)", listing)
    return sorted(re.search(r"label:\s+(\S+)", b).group(1)  # type: ignore[union-attr]
                  for b in blocks if b.startswith("Private Key Object"))


def assert_lint_clean(tool: Path, data: bytes, *options: str) -> None:
    proc = subprocess.run([str(tool), "lint", *options, "-"], input=data, capture_output=True,
                          timeout=120)
    out = proc.stdout.decode()
    assert proc.returncode in (0, 1), out + proc.stderr.decode()
    bad = [line for line in out.splitlines() if re.search(r"\((ERROR|FATAL)\)", line)]
    assert bad == [], out


def ceremony_file(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def share_args(data: KysoData, *names: str) -> list[str | Path]:
    args: list[str | Path] = []
    for name in names:
        args += ["--share-file", data.data_dir / "demo-shares" / name]
    return args


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> KysoData:
    """`kyso init` and `kyso demo setup`: the four shipped demo ceremonies on fresh tokens."""
    if shutil.which("pkcs11-tool") is None or shutil.which("openssl") is None:
        pytest.fail("pkcs11-tool (opensc) and openssl are needed by the ceremony tests")
    return new_data_dir(tmp_path_factory.mktemp("ceremony"), "kyso_cli_ceremony")


def out(data: KysoData, *parts: str) -> Path:
    return data.data_dir.joinpath("ceremonies", *parts)


# -- the demo hierarchy ------------------------------------------------------------------

def test_demo_ceremonies_build_a_hierarchy_that_openssl_and_pkilint_accept(
        demo: KysoData, tmp_path: Path) -> None:
    for name in ("demo-root", "demo-issuing", "demo-root-crl-1", "demo-service-certs"):
        assert name in demo.demo_output
        record = out(demo, name, "record.json")
        document = json.loads(record.read_text())
        assert document["record"]["outcome"] == "success"
        assert "OUTCOME: SUCCESS" in record.with_suffix(".txt").read_text()
        verified = demo.run("ceremony", "verify", record)
        assert "record verified" in verified.stdout

    root = out(demo, "demo-root", "root-ca.pem")
    issuing = out(demo, "demo-issuing", "issuing-ca.pem")
    chain = out(demo, "demo-issuing", "chain.pem")
    assert chain.read_text().count("BEGIN CERTIFICATE") == 2
    proc = run("openssl", "verify", "-CAfile", root, issuing)
    assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr
    services = {"ocsp-issuing": "ocsphelper", "tsa-issuing": "timestampsign"}
    for label, purpose in services.items():
        cert = out(demo, "demo-service-certs", f"{label}.pem")
        proc = run("openssl", "verify", "-CAfile", root, "-untrusted", issuing,
                   "-purpose", purpose, cert)
        assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr
    for pem in (root, issuing, *(out(demo, "demo-service-certs", f"{x}.pem")
                                 for x in services)):
        assert_lint_clean(LINT_CERT, pem.read_bytes())

    crl = out(demo, "demo-root-crl-1", "root.crl")
    assert (demo.data_dir / "published" / "crl" / "root.crl").read_bytes() == crl.read_bytes()
    proc = run("openssl", "crl", "-inform", "DER", "-in", crl, "-CAfile", root, "-noout",
               "-text")
    assert proc.returncode == 0 and "verify OK" in proc.stderr + proc.stdout, proc.stderr
    assert re.search(r"X509v3 CRL Number:\s*\n\s*1\b", proc.stdout), proc.stdout
    assert_lint_clean(LINT_CRL, crl.read_bytes(), "-t", "CRL", "-p", "PKIX")


def test_root_key_is_on_its_own_token_opened_only_by_the_quorum(demo: KysoData) -> None:
    root = root_objects(demo)
    assert private_labels(root) == ["ca-root"]
    block = next(b for b in re.split(r"\n(?=\S)", root) if b.startswith("Private Key Object"))
    assert re.search(r"Access:\s+sensitive, always sensitive, never extractable", block), block
    online = demo.token_objects()
    assert "ca-root" not in private_labels(online)
    assert {"ca-issuing", "ocsp-issuing", "tsa-issuing"} <= set(private_labels(online))
    # Neither the database nor the settings hold the shares or the PIN they open.
    dump = demo.database_dump() + (demo.data_dir / "kyso.toml").read_bytes()
    assert activation_pin(demo).encode() not in dump
    for name in SHARES:
        share = demo.data_dir / "demo-shares" / name
        assert share.read_text().startswith("DEMO ONLY")
        assert share.stat().st_mode & 0o777 == 0o600
        value = re.search(r"share-secret: \d+-([0-9a-f]{32})", share.read_text()).group(1)  # type: ignore[union-attr]
        assert value.encode() not in dump


def test_demo_setup_again_changes_nothing(demo: KysoData) -> None:
    before = (counts(demo), demo.token_objects(), root_objects(demo))
    again = demo.run("demo", "setup")
    assert "nothing to do" in again.stdout
    assert (counts(demo), demo.token_objects(), root_objects(demo)) == before


# -- refusals: before any key is made or used ------------------------------------------------

INTERMEDIATE = """\
ceremony: intermediate
name: second-issuing
parent: root
ca:
  name: issuing-2
  subject: "CN=Second Issuing CA,O=Trung tâm Chuyển đổi số TP.HCM,C=VN"
  key: ec-p256
  profile: {profile}
outputs:
  certificate: {certificate}
  record: {record}
"""


def intermediate(tmp: Path, profile: str = "issuing-ca", certificate: str | None = None) -> Path:
    return ceremony_file(tmp, "second.yaml", INTERMEDIATE.format(
        profile=profile, certificate=certificate or str(tmp / "issuing-2.pem"),
        record=str(tmp / "second-record.json")))


def tampered_share(demo: KysoData, tmp: Path, *, keep_checksum: bool) -> Path:
    text = (demo.data_dir / "demo-shares" / SHARES[1]).read_text()
    index, value, _ = re.search(r"share-secret: (\d+)-([0-9a-f]{32})-([0-9a-f]{8})",
                                text).groups()  # type: ignore[union-attr]
    altered = bytes.fromhex(value)
    altered = bytes([altered[0] ^ 1]) + altered[1:]
    check = q._checksum(ROOT_TOKEN, int(index), altered) if keep_checksum else "00000000"
    path = tmp / "altered.share"
    path.write_text(re.sub(r"share-secret: .*", f"share-secret: {index}-{altered.hex()}-{check}",
                           text))
    return path


@pytest.mark.parametrize("case", ["one-share", "damaged-share", "forged-share",
                                  "existing-output", "invalid-profile", "unknown-key"])
def test_a_refused_ceremony_touches_no_key(demo: KysoData, tmp_path: Path, case: str) -> None:
    file = intermediate(tmp_path)
    shares = share_args(demo, SHARES[0], SHARES[2])
    expected = {
        "one-share": r"needs 2 of 3 custodian shares; 1 valid share\(s\) given",
        "damaged-share": r"altered.share failed its checksum",
        "forged-share": r"share 2 from .*altered.share failed its check.*Trần Thị Bình",
        "existing-output": r"output certificate .*issuing-2.pem already exists",
        "invalid-profile": r"profile tls-server is for .* not for an issuing CA",
        "unknown-key": r"unknown key\(s\) colour",
    }[case]
    if case == "one-share":
        shares = share_args(demo, SHARES[0])
    elif case in ("damaged-share", "forged-share"):
        shares = share_args(demo, SHARES[0]) + [
            "--share-file", tampered_share(demo, tmp_path, keep_checksum=case == "forged-share")]
    elif case == "existing-output":
        (tmp_path / "issuing-2.pem").write_text("someone else's file\n")
    elif case == "invalid-profile":
        file = intermediate(tmp_path, profile="tls-server")
    elif case == "unknown-key":
        file.write_text(file.read_text() + "colour: blue\n")
    before = (counts(demo), demo.token_objects(), root_objects(demo))
    audit_before = query(demo, "SELECT COUNT(*) FROM audit_events")[0][0]

    refused = demo.fail("ceremony", "run", file, "--yes", *shares)
    assert re.search(expected, refused.stderr), refused.stderr
    assert (counts(demo), demo.token_objects(), root_objects(demo)) == before
    assert query(demo, "SELECT COUNT(*) FROM audit_events")[0][0] == audit_before
    assert not (tmp_path / "second-record.json").exists()
    if case == "existing-output":
        assert (tmp_path / "issuing-2.pem").read_text() == "someone else's file\n"


def test_root_ceremony_refusals_leave_a_fresh_token_empty(tmp_path: Path) -> None:
    data = new_data_dir(tmp_path, "kyso_cli_ceremony_fresh", demo=False)
    root = (DEMO / "root.yaml").read_text()
    cases = {
        "no-such-profile": (root.replace("profile: root-ca", "profile: no-such-profile"),
                            r"no-such-profile"),
        "wrong-kind": (root.replace("profile: root-ca", "profile: issuing-ca"),
                       r"profile issuing-ca is for ca certificates, not for a root CA"),
        "weak-key": (root.replace("key: ec-p384", "key: rsa-2048"),
                     r"does not accept a rsa-2048 key"),
        "threshold": (root.replace("threshold: 2", "threshold: 4"),
                      r"threshold 4 must be between 2 and the number of custodians \(3\)"),
        "duplicate-key": (root + "name: again\n", r"key 'name' appears twice"),
        "missing-token": (root.replace("label: offline-root", "label: not-plugged-in"),
                          r"token 'not-plugged-in' is not reachable"),
    }
    empty = public_objects(data, ROOT_TOKEN)
    for name, (text, expected) in cases.items():
        file = ceremony_file(tmp_path, f"{name}.yaml", text)
        refused = data.fail("ceremony", "check", file)
        assert re.search(expected, refused.stderr), (name, refused.stderr)
        refused = data.fail("ceremony", "run", file, "--yes")
        assert re.search(expected, refused.stderr), (name, refused.stderr)
    assert public_objects(data, ROOT_TOKEN) == empty
    assert counts(data) == {t: 0 for t in CA_TABLES}
    assert not (data.data_dir / "demo-shares").exists()
    # And the untouched token still takes the real ceremony afterwards.
    checked = data.run("ceremony", "check", DEMO / "root.yaml")
    assert "split a new activation secret 2-of-3" in checked.stdout
    assert "check passed: nothing was changed" in checked.stdout
    assert public_objects(data, ROOT_TOKEN) == empty


# -- more ceremony types, and records that notice tampering ------------------------------------

def test_crl_cross_sign_and_key_ceremonies(demo: KysoData, tmp_path: Path) -> None:
    crl_file = ceremony_file(tmp_path, "crl.yaml", f"""\
ceremony: crl
name: root-crl-test
ca: root
next_update_days: 30
outputs:
  crl: {tmp_path / 'root.crl'}
  record: {tmp_path / 'crl-record.json'}
""")
    refused = demo.fail("ceremony", "run", crl_file, "--yes")  # the root key needs the quorum
    assert "needs 2 of 3" in refused.stderr
    demo.run("ceremony", "run", crl_file, "--yes", *share_args(demo, SHARES[1], SHARES[2]))
    proc = run("openssl", "crl", "-inform", "DER", "-in", tmp_path / "root.crl", "-noout",
               "-text", "-CAfile", out(demo, "demo-root", "root-ca.pem"))
    assert "verify OK" in proc.stderr + proc.stdout, proc.stderr
    numbers = [int(n) for (n,) in query(demo, "SELECT number FROM crls ORDER BY number")]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2

    # cross-sign a CA made by openssl: its key, our root's signature
    key, ca_pem = tmp_path / "partner.key", tmp_path / "partner.pem"
    proc = run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
               "-nodes", "-keyout", key, "-out", ca_pem, "-days", "365", "-subj",
               "/CN=Partner Province CA/O=Partner Province/C=VN", "-addext",
               "basicConstraints=critical,CA:TRUE", "-addext",
               "keyUsage=critical,keyCertSign,cRLSign")
    assert proc.returncode == 0, proc.stderr
    cross = ceremony_file(tmp_path, "cross.yaml", f"""\
ceremony: cross-sign
name: cross-partner
signer: root
certificate: {ca_pem}
ca:
  validity_days: 365
  path_length: 0
outputs:
  certificate: {tmp_path / 'cross.pem'}
  record: {tmp_path / 'cross-record.json'}
""")
    demo.run("ceremony", "run", cross, "--yes", *share_args(demo, SHARES[0], SHARES[1]))
    proc = run("openssl", "verify", "-CAfile", out(demo, "demo-root", "root-ca.pem"),
               tmp_path / "cross.pem")
    assert proc.returncode == 0 and ": OK" in proc.stdout, proc.stdout + proc.stderr
    assert_lint_clean(LINT_CERT, (tmp_path / "cross.pem").read_bytes())

    key_file = ceremony_file(tmp_path, "key.yaml", f"""\
ceremony: key
name: new-issuing-key
token:
  label: kyso
key:
  label: next-issuing
  spec: rsa-3072
csr:
  subject: "CN=Next Issuing CA,O=Trung tâm Chuyển đổi số TP.HCM,C=VN"
outputs:
  public_key: {tmp_path / 'next.pub.pem'}
  csr: {tmp_path / 'next.csr'}
  record: {tmp_path / 'key-record.json'}
""")
    demo.run("ceremony", "run", key_file, "--yes")
    proc = run("openssl", "req", "-in", tmp_path / "next.csr", "-verify", "-noout")
    assert proc.returncode == 0 and "verif" in (proc.stderr + proc.stdout).lower()
    assert "next-issuing" in private_labels(demo.token_objects())
    for record in ("crl-record.json", "cross-record.json", "key-record.json"):
        demo.run("ceremony", "verify", tmp_path / record)


def test_ceremony_verify_notices_an_edited_record_or_output(demo: KysoData,
                                                            tmp_path: Path) -> None:
    record = out(demo, "demo-root", "record.json")
    edited = tmp_path / "record.json"
    document = json.loads(record.read_text())
    document["record"]["witnesses"] = ["Somebody who was not there"]
    edited.write_text(json.dumps(document))
    refused = demo.run("ceremony", "verify", edited, expect=1)
    assert "the signature does not match the record" in refused.stderr

    # an output changed after the ceremony
    crl_file = ceremony_file(tmp_path, "crl.yaml", f"""\
ceremony: crl
name: root-crl-edit
ca: root
next_update_days: 30
outputs:
  crl: {tmp_path / 'root.crl'}
  record: {tmp_path / 'crl-record.json'}
""")
    demo.run("ceremony", "run", crl_file, "--yes", *share_args(demo, SHARES[0], SHARES[2]))
    demo.run("ceremony", "verify", tmp_path / "crl-record.json")
    (tmp_path / "root.crl").write_bytes(b"\x30\x00")
    refused = demo.run("ceremony", "verify", tmp_path / "crl-record.json", expect=1)
    assert re.search(r"output crl .*root.crl was changed", refused.stderr), refused.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    refused = demo.fail("ceremony", "verify", garbage)
    assert "not a ceremony record" in refused.stderr
