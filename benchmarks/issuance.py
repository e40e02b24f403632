"""Issuance throughput beside the raw SoftHSM2 signing rate of the same key, from one run.

    .venv/bin/python benchmarks/issuance.py [--count 1000] [--rounds 3] [--workers 1]

Whole path per certificate: approved request -> (lint) -> HSM signature -> stored and
committed, both one request at a time (`Authority.issue`) and as one batch
(`Authority.issue_batch`: lint in worker processes, reservations and certificates committed
per chunk, one signing thread so the HSM still signs one certificate at a time). The raw rate
is C_Sign through python-pkcs11 on the same token key, in the same number of threads as
single-request workers. Figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_setup import throwaway_kyso  # noqa: E402


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def in_threads(workers: int, count: int, job: Callable[[int], None]) -> float:
    """Run `job` count times split over `workers` threads; wall-clock seconds."""
    per = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    barrier = threading.Barrier(workers + 1)
    errors: list[BaseException] = []

    def run(n: int) -> None:
        barrier.wait()
        try:
            for i in range(n):
                job(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in per]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


class OtherLoad:
    """CPU time used by everything else on the machine while the benchmark runs (Linux only).

    The figures are only meaningful on an otherwise idle machine: all CPU time counted in
    /proc/stat minus this process and its lint processes, per second of wall time."""

    def __init__(self, pool: object) -> None:
        self._pool = pool
        self.available = os.path.exists("/proc/stat")
        self._start = self._sample()
        self._t0 = time.perf_counter()

    def _sample(self) -> float:
        if not self.available:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        busy = (sum(v) - v[3] - v[4]) / tick  # all but idle and iowait
        own = sum(os.times()[:2])
        executor = getattr(self._pool, "_executor", None)
        for proc in (getattr(executor, "_processes", None) or {}).values():
            try:
                with open(f"/proc/{proc.pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                own += (int(fields[11]) + int(fields[12])) / tick
            except (OSError, IndexError, ValueError):
                pass
        return busy - own

    def cpus(self) -> float:
        """Average CPUs used by other processes since this object was made."""
        elapsed = time.perf_counter() - self._t0
        return max(0.0, self._sample() - self._start) / elapsed if elapsed else 0.0


def raw_signer(token_label: str, key_label: str, spec: str) -> Callable[[int], None]:
    """C_Sign through python-pkcs11 directly: one session per thread, digest made in software."""
    import hashlib

    import pkcs11
    from pkcs11 import Mechanism, ObjectClass

    lib = pkcs11.lib(os.environ.get("KYSO_BENCH_MODULE", "/usr/lib/softhsm/libsofthsm2.so"))
    token = lib.get_token(token_label=token_label)
    local = threading.local()
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")

    def job(i: int) -> None:
        if not hasattr(local, "key"):
            # Login is per application and kyso's Token already logged in.
            local.session = token.open()
            local.key = local.session.get_key(ObjectClass.PRIVATE_KEY, label=key_label)
        digest = hashlib.sha256(i.to_bytes(8, "big") * 64).digest()
        if spec.startswith("rsa"):
            local.key.sign(digest_info + digest, mechanism=Mechanism.RSA_PKCS)
        else:
            local.key.sign(digest, mechanism=Mechanism.ECDSA)

    return job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="certificates per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="issuing threads")
    parser.add_argument("--lint-workers", type=int, default=2, help="lint processes")
    args = parser.parse_args()

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    app, _ = throwaway_kyso(args.lint_workers)
    settings = app.settings
    a = app.authority
    a.create_issuing("rsa", "CN=Bench RSA CA,O=Kyso,C=VN", parent="root", key_spec="rsa-2048")
    a.create_issuing("ec", "CN=Bench EC CA,O=Kyso,C=VN", parent="root", key_spec="ec-p256")

    subject_key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
           .sign(subject_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
    request = a.request_from_csr(
        "official-signing", csr,
        "CN=Nguyễn Thị Hồng Nhung,O=Ủy ban nhân dân phường Bến Thành,L=Thành phố Hồ Chí Minh,"
        "C=VN", emails=("nhung@benthanh.hochiminhcity.gov.vn",))

    print(f"kyso issuance benchmark: {args.count} certificates x {args.rounds} rounds, "
          f"{args.workers} worker thread(s) for single requests, {os.cpu_count()} CPUs, "
          f"database {settings.db_url.split(':')[0]}, lint pool {a.lint_pool.workers} processes")
    header = (f"{'issuing key':<10} {'path':<22} {'raw C_Sign/s':>12} {'no lint/s':>10} "
              f"{'ratio':>6} {'lint/s':>8} {'ratio':>6}")
    print(header)
    print("-" * len(header))
    requests = [request] * args.count
    a.issue_batch("rsa", requests[:50])  # start the lint processes before measuring others
    other = OtherLoad(a.lint_pool)
    for ca_name, spec in (("rsa", "rsa-2048"), ("ec", "ec-p256")):
        a.issuer(ca_name)  # warm: key handle, lint checker, lint pool
        a.issue_batch(ca_name, requests[:50])
        raw_job = raw_signer("bench", f"ca-{ca_name}", spec)
        in_threads(args.workers, 50, raw_job)
        results: dict[str, list[float]] = {k: [] for k in (
            "raw", "single-nolint", "single-lint", "batch-nolint", "batch-lint")}
        for _ in range(args.rounds):
            results["raw"].append(rate(args.count * 3, in_threads(
                args.workers, args.count * 3, raw_job)))
            for mode in ("nolint", "lint"):
                a.lint = mode == "lint"
                seconds = in_threads(args.workers, args.count,
                                     lambda _i, n=ca_name: a.issue(n, request))
                results[f"single-{mode}"].append(rate(args.count, seconds))
                start = time.perf_counter()
                issued = a.issue_batch(ca_name, requests)
                results[f"batch-{mode}"].append(rate(len(issued),
                                                     time.perf_counter() - start))
        med = {k: statistics.median(v) for k, v in results.items()}
        for path in ("single", "batch"):
            label = "one request at a time" if path == "single" else f"batch of {args.count}"
            nolint, lint = med[f"{path}-nolint"], med[f"{path}-lint"]
            print(f"{spec:<10} {label:<22} {med['raw']:>12.0f} {nolint:>10.0f} "
                  f"{nolint / med['raw']:>6.0%} {lint:>8.0f} {lint / med['raw']:>6.0%}")
    print("targets (issue 2): RSA-2048 >= 60% of raw without lint, >= 30% with lint; "
          "ECDSA P-256 >= 15% of raw without lint")
    if other.available:
        load = other.cpus()
        print(f"other processes used {load:.2f} of {os.cpu_count()} CPUs on average during the "
              "run" + ("" if load < 0.1 else ": the figures above are NOT from an idle machine"))
    a.lint = True
    app.close()


if __name__ == "__main__":
    main()
