"""Full CRL generation at scale beside cryptography building the same CRL, from one run.

    .venv/bin/python benchmarks/crl.py [--sizes 10000,100000,1000000] [--rounds 3]

For each size a SQLite database under a temporary `kyso init` directory gets that many revoked
certificates of the online issuing CA (ECDSA P-256 key in SoftHSM2). Each measurement runs in a
fresh process so its peak memory (ru_maxrss) is its own:

- kyso: `ca.crl.generate` -- rows streamed from the database, entries DER-encoded into one
  buffer, lint (pkilint on a 1,000-entry sample above 10,000 entries), HSM signature, check,
  stored in the database and written to disk;
- cryptography: the same rows read from the same database into `RevokedCertificate` objects,
  all given to `CertificateRevocationListBuilder` at once (adding them one by one is
  quadratic), signed with the same HSM key, written to disk.

Figures are medians over the rounds; peak memory is the process's maximum resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def kyso(config: Path, *args: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env.pop("SOFTHSM2_CONF", None)
    env["KYSO_CONFIG"] = str(config)
    proc = subprocess.run([sys.executable, "-m", "kyso.cli", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"kyso {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")


def setup(directory: Path, size: int) -> Path:
    data = directory / f"var-{size}"
    config = data / "kyso.toml"
    kyso(config, "init", "--data-dir", str(data))
    kyso(config, "ca", "create-root", "--name", "root", "--subject",
         "CN=Bench Root,O=Kyso Bench,C=VN")
    kyso(config, "ca", "create-issuing", "--name", "issuing", "--parent", "root", "--subject",
         "CN=Bench Issuing,O=Kyso Bench,C=VN")
    now = datetime.now(UTC).replace(microsecond=0)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    reasons = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
               "unspecified"]
    with closing(sqlite3.connect(data / "kyso.db")) as conn:
        (ca_id,) = conn.execute("SELECT id FROM cas WHERE name = 'issuing'").fetchone()
        base = int.from_bytes(os.urandom(15), "big") | (1 << 120)
        rows = (
            (format(base + i, "x"), ca_id, "official-signing", "CN=bench", "cn=bench", "",
             "ec-p256", "0" * 64,
             "revoked", (now - timedelta(days=400)).strftime(fmt),
             (now + timedelta(days=300)).strftime(fmt),
             (now - timedelta(seconds=i % 86400)).strftime(fmt), reasons[i % len(reasons)],
             now.strftime(fmt), (now - timedelta(seconds=i % 86400)).strftime(fmt))
            for i in range(size)
        )
        conn.executemany(
            "INSERT INTO certificates (serial, ca_id, profile, subject, subject_folded, "
            "organization_folded, key_spec, spki_sha256, status, not_before, not_after, "
            "revoked_at, revocation_reason, created_at, status_changed_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
        conn.commit()
    return config


def measure(which: str, config: Path, out: Path) -> dict[str, float]:
    """In this (fresh) process: one CRL the given way; seconds and peak RSS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from ca.crl import generate
    from ca.issuance import signature_hash
    from kyso.app import Kyso
    from kyso.settings import load_settings

    app = Kyso(load_settings(config))
    issuer = app.authority.issuer("issuing")
    if which == "kyso":  # a serving process has pkilint loaded already
        from ca.lint import warm_up

        warm_up()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    if which == "kyso":
        crls = generate(app.sessions, issuer, now=app.authority.clock, actor="bench",
                        next_update=timedelta(days=2))
        assert crls
        crl = crls[0]
        out.write_bytes(crl.der)
        entries = crl.entries
    else:
        revoked = []
        with closing(sqlite3.connect(Path(app.settings.db_url.removeprefix("sqlite:///")))) as c:
            for serial, at, reason in c.execute(
                    "SELECT serial, revoked_at, revocation_reason FROM certificates "
                    "WHERE ca_id = ? AND status IN ('revoked', 'hold') ORDER BY id",
                    (issuer.record_id,)):
                builder = x509.RevokedCertificateBuilder(
                    int(serial, 16), datetime.fromisoformat(at).replace(tzinfo=UTC))
                if reason and reason != "unspecified":
                    builder = builder.add_extension(x509.CRLReason(x509.ReasonFlags(reason)),
                                                    critical=False)
                revoked.append(builder.build())
        now = datetime.now(UTC).replace(microsecond=0)
        ski = issuer.certificate.extensions.get_extension_for_class(
            x509.SubjectKeyIdentifier).value
        crl_obj = x509.CertificateRevocationListBuilder(
            issuer_name=issuer.certificate.subject, last_update=now,
            next_update=now + timedelta(days=2),
            extensions=[
                x509.Extension(x509.AuthorityKeyIdentifier.oid, False,
                               x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                                   ski)),
                x509.Extension(x509.CRLNumber.oid, False, x509.CRLNumber(1)),
            ],
            revoked_certificates=revoked,
        ).sign(issuer.key, signature_hash(issuer.key))  # type: ignore[arg-type]
        out.write_bytes(crl_obj.public_bytes(serialization.Encoding.DER))
        entries = len(revoked)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    app.close()
    return {"seconds": seconds, "peak_mb": peak / 1024, "base_mb": rss_before / 1024,
            "entries": entries, "bytes": out.stat().st_size}


def run_measure(which: str, config: Path, out: Path) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--measure", which, "--config",
                           str(config), "--out", str(out)], capture_output=True, text=True,
                          timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"measurement {which} failed:\n{proc.stdout}{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", choices=["kyso", "cryptography"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.config, args.out)))
        return
    print(f"{'entries':>9} | {'kyso s':>7} {'peak MB':>8} | {'crypto s':>8} {'peak MB':>8} | "
          f"{'time x':>6} {'mem x':>6}")
    with tempfile.TemporaryDirectory(prefix="kyso-crl-bench-") as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            config = setup(Path(tmp), size)
            ours, theirs = [], []
            for r in range(args.rounds):
                # Alternate who goes first: the page cache favours the second.
                order = ["kyso", "cryptography"] if r % 2 == 0 else ["cryptography", "kyso"]
                for which in order:
                    result = run_measure(which, config, Path(tmp) / f"{which}-{size}.crl")
                    (ours if which == "kyso" else theirs).append(result)
                    assert result["entries"] == size, result
            o_s = statistics.median(x["seconds"] for x in ours)
            t_s = statistics.median(x["seconds"] for x in theirs)
            o_m = statistics.median(x["peak_mb"] for x in ours)
            t_m = statistics.median(x["peak_mb"] for x in theirs)
            print(f"{size:>9} | {o_s:>7.2f} {o_m:>8.0f} | {t_s:>8.2f} {t_m:>8.0f} | "
                  f"{o_s / t_s:>6.2f} {o_m / t_m:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
