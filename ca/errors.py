"""Errors of the certificate authority: a stable code, an HTTP status, a safe message each."""

from __future__ import annotations


class CAError(Exception):
    """Base class: `code` is stable, `http_status` is what the web layer answers, str() is safe."""

    code = "ca_error"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(CAError):
    code = "not_found"
    http_status = 404


class InvalidRequest(CAError):
    """The request (CSR, subject, key, profile choice) is not acceptable; the message says why."""

    code = "invalid_request"
    http_status = 422


class InvalidCSR(InvalidRequest):
    code = "invalid_csr"


class WeakKey(InvalidRequest):
    code = "weak_key"


class SubjectRejected(InvalidRequest):
    code = "subject_rejected"


class UnknownProfile(InvalidRequest):
    code = "unknown_profile"


class ProfileError(CAError):
    """A profile file is malformed (raised at load time, before anything is issued)."""

    code = "profile_invalid"
    http_status = 500


class LintFailed(CAError):
    """The to-be-signed certificate failed linting; it was not signed. In a batch, `issued`
    lists what earlier chunks issued before the refusal."""

    code = "lint_failed"
    http_status = 422
    issued: tuple[object, ...] = ()  # set per instance by issue_batch


class StateConflict(CAError):
    """The operation does not fit the object's current state (already revoked, not on hold, ...)."""

    code = "conflict"
    http_status = 409


class PinIncorrect(CAError):
    code = "pin_incorrect"
    http_status = 403


class KeyLocked(CAError):
    code = "key_locked"
    http_status = 423


class AlreadyExists(CAError):
    code = "already_exists"
    http_status = 409


class CeremonyRefused(CAError):
    """A key ceremony file, its inputs or its quorum shares do not allow it to run (checked
    before the HSM is touched); the message says what to fix."""

    code = "ceremony_refused"
    http_status = 422


class RequestPending(StateConflict):
    """A certificate already has an open request: decide or cancel that one first."""

    code = "request_pending"


class RequestDecided(StateConflict):
    """The request was already approved, rejected or cancelled (or is being issued)."""

    code = "request_decided"


class ApprovalUnderWay(RequestDecided):
    """Another approval of the request is making its certificate right now (or died so
    recently that it cannot be told from one that is still working)."""

    code = "approval_under_way"


class RowProblem:
    """One problem of an uploaded file (a reorganization mapping): its line number in the
    file (the header is line 1; 0 for the file as a whole) and what is wrong."""

    __slots__ = ("message", "row")

    def __init__(self, row: int, message: str) -> None:
        self.row = row
        self.message = message

    def __repr__(self) -> str:
        return f"RowProblem({self.row!r}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RowProblem) and (self.row, self.message) == (
            other.row, other.message)

    def __hash__(self) -> int:
        return hash((self.row, self.message))

    def __str__(self) -> str:
        return f"row {self.row}: {self.message}" if self.row else self.message


class MappingRejected(InvalidRequest):
    """A reorganization mapping was refused before anything was issued; `problems` names the
    offending rows (and the message lists them)."""

    code = "mapping_rejected"
    http_status = 422

    def __init__(self, problems: list[RowProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.row, p.message))
        shown = "; ".join(str(p) for p in self.problems[:20])
        more = f"; and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(f"the mapping is refused ({len(self.problems)} problem(s)): "
                         f"{shown}{more}")
