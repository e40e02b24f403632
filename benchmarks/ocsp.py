"""OCSP responder throughput and latency beside OpenSSL's own responder and the raw HSM rate.

    .venv/bin/python benchmarks/ocsp.py [--rounds 3] [--requests 20000] [--concurrency 8]
                                        [--workers 2] [--worker-class ocsp.worker.OcspWorker]

Builds a demo data directory (kyso init + demo setup) in a temporary directory, issues one
certificate, pre-signs, starts every server, then measures `--rounds` times and prints the
median of each figure (and the range of the rates), with the load average before and after:
  - `openssl ocsp -index` answering the same certificate (software P-256 key, signs per
    request, one process), driven with ApacheBench (`ab -c 8`, Debian's apache2-utils): not
    with keep-alive (`ab -k` and wrk make that responder hang on an idle connection);
  - our responder alone (gunicorn web.wsgi:ocsp_app with `--worker-class`, what `kyso ocsp
    serve` should run): pre-signed GET, pre-signed POST, nonce POST (live-signed with the
    SoftHSM2 key), with ab;
  - Debian's nginx with proxy_cache in front (deploy/nginx-ocsp.conf, worker_processes auto):
    GET with ab, ab -k and -- when installed -- wrk (2 threads, 8 connections);
  - the raw signing rate of the responder's HSM key (ECDSA P-256, SHA-256): one process, and
    as many processes in parallel as gunicorn has workers.
Not a test: it prints figures and ratios from the same run. ab and wrk share the 2 cores with
the servers; without keep-alive every request is a new TCP connection.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_setup import need_commands  # noqa: E402

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listening on {port}")


def run(*args: str | Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env,
                          check=False)
    if proc.returncode:
        raise SystemExit(f"{' '.join(map(str, args))} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def ab(url: str, n: int, c: int, post: Path | None = None,
       keepalive: bool = False) -> tuple[float, float, float, float]:
    """(responses/s, p50 ms, p99 ms, share of one core the client used) from ApacheBench;
    every answer must be a 200."""
    args = ["ab", "-q", "-n", str(n), "-c", str(c), *(["-k"] if keepalive else [])]
    if post is not None:
        args += ["-p", str(post), "-T", "application/ocsp-request"]
    cpu, wall = _client_cpu(), time.perf_counter()
    out = run(*args, url)
    cpu, wall = _client_cpu() - cpu, time.perf_counter() - wall
    # ab counts answers whose length differs from the first as "failed": ECDSA signatures
    # vary by a byte or two, so only connect/receive/exception failures and non-2xx count.
    kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)",
                      out)
    non2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    if (kinds and any(int(k) for k in kinds.groups())) or non2xx:
        raise SystemExit(f"ab saw failures:\n{out}")
    rate = float(re.search(r"Requests per second:\s+([\d.]+)",  # type: ignore[union-attr]
                           out).group(1))
    p50 = float(re.search(r"\n\s+50%\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"\n\s+99%\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    return rate, p50, p99, cpu / wall


def wrk(url: str, c: int, seconds: int = 5) -> tuple[float, float, float, float]:
    """(responses/s, p50 ms, p99 ms, cores the client used) from wrk (2 threads, keep-alive);
    no errors allowed."""
    cpu, wall = _client_cpu(), time.perf_counter()
    out = run("wrk", "-t2", f"-c{c}", f"-d{seconds}s", "--latency", url)
    cpu, wall = _client_cpu() - cpu, time.perf_counter() - wall
    if "Non-2xx" in out or "Socket errors" in out:
        raise SystemExit(f"wrk saw failures:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(pct: str) -> float:
        found = re.search(rf"\n\s+{pct}%\s+([\d.]+)(us|ms|s)", out)
        assert found is not None, out
        value, unit = found.groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rate, ms("50"), ms("99"), cpu / wall


def hsm_rate(config: Path, seconds: float = 3.0, start_at: float | None = None) -> float:
    """Signatures per second of the `ocsp-issuing` key, one thread (ECDSA P-256, SHA-256);
    with `start_at` (epoch seconds) the timed part begins then (processes side by side)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from kyso.app import Kyso
    from kyso.settings import load_settings

    kyso = Kyso(load_settings(config))
    try:
        key = kyso.token().find_key(label="ocsp-issuing")
        data = os.urandom(200)
        algorithm = ec.ECDSA(hashes.SHA256())
        for _ in range(50):
            key.sign(data, algorithm)
        if start_at is not None:
            time.sleep(max(0.0, start_at - time.time()))
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            key.sign(data, algorithm)
            count += 1
        return count / (time.perf_counter() - start)
    finally:
        kyso.close()


def hsm_rate_parallel(config: Path, processes: int, env: dict[str, str],
                      seconds: float = 3.0) -> float:
    """The summed signing rate of `processes` processes signing with the key at once (as
    that many gunicorn workers would)."""
    start_at = time.time() + 5  # after every child has started and found the key
    children = [subprocess.Popen(
        [sys.executable, __file__, "--hsm-rate-of", str(config), "--hsm-seconds", str(seconds),
         "--hsm-start-at", str(start_at)],
        env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    rates = []
    for child in children:
        out, _ = child.communicate(timeout=120)
        if child.returncode:
            raise SystemExit("HSM rate child failed")
        rates.append(float(out.strip()))
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-class", default="ocsp.worker.OcspWorker",
                        help="gunicorn worker class of our responder ('sync': gunicorn's own)")
    parser.add_argument("--hsm-rate-of", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--hsm-seconds", type=float, default=3.0, help=argparse.SUPPRESS)
    parser.add_argument("--hsm-start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hsm_rate_of is not None:  # a child of hsm_rate_parallel
        print(hsm_rate(args.hsm_rate_of, args.hsm_seconds, args.hsm_start_at))
        return
    need_commands("ab:apache2-utils", "openssl:openssl", "nginx:nginx")
    has_wrk = shutil.which("wrk") is not None
    n, c = args.requests, args.concurrency
    work = Path(tempfile.mkdtemp(prefix="kyso-ocsp-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("KYSO_") and k != "SOFTHSM2_CONF"}
        data = work / "var"
        config = data / "kyso.toml"
        env["KYSO_CONFIG"] = str(config)
        env["PYTHONPATH"] = str(REPO)
        kyso = BIN / "kyso"
        print("setting up a demo CA ...", file=sys.stderr)
        run(kyso, "init", "--data-dir", data, env=env)
        run(kyso, "demo", "setup", env=env)
        run("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", work / "leaf.key", "-subj", "/CN=bench", "-out",
            work / "leaf.csr")
        run(kyso, "cert", "issue", "--ca", "issuing", "--profile", "tls-server", "--csr",
            work / "leaf.csr", "--subject", "CN=bench.hochiminhcity.gov.vn,O=Bench,C=VN",
            "--dns", "bench.hochiminhcity.gov.vn", "--out", work / "leaf.pem", env=env)
        run(kyso, "ocsp", "refresh", env=env)
        issuer = data / "published" / "ca" / "issuing.pem"
        leaf = work / "leaf.pem"
        req, nonce_req = work / "req.der", work / "nonce.der"
        run("openssl", "ocsp", "-issuer", issuer, "-cert", leaf, "-no_nonce", "-reqout", req)
        run("openssl", "ocsp", "-issuer", issuer, "-cert", leaf, "-reqout", nonce_req)
        get_path = "/ocsp/" + quote(base64.b64encode(req.read_bytes()).decode(), safe="")

        # OpenSSL's responder: index with the certificate, its own software P-256 key.
        serial = run("openssl", "x509", "-in", leaf, "-noout", "-serial").strip().split("=")[1]
        expiry = run("openssl", "x509", "-in", leaf, "-noout", "-enddate").strip()
        from datetime import datetime

        end = datetime.strptime(expiry.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
        (work / "index.txt").write_text(
            f"V\t{end:%y%m%d%H%M%S}Z\t\t{serial.upper()}\tunknown\t/CN=bench\n")
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-keyout", work / "rkey.pem", "-subj", "/CN=openssl responder", "-days",
            "2", "-out", work / "rcert.pem")
        ossl_port = free_port()
        ossl = subprocess.Popen(
            ["openssl", "ocsp", "-index", str(work / "index.txt"), "-port", str(ossl_port),
             "-rsigner", str(work / "rcert.pem"), "-rkey", str(work / "rkey.pem"), "-CA",
             str(issuer), "-nmin", "60", "-timeout", "5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        procs.append(ossl)
        # No probe at all: an empty connection makes that responder hang. Give it a second.
        time.sleep(1)
        if ossl.poll() is not None:
            raise SystemExit("openssl ocsp exited")

        port = free_port()
        worker_args = ([] if args.worker_class == "sync"
                       else ["--worker-class", args.worker_class])
        ours = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
             f"127.0.0.1:{port}", "--no-control-socket", *worker_args, "web.wsgi:ocsp_app"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        procs.append(ours)
        wait_port(port, ours)

        nginx_port = free_port()
        conf = (REPO / "deploy" / "nginx-ocsp.conf").read_text()
        conf = (conf.replace("/var/cache/nginx/kyso-ocsp", str(work / "nginx-cache"))
                .replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{port};")
                .replace("listen 80;", f"listen 127.0.0.1:{nginx_port};"))
        # As root, nginx's workers run as `nobody`: let them reach the cache and temp dirs.
        work.chmod(0o755)
        for sub in ("nginx", "nginx/tmp", "nginx-cache"):
            (work / sub).mkdir()
            (work / sub).chmod(0o777)
        (work / "nginx" / "nginx.conf").write_text(
            "worker_processes auto;\npid nginx.pid;\nerror_log error.log;\n"
            "events { worker_connections 4096; }\n"
            "http {\nclient_body_temp_path tmp;\nproxy_temp_path tmp;\n"
            f"{conf}\n}}\n")
        nginx = subprocess.Popen(
            ["nginx", "-p", str(work / "nginx"), "-c", "nginx.conf", "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        procs.append(nginx)
        wait_port(nginx_port, nginx)

        ours_url, nginx_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{nginx_port}"
        ossl_url = f"http://127.0.0.1:{ossl_port}/"
        # Warm up every worker (responder built, key found, answers in memory).
        ab(ours_url + get_path, 400, c)
        ab(ours_url + "/ocsp", 400, c, post=req)
        ab(ours_url + "/ocsp", 400, c, post=nonce_req)
        ab(nginx_url + get_path, 400, c)

        load_before = os.getloadavg()
        rows: dict[str, list[tuple[float, float, float, float]]] = {}
        raw1: list[float] = []
        rawn: list[float] = []
        for _ in range(args.rounds):
            measures = {
                "openssl ocsp -index POST, ab": lambda: ab(ossl_url, n, c, post=req),
                "kyso pre-signed GET, ab": lambda: ab(ours_url + get_path, n, c),
                "kyso pre-signed POST, ab": lambda: ab(ours_url + "/ocsp", n, c, post=req),
                "kyso nonce POST (HSM), ab": lambda: ab(ours_url + "/ocsp", max(n // 4, 2000),
                                                        c, post=nonce_req),
                "nginx proxy_cache GET, ab": lambda: ab(nginx_url + get_path, n * 2, c),
                "nginx proxy_cache GET, ab -k": lambda: ab(nginx_url + get_path, n * 5, c,
                                                           keepalive=True),
            }
            if has_wrk:
                measures["nginx proxy_cache GET, wrk"] = lambda: wrk(nginx_url + get_path, c)
            for label, measure in measures.items():
                rows.setdefault(label, []).append(measure())
            raw1.append(hsm_rate(config))
            rawn.append(hsm_rate_parallel(config, args.workers, env))
        load_after = os.getloadavg()

        med = {label: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                       statistics.median(r[2] for r in rs), min(r[0] for r in rs),
                       max(r[0] for r in rs), statistics.median(r[3] for r in rs))
               for label, rs in rows.items()}
        base = med["openssl ocsp -index POST, ab"][0]
        worker = "sync" if args.worker_class == "sync" else args.worker_class
        print(f"\nOCSP on 127.0.0.1, {os.cpu_count()} CPUs, concurrency {c}, median of "
              f"{args.rounds} rounds; gunicorn {args.workers} workers ({worker}), responder "
              "key ECDSA P-256 in SoftHSM2; nginx worker_processes auto")
        print(f"load average before {load_before[0]:.2f} {load_before[1]:.2f} "
              f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
              f"{load_after[2]:.2f}\n")
        print(f"{'':34} {'resp/s':>8} {'range':>15} {'p50 ms':>7} {'p99 ms':>7} "
              f"{'vs openssl ab':>13} {'client CPU':>10}")
        for label, (rate, p50, p99, low, high, client) in med.items():
            span = f"{low:.0f}-{high:.0f}"
            print(f"{label:34} {rate:8.0f} {span:>15} {p50:7.1f} {p99:7.1f} "
                  f"{rate / base:12.2f}x {client:9.0%}")
        print("(client CPU: the load generator's user+system time over the wall time, 100% = "
              "one core; ab is one thread)")
        r1, rn = statistics.median(raw1), statistics.median(rawn)
        print(f"{'raw HSM signing, 1 process':34} {r1:8.0f} {min(raw1):7.0f}-{max(raw1):<7.0f}")
        print(f"{f'raw HSM signing, {args.workers} processes':34} {rn:8.0f} "
              f"{min(rawn):7.0f}-{max(rawn):<7.0f}")
        nonce = med["kyso nonce POST (HSM), ab"][0]
        print(f"\nnonce POST / raw HSM rate: {nonce / r1:.0%} of 1 process, {nonce / rn:.0%} of "
              f"{args.workers} in parallel (target >= 30%)")
        print(f"pre-signed GET / openssl: {med['kyso pre-signed GET, ab'][0] / base:.2f}x, "
              f"POST {med['kyso pre-signed POST, ab'][0] / base:.2f}x "
              "(target >= 1x, p99 < 20 ms)")
        print("nginx GET / openssl (target >= 5x): "
              f"ab {med['nginx proxy_cache GET, ab'][0] / base:.2f}x; "
              f"ab -k {med['nginx proxy_cache GET, ab -k'][0] / base:.2f}x"
              + (f"; wrk {med['nginx proxy_cache GET, wrk'][0] / base:.2f}x" if has_wrk else "")
              + " (openssl measured with ab: it cannot keep connections open)")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM if proc is not procs[-1] else signal.SIGQUIT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
