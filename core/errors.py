"""The error tree of the orchestrator.

    OrchestratorError                  base of every error we raise on purpose
    ├── ValidationError               bad input; names the field and the reason
    ├── NotFound                      a run (or other entity) does not exist
    ├── IllegalTransition             the state machine refuses a move
    ├── Conflict                      optimistic concurrency: a stream moved on
    ├── ResourceBusy                  a GPU slot is already held by another run
    └── IntegrityError                the event log's hash chain or seq is broken

Each error has a stable ``code`` (used on the wire, mapped to gRPC codes by the
gateway) and ``to_dict()`` / ``from_dict()`` so that a reply can carry it.
"""

from __future__ import annotations

from typing import Any


class OrchestratorError(Exception):
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": dict(self.details)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> "OrchestratorError":
        code = str(data.get("code") or "internal")
        cls = _BY_CODE.get(code, OrchestratorError)
        details = data.get("details") or {}
        err = cls.__new__(cls)
        OrchestratorError.__init__(err, str(data.get("message", "")), **details)
        if cls is OrchestratorError:
            err.code = code  # a code this side does not know is kept, not turned internal
        return err


class ValidationError(OrchestratorError):
    code = "invalid_argument"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", field=field, reason=reason)

    @property
    def field(self) -> str:
        return str(self.details.get("field", ""))


class NotFound(OrchestratorError):
    code = "not_found"


class IllegalTransition(OrchestratorError):
    code = "failed_precondition"

    def __init__(self, run_id: str, status: str, event_type: str) -> None:
        super().__init__(
            f"run {run_id} is {status}: {event_type} is not allowed from {status}",
            run_id=run_id, status=status, attempted=event_type,
        )


class Conflict(OrchestratorError):
    code = "conflict"


class ResourceBusy(OrchestratorError):
    code = "resource_busy"


class IntegrityError(OrchestratorError):
    code = "data_loss"


_BY_CODE = {
    cls.code: cls
    for cls in (OrchestratorError, ValidationError, NotFound, IllegalTransition,
                Conflict, ResourceBusy, IntegrityError)
}
