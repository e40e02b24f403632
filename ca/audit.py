"""The audit trail: every security-relevant event, written in the same transaction as the act."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session

from ca.models import AuditEventRecord


def entry(
    *,
    at: datetime,
    actor: str,
    action: str,
    obj: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """One audit row as column values (for bulk inserts and for `record`)."""
    return {
        "at": at,
        "actor": actor,
        "action": action,
        "object": obj,
        "outcome": outcome,
        "request_id": request_id,
        "details": json.dumps(details, ensure_ascii=False, sort_keys=True) if details else None,
    }


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    obj: str,
    outcome: str = "success",
    details: dict[str, Any] | None = None,
    request_id: str | None = None,
    clock: Callable[[], datetime] | None = None,
) -> AuditEventRecord:
    """Append an event to `session`; it commits (or rolls back) with the act it records."""
    event = AuditEventRecord(**entry(
        at=(clock or (lambda: datetime.now(UTC)))(), actor=actor, action=action, obj=obj,
        outcome=outcome, details=details, request_id=request_id,
    ))
    session.add(event)
    return event
