"""PDF signing and verification beside pyHanko with a software key, from one run.

    .venv/bin/python benchmarks/pdf.py [--docs 30] [--cli-runs 100] [--batch 100]

Needs the `pyhanko` command: installs the project's `bench` extra (pyhanko-cli) when missing.

A fresh demo installation (`kyso init` + `kyso demo setup`, SoftHSM2 token and SQLite in a
temporary directory) with one P-256 and one RSA-2048 official. Figures are medians, ours
and the peer's timed in alternation (noise on the machine falls on both):

- per-document signing, 1-page and 100-page PDF, B-B and B-LT: ours = kyso's DocumentSigner
  with the official's key unwrapped in the HSM (the batch path: the key stays open), B-T/B-LT
  timestamps from our TSA in-process and OCSP/CRL from our responder in-process; peer =
  pyHanko's sign_pdf with a SimpleSigner over a software key of the same type (loaded once),
  B-LT with pyHanko's DummyTimeStamper and the CRLs handed to its ValidationContext. The
  peer runs with pyHanko's defaults: it sizes each signature with a dry-run CMS; ours does
  that once per signer and level (signer.pdfsign.DocumentSigner) and reuses the size;
- a whole one-document request (PIN check, key unwrap, sign, audit) for comparison;
- a batch of --batch one-page documents: one `kyso sign` process (one PIN, one HSM login)
  against --cli-runs separate `pyhanko sign addsig pemder` command-line runs, B-B;
- verification per document: ours (signer.verify.verify_pdf: AdES verdict, revocation,
  modification analysis, report) against pyHanko's async_validate_pdf_signature with the
  same trust root and the same in-process OCSP/CRL source.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench_setup import need_bench_extra  # noqa: E402

PIN = "bench-pin-2468"


def median_ms(fn: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def paired_median_ms(ours: Callable[[], object], peer: Callable[[], object],
                     n: int) -> tuple[float, float]:
    """Medians of ours and the peer's, timed in alternation: a burst of other work on the
    machine (or of this process's background threads) falls on both sides alike."""
    ours_times, peer_times = [], []
    for _ in range(n):
        for fn, times in ((ours, ours_times), (peer, peer_times)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return statistics.median(ours_times) * 1000, statistics.median(peer_times) * 1000


def kyso_cmd(env: dict[str, str], *args: str | Path) -> str:
    proc = subprocess.run([str(ROOT / ".venv/bin/kyso"), *map(str, args)], env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"kyso {' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


class SoftwarePki:
    """A root and a signer certificate with a software key (the peer's side)."""

    def __init__(self, directory: Path, key_type: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        def new_key():  # type: ignore[no-untyped-def]
            return (ec.generate_private_key(ec.SECP256R1()) if key_type == "ec"
                    else rsa.generate_private_key(65537, 2048))

        now = datetime.now(UTC)
        root_key, key = new_key(), new_key()
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bench Root")])
        self.root = (x509.CertificateBuilder().subject_name(root_name).issuer_name(root_name)
                     .public_key(root_key.public_key()).serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1))
                     .not_valid_after(now + timedelta(days=365))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), True)
                     .sign(root_key, hashes.SHA256()))
        self.cert = (x509.CertificateBuilder()
                     .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                 "Bench Signer")]))
                     .issuer_name(root_name).public_key(key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - timedelta(days=1))
                     .not_valid_after(now + timedelta(days=30))
                     .add_extension(x509.KeyUsage(True, True, False, False, False, False, False,
                                                  False, False), True)
                     .add_extension(x509.ExtendedKeyUsage(
                         [ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
                     .sign(root_key, hashes.SHA256()))
        # pyHanko's DummyTimeStamper signs with RSA only: an RSA TSA under the same root.
        tsa_key = rsa.generate_private_key(65537, 2048)
        tsa_cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                                "Bench TSA")]))
                    .issuer_name(root_name).public_key(tsa_key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - timedelta(days=1))
                    .not_valid_after(now + timedelta(days=30))
                    .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                                   True)
                    .sign(root_key, hashes.SHA256()))
        from asn1crypto import keys as asn1_keys
        from asn1crypto import x509 as asn1_x509

        der = serialization.Encoding.DER
        self.tsa_cert = asn1_x509.Certificate.load(tsa_cert.public_bytes(der))
        self.tsa_key = asn1_keys.PrivateKeyInfo.load(tsa_key.private_bytes(
            der, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        crl = (x509.CertificateRevocationListBuilder().issuer_name(root_name)
               .last_update(now - timedelta(minutes=1)).next_update(now + timedelta(days=1))
               .sign(root_key, hashes.SHA256()))
        pem = serialization.Encoding.PEM
        self.key_file = directory / f"{key_type}-key.pem"
        self.key_file.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        self.cert_file = directory / f"{key_type}-cert.pem"
        self.cert_file.write_bytes(self.cert.public_bytes(pem))
        self.root_file = directory / f"{key_type}-root.pem"
        self.root_file.write_bytes(self.root.public_bytes(pem))
        self.crl_der = crl.public_bytes(serialization.Encoding.DER)

    def pyhanko_signer(self):  # type: ignore[no-untyped-def]
        from pyhanko.sign import signers

        return signers.SimpleSigner.load(str(self.key_file), str(self.cert_file),
                                         ca_chain_files=(str(self.root_file),))

    def pyhanko_sign(self, signer, data: bytes, lt: bool) -> bytes:  # type: ignore[no-untyped-def]
        from asn1crypto import crl as asn1_crl
        from pyhanko.keys import load_cert_from_pemder
        from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
        from pyhanko.sign import fields, signers, timestamps
        from pyhanko_certvalidator import ValidationContext

        meta = signers.PdfSignatureMetadata(field_name="Signature1",
                                            subfilter=fields.SigSeedSubFilter.PADES)
        timestamper = None
        if lt:
            root = load_cert_from_pemder(str(self.root_file))
            vc = ValidationContext(trust_roots=[root], allow_fetching=False,
                                   crls=[asn1_crl.CertificateList.load(self.crl_der)])
            meta = signers.PdfSignatureMetadata(
                field_name="Signature1", subfilter=fields.SigSeedSubFilter.PADES,
                embed_validation_info=True, validation_context=vc)
            timestamper = timestamps.DummyTimeStamper(
                tsa_cert=self.tsa_cert, tsa_key=self.tsa_key,
                certs_to_embed=signer.cert_registry)
        out = io.BytesIO()
        signers.PdfSigner(meta, signer, timestamper=timestamper).sign_pdf(
            IncrementalPdfFileWriter(io.BytesIO(data)), output=out)
        return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=30, help="documents per timing (median)")
    parser.add_argument("--cli-runs", type=int, default=100,
                        help="separate `pyhanko sign` runs")
    parser.add_argument("--batch", type=int, default=100, help="documents in the kyso batch")
    args = parser.parse_args()
    need_bench_extra("pyhanko")  # pyhanko-cli, the command-line peer

    from pdf_samples import make_pdf

    work = Path(tempfile.mkdtemp(prefix="kyso-pdf-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")
           and k != "SOFTHSM2_CONF"}
    env["KYSO_CONFIG"] = str(work / "var" / "kyso.toml")
    print(f"setting up a demo installation in {work} ...", flush=True)
    kyso_cmd(env, "init", "--data-dir", work / "var")
    kyso_cmd(env, "demo", "setup")
    pin_file = work / "pin"
    pin_file.write_text(PIN)
    officials = {}
    for spec in ("ec-p256", "rsa-2048"):
        out = kyso_cmd(env, "official", "add", "--name", f"Bench {spec}", "--org",
                       "Ủy ban nhân dân phường Bến Thành", "--email",
                       f"{spec}@benthanh.hochiminhcity.gov.vn", "--key-spec", spec,
                       "--pin-file", pin_file)
        officials[spec] = int(out.split("official:")[1].split()[0])

    one, hundred = make_pdf(1), make_pdf(100)
    docs = {"1 page": one, "100 pages": hundred}
    os.environ["KYSO_CONFIG"] = env["KYSO_CONFIG"]
    from kyso.app import Kyso
    from kyso.settings import load_settings
    from kyso.signing import BatchItem, sign_documents, signing_certificate
    from kyso.validation import KysoRevocation
    from signer.pdfsign import DocumentSigner, InProcessTimeStamper, Level, SignRequest

    app = Kyso(load_settings(env["KYSO_CONFIG"]))
    n = args.docs
    rows: list[tuple[str, float, float]] = []
    signed_by_us: dict[str, bytes] = {}
    peers = {"ec-p256": SoftwarePki(work, "ec"), "rsa-2048": SoftwarePki(work, "rsa")}
    timestamper = InProcessTimeStamper(app.tsa().respond)
    revocation = KysoRevocation(app)
    for spec, official_id in officials.items():
        cert = signing_certificate(app, official_id)
        peer = peers[spec]
        peer_signer = peer.pyhanko_signer()
        with app.authority.official_signing_key(official_id, PIN) as key:
            ours = DocumentSigner(key, cert.certificate, cert.chain, timestamper=timestamper,
                                  revocation=revocation, trust_roots=cert.chain[-1:])
            for level in (Level.B_B, Level.B_LT):
                request = SignRequest(level=level)
                for label, data in docs.items():
                    ours.sign(data, request)  # warm-up (fonts, caches, first TSA dummy)
                    peer.pyhanko_sign(peer_signer, data, level is Level.B_LT)
                    ms, peer_ms = paired_median_ms(
                        lambda d=data, r=request, o=ours: o.sign(d, r),
                        lambda d=data, lt=level is Level.B_LT, p=peer, ps=peer_signer:
                        p.pyhanko_sign(ps, d, lt), n)
                    rows.append((f"sign {level} {label} {spec}", ms, peer_ms))
                    signed_by_us[f"{level} {label} {spec}"] = ours.sign(data, request)
        # A whole one-document request: PIN check (KDF), unwrap, sign, audit entry.
        request = SignRequest(level=Level.B_B)
        full = median_ms(lambda oid=official_id, r=request: list(sign_documents(
            app, oid, PIN, [BatchItem("one.pdf", one)], r)), max(3, n // 5))
        rows.append((f"one-document request B-B {spec} (PIN+unwrap+sign+audit)", full,
                     rows[-4][2]))

    print()
    header = f"{'measure (median ms per document)':<62} {'kyso':>9} {'pyHanko':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, ours_ms, peer_ms in rows:
        print(f"{name:<62} {ours_ms:>9.1f} {peer_ms:>9.1f} {ours_ms / peer_ms:>6.2f}x")

    # -- batch against separate command-line runs -----------------------------------------
    batch_dir = work / "batch"
    batch_dir.mkdir()
    inputs = []
    for i in range(args.batch):
        p = batch_dir / f"doc{i:03}.pdf"
        p.write_bytes(one)
        inputs.append(p)
    start = time.perf_counter()
    kyso_cmd(env, "sign", *inputs, "--official", str(officials["ec-p256"]), "--out",
             work / "batch-out", "--level", "B-B", "--pin-file", pin_file)
    batch_s = time.perf_counter() - start
    peer = peers["ec-p256"]
    cli_out = work / "cli-out"
    cli_out.mkdir()
    start = time.perf_counter()
    for i in range(args.cli_runs):
        subprocess.run([str(ROOT / ".venv/bin/pyhanko"), "sign", "addsig", "--field",
                        "Signature1", "--use-pades", "pemder", "--key", str(peer.key_file),
                        "--cert", str(peer.cert_file), "--chain", str(peer.root_file),
                        "--no-pass", str(inputs[i % len(inputs)]), str(cli_out / f"{i}.pdf")],
                       check=True, capture_output=True)
    cli_s = time.perf_counter() - start
    per_cli = cli_s / args.cli_runs
    print()
    print(f"batch of {args.batch} one-page documents, B-B, P-256:")
    print(f"  kyso sign (one process, one PIN, one HSM login): {batch_s:7.2f} s "
          f"({batch_s / args.batch * 1000:.0f} ms/doc)")
    print(f"  {args.cli_runs} x pyhanko sign addsig (software key):     {cli_s:7.2f} s "
          f"({per_cli * 1000:.0f} ms/doc)")
    print(f"  speed-up: {per_cli * args.batch / batch_s:.1f}x (target >= 10x)")

    # -- verification ---------------------------------------------------------------------
    from asn1crypto import pem as asn1_pem
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import async_validate_pdf_signature
    from pyhanko_certvalidator import ValidationContext

    from signer.verify import verify_pdf

    root_pem = (work / "var" / "published" / "ca" / "root.pem").read_bytes()
    root_x509 = x509.load_pem_x509_certificate(root_pem)
    root_asn1 = asn1_x509.Certificate.load(asn1_pem.unarmor(root_pem)[2])

    from signer.revocation import InProcessFetchers

    def pyhanko_validate(data: bytes) -> None:
        async def run() -> None:
            for sig in PdfFileReader(io.BytesIO(data)).embedded_regular_signatures:
                # The same in-process OCSP/CRL source as ours gets.
                vc = ValidationContext(trust_roots=[root_asn1], allow_fetching=True,
                                       fetcher_backend=InProcessFetchers(revocation),
                                       revocation_mode="soft-fail")
                status = await async_validate_pdf_signature(sig, vc)
                assert status.bottom_line, status.summary()

        asyncio.run(run())

    print()
    header = f"{'verify (median ms per document)':<62} {'kyso':>9} {'pyHanko':>9} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, data in signed_by_us.items():
        report = verify_pdf(data, trust_roots=[root_x509], revocation=revocation)
        assert report.indication == "TOTAL-PASSED", (name, report)
        pyhanko_validate(data)  # warm-up, as ours had above
        ours_ms, peer_ms = paired_median_ms(
            lambda d=data: verify_pdf(d, trust_roots=[root_x509], revocation=revocation),
            lambda d=data: pyhanko_validate(d), n)
        print(f"{'verify ' + name:<62} {ours_ms:>9.1f} {peer_ms:>9.1f} "
              f"{ours_ms / peer_ms:>6.2f}x")
    app.close()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
