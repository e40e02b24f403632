"""The timestamp authority against a real gunicorn site made by `kyso init` + `kyso demo setup`:
queries made by `openssl ts -query`, replies read and verified by `openssl ts -reply/-verify`
against the root + issuing chain, unique serials under concurrency, a corpus of bad requests
(rejections or clean 4xx, never a 500), and the in-process API and CLI in their own processes
(SoftHSM2 reads its configuration once per process)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from asn1crypto import tsp
from served import Gunicorn, free_port

from signer.tsa import response_status

REPO_ROOT = Path(__file__).resolve().parents[2]
PG_SCHEMA = "kyso_tsa_http"
POLICY = "1.3.6.1.4.1.32473.3161.1"


class TsaSite:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/tsa"
        self.data = root / "var"
        self.config = self.data / "kyso.toml"
        self.database_url: str | None = None
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
        env["PYTHONPATH"] = str(REPO_ROOT)
        env["KYSO_CONFIG"] = str(self.config)
        env["KYSO_CRL_CHECK_EVERY_SECONDS"] = "0"
        if os.environ.get("KYSO_TEST_DATABASE_URL"):
            from cli_support import pg_url_with_schema, reset_pg_schema

            reset_pg_schema(os.environ["KYSO_TEST_DATABASE_URL"], PG_SCHEMA)
            self.database_url = pg_url_with_schema(os.environ["KYSO_TEST_DATABASE_URL"],
                                                   PG_SCHEMA)
            env["KYSO_DATABASE_URL"] = self.database_url
        self.env = env
        self.log_path = root / "gunicorn.log"

    def run(self, *args: str | Path, expect: int | None = 0,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*map(str, args)], cwd=REPO_ROOT, env={**self.env, **(env or {})},
                              capture_output=True, text=True, timeout=120,
                              stdin=subprocess.DEVNULL)
        if expect is not None:
            assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc

    def kyso(self, *args: str | Path, **kw: object) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-m", "kyso.cli", *args, **kw)  # type: ignore[arg-type]

    def sql(self, statement: str) -> list[tuple]:
        from cli_support import query

        return query(self.database_url, self.data / "kyso.db", statement)

    def post(self, body: bytes, content_type: str | None = "application/timestamp-query"
             ) -> tuple[int, str, bytes]:
        req = urllib.request.Request(self.url, data=body, method="POST")
        if content_type is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.headers.get("Content-Type", ""), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.headers.get("Content-Type", ""), err.read()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TsaSite]:
    s = TsaSite(tmp_path_factory.mktemp("tsa-site"))
    s.kyso("init", "--data-dir", s.data)
    s.kyso("demo", "setup")
    chain = s.root / "chain.pem"
    chain.write_bytes((s.data / "published/ca/root.pem").read_bytes()
                      + (s.data / "published/ca/issuing.pem").read_bytes())
    gunicorn = Gunicorn(s.config, env=s.env, port=s.port, log_path=s.log_path)
    try:
        yield s
    finally:
        gunicorn.stop()
    assert "Traceback" not in s.log(), s.log()


def openssl_query(site: TsaSite, data: Path, *extra: str) -> Path:
    query = data.with_suffix(f".{len(list(data.parent.glob('*.tsq')))}.tsq")
    site.run("openssl", "ts", "-query", "-data", data, *extra, "-out", query)
    return query


def stamp_over_http(site: TsaSite, query: Path) -> Path:
    status, ctype, body = site.post(query.read_bytes())
    assert status == 200 and ctype == "application/timestamp-reply", (status, body[:200])
    reply = query.with_suffix(".tsr")
    reply.write_bytes(body)
    return reply


def test_openssl_query_with_nonce_and_cert_verifies(site: TsaSite, tmp_path: Path) -> None:
    data = tmp_path / "quyet-dinh.pdf"
    data.write_bytes(b"%PDF-1.7 Quyet dinh so 123/QD-UBND\n" * 50)
    query = openssl_query(site, data, "-sha256", "-cert")
    nonce = re.search(r"Nonce: (0x[0-9A-F]+)",
                      site.run("openssl", "ts", "-query", "-in", query, "-text").stdout)
    assert nonce
    reply = stamp_over_http(site, query)
    text = site.run("openssl", "ts", "-reply", "-in", reply, "-text").stdout
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY}" in text
    assert "Accuracy: 0x01 seconds" in text
    assert f"Nonce: {nonce.group(1)}" in text
    assert "Hash Algorithm: sha256" in text
    serial = re.search(r"Serial number: 0x([0-9A-F]+)", text)
    assert serial
    assert "Kyso Demo Timestamping Unit" in text
    chain = site.root / "chain.pem"
    ok = site.run("openssl", "ts", "-verify", "-data", data, "-in", reply, "-CAfile", chain)
    assert "Verification: OK" in ok.stdout
    ok = site.run("openssl", "ts", "-verify", "-queryfile", query, "-in", reply,
                  "-CAfile", chain)
    assert "Verification: OK" in ok.stdout
    # The token is on record before it was signed (openssl pads the hex serial to whole bytes;
    # the ledger stores it without leading zeros).
    rows = site.sql(f"SELECT hash_algorithm, policy FROM tsa_tokens "
                    f"WHERE serial = '{int(serial.group(1), 16):x}'")
    assert rows == [("sha256", POLICY)]
    # Changed data: the imprint no longer matches.
    tampered = tmp_path / "tampered.pdf"
    tampered.write_bytes(data.read_bytes().replace(b"123", b"124"))
    bad = site.run("openssl", "ts", "-verify", "-data", tampered, "-in", reply, "-CAfile",
                   chain, expect=None)
    assert bad.returncode != 0 and "Verification: OK" not in bad.stdout


@pytest.mark.parametrize("algorithm", ["-sha384", "-sha512"])
def test_other_hashes_and_no_nonce(site: TsaSite, tmp_path: Path, algorithm: str) -> None:
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(4096))
    query = openssl_query(site, data, algorithm, "-no_nonce", "-cert",
                          "-tspolicy", POLICY)
    reply = stamp_over_http(site, query)
    text = site.run("openssl", "ts", "-reply", "-in", reply, "-text").stdout
    assert "Nonce: unspecified" in text
    assert f"Hash Algorithm: {algorithm[1:]}" in text
    ok = site.run("openssl", "ts", "-verify", "-data", data, "-in", reply, "-CAfile",
                  site.root / "chain.pem")
    assert "Verification: OK" in ok.stdout


def test_without_cert_req_the_token_carries_no_certificates(site: TsaSite,
                                                            tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("không có chứng thư")
    reply = stamp_over_http(site, openssl_query(site, data, "-sha256"))
    token = tsp.TimeStampResp.load(reply.read_bytes())["time_stamp_token"]
    assert not token["content"]["certificates"].native
    # With the TSA certificate given separately it verifies.
    tsa_pem = site.data / "ceremonies/demo-service-certs/tsa-issuing.pem"
    ok = site.run("openssl", "ts", "-verify", "-data", data, "-in", reply, "-CAfile",
                  site.root / "chain.pem", "-untrusted", tsa_pem)
    assert "Verification: OK" in ok.stdout


def test_serials_unique_under_concurrency(site: TsaSite, tmp_path: Path) -> None:
    data = tmp_path / "same.txt"
    data.write_text("the same document, many times")
    query = openssl_query(site, data, "-sha256").read_bytes()

    def one(_: int) -> int:
        status, _ctype, body = site.post(query)
        assert status == 200
        info = tsp.TimeStampResp.load(body)["time_stamp_token"]["content"][
            "encap_content_info"]["content"].parsed
        return int(info["serial_number"].native)

    with ThreadPoolExecutor(8) as pool:
        serials = list(pool.map(one, range(48)))
    assert len(set(serials)) == 48
    recorded = {r[0] for r in site.sql("SELECT serial FROM tsa_tokens")}
    assert {format(s, "x") for s in serials} <= recorded


def _req(**fields: object) -> bytes:
    base: dict[str, object] = {
        "version": "v1",
        "message_imprint": {"hash_algorithm": {"algorithm": "sha256"},
                            "hashed_message": b"\x11" * 32},
        "cert_req": True,
    }
    base.update(fields)
    return tsp.TimeStampReq(base).dump()


GOOD = _req()
BAD_REQUESTS = {
    "garbage": (b"this is not DER", "bad_data_format"),
    "truncated": (GOOD[:-7], "bad_data_format"),
    "trailing bytes": (GOOD + b"\x00\x00", "bad_data_format"),
    "not a sequence": (b"\x04\x03abc", "bad_data_format"),
    "wrong version": (_req(version="v2"), "bad_request"),
    "sha1": (_req(message_imprint={"hash_algorithm": {"algorithm": "sha1"},
                                   "hashed_message": b"\x11" * 20}), "bad_alg"),
    "md5": (_req(message_imprint={"hash_algorithm": {"algorithm": "md5"},
                                  "hashed_message": b"\x11" * 16}), "bad_alg"),
    "unknown algorithm": (_req(message_imprint={"hash_algorithm": {"algorithm": "1.2.3.4"},
                                                "hashed_message": b"\x11" * 32}), "bad_alg"),
    "short imprint": (_req(message_imprint={"hash_algorithm": {"algorithm": "sha256"},
                                            "hashed_message": b"\x11" * 20}),
                      "bad_data_format"),
    "long imprint": (_req(message_imprint={"hash_algorithm": {"algorithm": "sha512"},
                                           "hashed_message": b"\x11" * 65}),
                     "bad_data_format"),
    "unaccepted policy": (_req(req_policy="1.2.3.4.5"), "unaccepted_policy"),
    "extensions": (_req(extensions=[{"extn_id": "1.2.3.4", "critical": False,
                                     "extn_value": b"\x05\x00"}]), "unaccepted_extensions"),
    "empty body": (b"", "bad_data_format"),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_requests_are_rejected(site: TsaSite, name: str) -> None:
    body, failure = BAD_REQUESTS[name]
    status, ctype, answer = site.post(body)
    assert status == 200 and ctype == "application/timestamp-reply"
    result = response_status(answer)
    assert result.status == "rejection"
    assert result.failures == {failure}
    assert result.token is None and result.text


@pytest.mark.parametrize("content_type, body, expected", [
    ("application/octet-stream", GOOD, 415),
    (None, GOOD, 415),
    ("application/ocsp-request", GOOD, 415),
    ("application/timestamp-query", b"\x30\x82\x13\x88" + b"\x00" * 5000, 413),
])
def test_not_a_timestamp_query(site: TsaSite, content_type: str | None, body: bytes,
                               expected: int) -> None:
    status, _ctype, _answer = site.post(body, content_type)
    assert status == expected


def test_get_is_not_allowed(site: TsaSite) -> None:
    try:
        with urllib.request.urlopen(site.url, timeout=10) as resp:
            status = resp.status
    except urllib.error.HTTPError as err:
        status = err.code
    assert status == 405


IN_PROCESS = """
import sys
from kyso.app import Kyso
from kyso.settings import load_settings
kyso = Kyso(load_settings())
stamp = kyso.tsa().timestamp_data(open(sys.argv[1], "rb").read(), "sha256", nonce=42)
open(sys.argv[2], "wb").write(stamp.response)
print(stamp.serial_hex)
"""


def test_in_process_api_and_cli(site: TsaSite, tmp_path: Path) -> None:
    data = tmp_path / "cong-van.txt"
    data.write_text("Công văn số 45/UBND-VP")
    chain = site.root / "chain.pem"
    reply = tmp_path / "api.tsr"
    serial = site.run(sys.executable, "-c", IN_PROCESS, data, reply).stdout.strip()
    text = site.run("openssl", "ts", "-reply", "-in", reply, "-text").stdout
    assert f"Serial number: 0x{serial.upper()}" in text.replace("0x0", "0x")
    assert "Nonce: 0x2A" in text
    ok = site.run("openssl", "ts", "-verify", "-data", data, "-in", reply, "-CAfile", chain)
    assert "Verification: OK" in ok.stdout

    cli_reply = tmp_path / "cli.tsr"
    out = site.kyso("tsa", "stamp", data, "--out", cli_reply, "--hash", "sha512").stdout
    assert "serial: " in out
    ok = site.run("openssl", "ts", "-verify", "-data", data, "-in", cli_reply, "-CAfile", chain)
    assert "Verification: OK" in ok.stdout
    again = site.kyso("tsa", "stamp", data, "--out", cli_reply, expect=1)
    assert "exists" in again.stderr


def test_missing_tsa_key_is_a_clear_error(site: TsaSite, tmp_path: Path) -> None:
    data = tmp_path / "x.txt"
    data.write_text("x")
    proc = site.kyso("tsa", "stamp", data, "--out", tmp_path / "x.tsr", expect=1,
                     env={"KYSO_TSA_KEY_LABEL": "no-such-key"})
    assert "no-such-key" in proc.stderr and "Traceback" not in proc.stderr
    proc = site.kyso("tsa", "stamp", data, "--out", tmp_path / "x.tsr", expect=1,
                     env={"KYSO_TSA_CERTIFICATE_SERIAL": "abcdef"})
    assert "no valid 'timestamping' certificate" in proc.stderr
