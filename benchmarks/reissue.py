"""Bulk reissue after a reorganization beside single-certificate issuance, from one run.

    .venv/bin/python benchmarks/reissue.py [--count 10000] [--single 1000] [--rounds 1]

Single: `Authority.issue` one official's certificate at a time (lint, reservation, HSM
signature, stored), the way one approved request is issued. Bulk: `ca.reorg.start` +
`ca.reorg.run` for `--count` officials' certificates across 30 organizations (plan, then per
chunk: issue through `issue_batch`, record, revoke the old ones, update the officials, queue
the notices, mark done). Each round reissues a fresh population (set up before the clock
starts: officials inserted in bulk, certificates issued with `issue_batch` without lint).
Figures are medians over the rounds. Target (issue 7): bulk >= 70% of the single rate.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_setup import throwaway_kyso  # noqa: E402

ORGANIZATIONS = 30


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds else float("inf")


def populate(authority: Any, ca_name: str, count: int) -> tuple[list[Any], str]:
    """`count` officials (bulk rows) with one certificate each, spread over 30
    organizations; returns their issue requests and the reorganization mapping."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from sqlalchemy import insert

    from ca.authority import official_subject
    from ca.issuance import ApprovedRequest
    from ca.models import OfficialRecord
    from ca.reorg import HEADER

    tag = uuid.uuid4().hex[:6]
    orgs = [f"Ủy ban nhân dân phường {i + 1} ({tag})" for i in range(ORGANIZATIONS)]
    now = datetime.now(UTC)
    people = [{
        "name": f"Nguyễn Văn Bình {n}", "title": "Chuyên viên", "organization": orgs[n % 30],
        "unit": "Văn phòng", "locality": f"Quận {n % 30 % 12 + 1}",
        "email": f"canbo{n}.{tag}@hochiminhcity.gov.vn", "failed_pin_attempts": 0,
        "locked": False, "created_at": now} for n in range(count)]
    with authority.sessions.begin() as s:
        ids = s.execute(insert(OfficialRecord.__table__).returning(
            OfficialRecord.__table__.c.id, sort_by_parameter_order=True), people).scalars().all()
    profile = authority.profiles.get("official-signing")
    requests = []
    for official_id, p in zip(ids, people, strict=True):
        content = {k: p[k] for k in ("name", "title", "organization", "unit", "locality")}
        requests.append(ApprovedRequest(
            profile=profile, subject=official_subject(profile, content),
            public_key=ec.generate_private_key(ec.SECP256R1()).public_key(),
            emails=(p["email"],), validity_days=365, kind="server-key",
            requested_by="bench", approved_by="bench", official_id=official_id))
    lines = [",".join(HEADER)]
    for i, org in enumerate(orgs):
        if i < 20:  # wards merged: new organization (affiliationChanged)
            lines.append(f"{org},,,Ủy ban nhân dân phường mới {i // 3 + 1} ({tag}),,"
                         "Thành phố Hồ Chí Minh,2025-07-01")
        else:  # same organization, new locality (superseded)
            lines.append(f"{org},,,,,Thành phố Hồ Chí Minh,2025-07-01")
    return requests, "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="certificates reissued in bulk")
    parser.add_argument("--single", type=int, default=1000,
                        help="certificates issued one at a time for the single rate")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--chunk-size", type=int, default=100, help="reorg.run chunk size")
    parser.add_argument("--lint-workers", type=int, default=2, help="lint processes")
    parser.add_argument("--no-lint", action="store_true", help="measure both without lint")
    args = parser.parse_args()

    from ca import reorg

    app, tmp = throwaway_kyso(args.lint_workers)
    settings = app.settings
    a = app.authority
    lint = not args.no_lint
    a.create_issuing("ec", "CN=Bench EC CA,O=Kyso,C=VN", parent="root", key_spec="ec-p256")

    print(f"kyso reissue benchmark: bulk {args.count} certificates ({ORGANIZATIONS} "
          f"organizations) vs {args.single} issued one at a time, {args.rounds} round(s), "
          f"{os.cpu_count()} CPUs, database {settings.db_url.split(':')[0]}, lint "
          f"{'on, ' + str(a.lint_pool.workers) + ' processes' if lint else 'off'}, "
          f"chunk {args.chunk_size}")
    warm, _ = populate(a, "ec", 50)
    a.issue_batch("ec", warm)  # start the lint processes, open the key
    a.issue("ec", warm[0])
    single: list[float] = []
    bulk: list[float] = []
    bulk_run: list[float] = []
    for _ in range(args.rounds):
        a.lint = lint
        requests, _ = populate(a, "ec", args.single)
        start = time.perf_counter()
        for request in requests:
            a.issue("ec", request)
        single.append(rate(len(requests), time.perf_counter() - start))

        requests, text = populate(a, "ec", args.count)
        a.lint = False  # the population to reissue: set up, not measured
        for i in range(0, len(requests), 1000):
            a.issue_batch("ec", requests[i:i + 1000], chunk_size=250)
        a.lint = lint
        start = time.perf_counter()
        batch_id = reorg.start(a, text, actor="bench")
        started = time.perf_counter()
        report = reorg.run(a, batch_id, actor="bench", chunk_size=args.chunk_size)
        end = time.perf_counter()
        assert report.batch.status == "done" and report.batch.done == args.count, report
        bulk.append(rate(args.count, end - start))
        bulk_run.append(rate(args.count, end - started))
    s, b, br = (statistics.median(x) for x in (single, bulk, bulk_run))
    header = f"{'path':<46} {'certs/s':>9} {'vs single':>10}"
    print(header)
    print("-" * len(header))
    print(f"{'single issuance (Authority.issue, one at a time)':<46} {s:>9.1f} {'100%':>10}")
    print(f"{'bulk reorg: start (plan) + run':<46} {b:>9.1f} {b / s:>10.0%}")
    print(f"{'bulk reorg: run only (issue+revoke+notify)':<46} {br:>9.1f} {br / s:>10.0%}")
    print(f"target (issue 7): bulk >= 70% of single: {'met' if b / s >= 0.70 else 'NOT met'}")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"load average at the end: {load:.2f} on {os.cpu_count()} CPUs"
          + ("" if load < 1.0 else ": the figures above are NOT from an idle machine"))
    app.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
