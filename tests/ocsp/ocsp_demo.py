"""The OCSP tests' demo data directory: made by the real `kyso` (its own PostgreSQL schema when
KYSO_TEST_DATABASE_URL is set), certificates issued from CSRs. (Its own module: test modules
import it by name, and `conftest` would be ambiguous beside tests/web.)"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from cli.cli_support import KysoData, new_data_dir
from cryptography import x509


@dataclass
class Demo:
    data: KysoData
    root: Path  # where the test files live
    chain: Path  # issuing + root, PEM
    issuer: Path  # the issuing CA, PEM
    root_ca: Path  # the root CA, PEM
    certs: dict[str, Path]
    serving: tuple[str, str | None] = ("web.wsgi:app", None)  # gunicorn app, worker class

    def cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.certs[name].read_bytes())

    @property
    def issuer_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.issuer.read_bytes())

    def serial(self, name: str) -> str:
        return format(self.cert(name).serial_number, "x")

    def server_env(self) -> dict[str, str]:
        return {k: v for k, v in self.data.env.items() if k == "KYSO_DATABASE_URL"}


def issue(data: KysoData, root: Path, name: str) -> Path:
    key, csr, out = root / f"{name}.key", root / f"{name}.csr", root / f"{name}.pem"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-subj",
                    f"/CN={name}", "-out", str(csr)], check=True, capture_output=True)
    data.run("cert", "issue", "--ca", "issuing", "--profile", "tls-server", "--csr", csr,
             "--subject", f"CN={name}.hochiminhcity.gov.vn,O=Kyso OCSP Test,C=VN",
             "--dns", f"{name}.hochiminhcity.gov.vn", "--out", out)
    return out


def make_demo(root: Path, schema: str, names: tuple[str, ...]) -> Demo:
    data = new_data_dir(root, schema)
    published = data.data_dir / "published" / "ca"
    chain = root / "chain.pem"
    data.run("ca", "chain", "issuing", "--out", chain)
    certs = {name: issue(data, root, name) for name in names}
    data.run("ocsp", "refresh")
    return Demo(data, root, chain, published / "issuing.pem", published / "root.pem", certs)
