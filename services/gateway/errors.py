"""Registry error codes -> gRPC status codes, and the one way the gateway fails a call.

A failed call carries trailing metadata ``trainer-code`` (the registry's code),
and for INVALID_ARGUMENT ``trainer-field`` and ``trainer-reason``; the field is in
the details text as well ("config.seed: must be an integer").
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from core.errors import OrchestratorError

CODES: dict[str, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "conflict": grpc.StatusCode.ABORTED,
    "resource_busy": grpc.StatusCode.FAILED_PRECONDITION,
    "data_loss": grpc.StatusCode.DATA_LOSS,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "deadline_exceeded": grpc.StatusCode.DEADLINE_EXCEEDED,
    "out_of_range": grpc.StatusCode.OUT_OF_RANGE,
    "bad_frame": grpc.StatusCode.INTERNAL,
    "internal": grpc.StatusCode.INTERNAL,
}


class CallError(Exception):
    """A call's failure as the client will see it."""

    def __init__(self, code: grpc.StatusCode, message: str, trainer_code: str = "",
                 field: str = "", reason: str = "",
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trainer_code = trainer_code
        self.field = field
        self.reason = reason
        self.details = details or {}  # the registry's (e.g. a refused run's status)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        out = []
        if self.trainer_code:
            out.append(("trainer-code", self.trainer_code))
        if self.field:
            out.append(("trainer-field", _ascii(self.field)))
            out.append(("trainer-reason", _ascii(self.reason)))
        return tuple(out)


def invalid(field: str, reason: str) -> CallError:
    return CallError(grpc.StatusCode.INVALID_ARGUMENT, f"{field}: {reason}",
                     "invalid_argument", field, reason)


def exhausted(field: str, reason: str) -> CallError:
    return CallError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{field}: {reason}",
                     "resource_exhausted", field, reason)


def restarting() -> CallError:
    return CallError(grpc.StatusCode.UNAVAILABLE, "the gateway is shutting down or "
                     "restarting (retry; a watch resumes with since_seq)", "unavailable")


def from_registry(err: OrchestratorError) -> CallError:
    code = CODES.get(err.code, grpc.StatusCode.INTERNAL)
    details: dict[str, Any] = err.details or {}
    field = str(details.get("field") or "")
    reason = str(details.get("reason") or "")
    message = err.message
    if err.code == "unavailable":
        message = f"the registry did not answer: {err.message} (retry)"
    return CallError(code, message, err.code, field, reason if field else "", details)


async def abort(context: grpc.aio.ServicerContext, err: CallError) -> NoReturn:
    await context.abort(err.code, err.message, err.metadata())
    raise AssertionError("unreachable")  # pragma: no cover


def _ascii(text: str) -> str:
    """Metadata values must be printable ASCII."""
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)[:500]
