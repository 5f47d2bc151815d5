"""The error tree of the orchestrator.

    OrchestratorError                  base of every error we raise on purpose
    ├── ValidationError               bad input; names the field and the reason
    ├── NotFound                      a run (or other entity) does not exist
    ├── IllegalTransition             the state machine refuses a move
    ├── Conflict                      optimistic concurrency: a stream moved on
    ├── ResourceBusy                  a GPU slot is already held by another run
    ├── IntegrityError                the event log's hash chain or seq is broken
    ├── NotApplied                    nothing of the request was stored: retry it
    │   ├── Internal                    its batch failed to commit (or a bug failed it)
    │   ├── StorageFull                 the registry's disk is full
    │   └── Expired                     read after its caller's deadline (not applied)
    └── Unavailable                   no reply after every attempt (maybe applied:
                                       retry with the same request id)

    Local to the bus library, beside this tree: bus.codec.FrameError (``bad_frame``,
    a frame that cannot be decoded) and the singleton lock's AlreadyRunning.

Each error has a stable ``code`` (used on the wire, mapped to gRPC codes by the
gateway) and ``to_dict()`` / ``from_dict()`` so that a reply can carry it. Callers
test a class (``isinstance(err, NotApplied)``), never a code string. Expired and
Unavailable share the wire code ``unavailable``: a reply carrying it was an expired
request (the registry read it too late and applied nothing); the Python library
raises Unavailable itself when no reply came.
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

    def __init__(self, run_id: str, status: str, event_type: str, what: str = "run") -> None:
        # ``what``: the kind of stream whose state refuses (a run; an "environment")
        super().__init__(
            f"{what} {run_id} is {status}: {event_type} is not allowed from {status}",
            run_id=run_id, status=status, attempted=event_type,
        )


class Conflict(OrchestratorError):
    code = "conflict"


class ResourceBusy(OrchestratorError):
    code = "resource_busy"


class IntegrityError(OrchestratorError):
    code = "data_loss"


class NotApplied(OrchestratorError):
    """Nothing of the request was stored; it may be sent again with the same id."""


class Internal(NotApplied):
    code = "internal"


class StorageFull(NotApplied):
    code = "resource_exhausted"


class Expired(NotApplied):
    code = "unavailable"


class Unavailable(OrchestratorError):
    """The server did not answer within the timeout, after every retry."""

    code = "unavailable"


# A reply's code -> the class it is read as (``unavailable`` in a reply: Expired).
_BY_CODE = {
    cls.code: cls
    for cls in (ValidationError, NotFound, IllegalTransition, Conflict, ResourceBusy,
                IntegrityError, Internal, StorageFull, Expired)
}
WIRE_CODES = frozenset(_BY_CODE)
