"""Cross-checks of a ceremony record against the audit log."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ca.models import AuditEventRecord


def audit_entry_for(readers: sessionmaker[Session], record_sha256: str) -> int | None:
    """The audit entry (its chain position) that entered a ceremony record, if any."""
    if not record_sha256:
        return None
    with readers() as s:
        rows = s.scalars(
            select(AuditEventRecord)
            .where(AuditEventRecord.action == "ceremony.finish",
                   AuditEventRecord.details.contains(record_sha256))
        ).all()
        for row in rows:
            details = json.loads(row.details or "{}")
            if details.get("record_sha256") == record_sha256:
                return int(getattr(row, "seq", None) or row.id)
    return None
