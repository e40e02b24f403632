"""Support for the reorganization tests: a CA of their own, officials inserted in bulk (no
PIN KDF, no HSM key each: their certificates carry software public keys, which is all a
reissue with the same key needs) and their certificates issued with `issue_batch`, and
mapping files."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import insert, select

from ca.authority import official_subject
from ca.issuance import ApprovedRequest
from ca.models import CertificateRecord, OfficialRecord
from ca.reorg import HEADER

UNITS = ("Văn phòng", "Phòng Tư pháp", "Phòng Kinh tế", "Phòng Văn hóa - Xã hội")
TITLES = ("Chủ tịch", "Phó Chủ tịch", "Chánh Văn phòng", "Chuyên viên")
SURNAMES = ("Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Võ", "Đặng", "Bùi")
GIVEN = ("Văn Minh", "Thị Hồng Nhung", "Quốc Bảo", "Thị Lan", "Hữu Phước", "Minh Châu")


def make_ca(authority: Any) -> str:
    """An issuing CA of our own under the session's root (its CRL holds only our revocations)."""
    name = f"reorg-{uuid.uuid4().hex[:6]}"
    authority.create_issuing(name, f"CN=Test Reorg CA {name},O=Sở Thông tin và Truyền thông "
                             "TP.HCM,C=VN", parent="root", key_spec="ec-p256")
    return name


@dataclass
class Population:
    """Officials and their certificates, by organization."""

    tag: str
    ca_name: str
    organizations: list[str]
    localities: dict[str, str]  # organization -> its locality
    serials: dict[str, list[str]] = field(default_factory=dict)  # organization -> serials
    official_of: dict[str, int] = field(default_factory=dict)  # serial -> official id

    @property
    def all_serials(self) -> list[str]:
        return [s for org in self.organizations for s in self.serials.get(org, [])]


def organization_name(i: int, tag: str) -> str:
    return f"Ủy ban nhân dân phường {i + 1} ({tag})"


def populate(authority: Any, ca_name: str, *, organizations: int, per_organization: int,
             lint: bool = False) -> Population:
    """`organizations` x `per_organization` officials (bulk rows) with one certificate each,
    issued by `ca_name` through `issue_batch` (lint off by default: the issuance under test is
    the reissue, which lints)."""
    tag = uuid.uuid4().hex[:6]
    orgs = [organization_name(i, tag) for i in range(organizations)]
    localities = {org: f"Quận {i % 12 + 1}" for i, org in enumerate(orgs)}
    pop = Population(tag, ca_name, orgs, localities)
    now = datetime.now(UTC)
    people = []
    for i, org in enumerate(orgs):
        for j in range(per_organization):
            n = i * per_organization + j
            people.append({
                "name": f"{SURNAMES[n % len(SURNAMES)]} {GIVEN[n % len(GIVEN)]} {n}",
                "title": TITLES[n % len(TITLES)], "organization": org,
                "unit": UNITS[n % len(UNITS)], "locality": localities[org],
                "email": f"canbo{n}.{tag}@phuong{i + 1}.hochiminhcity.gov.vn",
                "failed_pin_attempts": 0, "locked": False, "created_at": now,
            })
    with authority.sessions.begin() as s:
        ids = s.execute(insert(OfficialRecord.__table__).returning(
            OfficialRecord.__table__.c.id, sort_by_parameter_order=True), people).scalars().all()
    profile = authority.profiles.get("official-signing")
    requests = []
    for official_id, p in zip(ids, people, strict=True):
        content = {k: p[k] for k in ("name", "title", "organization", "unit", "locality")}
        key = ec.generate_private_key(ec.SECP256R1())
        requests.append(ApprovedRequest(
            profile=profile, subject=official_subject(profile, content),
            public_key=key.public_key(), emails=(p["email"],), validity_days=365,
            kind="server-key", requested_by="test-setup", approved_by="test-setup",
            official_id=official_id))
    saved, authority.lint = authority.lint, lint
    try:
        issued = authority.issue_batch(ca_name, requests, chunk_size=250, actor="test-setup")
    finally:
        authority.lint = saved
    for cert, p, official_id in zip(issued, people, ids, strict=True):
        pop.serials.setdefault(p["organization"], []).append(cert.serial)
        pop.official_of[cert.serial] = official_id
    return pop


def mapping(rows: list[tuple[str, ...]], *, bom: bool = False, header: tuple[str, ...] = HEADER,
            newline: str = "\r\n") -> str:
    """A CSV mapping as a spreadsheet saves it."""
    import csv
    import io

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator=newline)
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" if bom else "") + out.getvalue()


def certificates(authority: Any, serials: list[str]) -> dict[str, CertificateRecord]:
    with authority.readers() as s:
        return {c.serial: c for c in s.scalars(
            select(CertificateRecord).where(CertificateRecord.serial.in_(serials))).all()}


def successors(authority: Any, ids: list[int]) -> list[CertificateRecord]:
    out: list[CertificateRecord] = []
    with authority.readers() as s:
        for i in range(0, len(ids), 500):
            out += s.scalars(select(CertificateRecord).where(
                CertificateRecord.predecessor_id.in_(ids[i:i + 500]))).all()
    return out
