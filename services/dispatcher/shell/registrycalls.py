"""The registry calls of one step, sent as one pipelined round trip (in chunks of
PIPELINE), and their answers as decide.inputs.Replied, in the order sent.

An answer that never came (Unavailable) ends the list with RegistryLost: the decision
core forgets the calls in flight and reads the registry's state again once it answers.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence, Union

from bus.registry import RegistryClient
from core.errors import NotApplied, OrchestratorError, ResourceBusy, Unavailable
from services.dispatcher.decide.effects import Call, Query
from services.dispatcher.decide.inputs import RegistryLost, Replied, ReplyKind, RunView

PIPELINE = 200   # registry calls in flight at once (one round trip each such chunk)


def send(registry: RegistryClient,
         calls: Sequence[Union[Call, Query]]) -> list[Union[Replied, RegistryLost]]:
    out: list[Union[Replied, RegistryLost]] = []
    for lo in range(0, len(calls), PIPELINE):
        chunk = calls[lo:lo + PIPELINE]
        requests = [c.command if isinstance(c, Call) else c.query for c in chunk]
        try:
            results = registry.call_many(requests)
        except Unavailable as exc:
            out.append(RegistryLost(exc.message))
            return out
        out.extend(replied(c.tag, result) for c, result in zip(chunk, results))
    return out


def replied(tag: int, result: Any) -> Replied:
    if isinstance(result, ResourceBusy):
        return Replied(tag, ReplyKind.BUSY, result.code, result.message,
                       gpu_uuid=str(result.details.get("gpu_uuid") or ""),
                       holder=str(result.details.get("holder") or ""))
    if isinstance(result, NotApplied):
        return Replied(tag, ReplyKind.NOT_APPLIED, result.code, result.message)
    if isinstance(result, OrchestratorError):
        return Replied(tag, ReplyKind.REFUSED, result.code, result.message)
    if not isinstance(result, Mapping):
        return Replied(tag, ReplyKind.APPLIED)
    runs = result.get("runs")
    return Replied(tag, ReplyKind.APPLIED, run=view_of(result.get("run")),
                   runs=tuple(v for v in map(view_of, runs) if v is not None)
                   if isinstance(runs, list) else (),
                   head_seq=int(result.get("head_seq") or 0), more=bool(result.get("more")))


def view_of(run: Any) -> Optional[RunView]:
    """A run of a reply (core.projection.run_view's map) as the decision core reads it."""
    if not isinstance(run, Mapping) or not run.get("run_id"):
        return None
    at = run.get("cancel_requested_at")
    return RunView(str(run["run_id"]), str(run.get("status") or ""),
                   run.get("config") if isinstance(run.get("config"), Mapping) else {},
                   int(run.get("last_seq") or 0), int(run.get("priority") or 0),
                   int(run.get("submitted_seq") or 0), tuple(run.get("gpus") or ()),
                   str(run.get("cancel_requested_by") or ""),
                   str(run.get("cancel_reason") or ""),
                   float(at) if isinstance(at, (int, float)) else None)
