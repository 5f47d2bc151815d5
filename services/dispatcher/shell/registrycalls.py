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
from services.dispatcher.decide.scheduling import ExperimentLimits

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
    runs, experiments = result.get("runs"), result.get("experiments")
    head = result.get("head_seq") if "head_seq" in result else result.get("as_of_seq")
    return Replied(tag, ReplyKind.APPLIED, run=view_of(result.get("run")),
                   runs=tuple(v for v in map(view_of, runs) if v is not None)
                   if isinstance(runs, list) else (),
                   head_seq=_count(head) or 0, more=bool(result.get("more")),
                   experiments=tuple(e for e in map(limits_of, experiments) if e is not None)
                   if isinstance(experiments, list)
                   else tuple(e for e in (limits_of(result.get("experiment")),) if e))


def limits_of(item: Any) -> Optional[ExperimentLimits]:
    """An experiment of a snapshot reply ({name, max_concurrent, priority}); None for
    a map that is not one (skipped, not trusted)."""
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        return None
    limit, priority = _count(item.get("max_concurrent")), item.get("priority")
    if limit is None or not (priority is None or isinstance(priority, int)
                             and not isinstance(priority, bool)):
        return None
    return ExperimentLimits(item["name"], limit, priority)


def _count(value: Any) -> Optional[int]:
    """An integer field (absent: 0); None when it is there but no integer."""
    if value is None:
        return 0
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def view_of(run: Any) -> Optional[RunView]:
    """A run of a reply (core.projection.run_view's map) as the decision core reads it;
    None for a map that is not one (a field of the wrong type: skipped, not trusted)."""
    if not isinstance(run, Mapping) or not isinstance(run.get("run_id"), str) \
            or not run["run_id"]:
        return None
    seq, priority, submitted = (_count(run.get(k)) for k in
                                ("last_seq", "priority", "submitted_seq"))
    gpus = run.get("gpus") or []
    if seq is None or priority is None or submitted is None \
            or not isinstance(gpus, (list, tuple)) \
            or not all(isinstance(g, str) for g in gpus):
        return None
    at, config = run.get("cancel_requested_at"), run.get("config")
    return RunView(run["run_id"], str(run.get("status") or ""),
                   config if isinstance(config, Mapping) else {}, seq, priority, submitted,
                   tuple(gpus), str(run.get("cancel_requested_by") or ""),
                   str(run.get("cancel_reason") or ""),
                   float(at) if isinstance(at, (int, float)) and not isinstance(at, bool)
                   else None, max(1, _count(run.get("attempt")) or 1),
                   str(run.get("resume_from") or ""), str(run.get("python") or ""),
                   str(run.get("python_error") or ""), str(run.get("experiment") or ""),
                   standing_flags(run))


def standing_flags(run: Mapping[str, Any]) -> frozenset[str]:
    """The rules whose flag stands on the run's attempt under way (its ``flags``)."""
    flags, attempt = run.get("flags"), run.get("attempt") or 1
    if not isinstance(flags, (list, tuple)):
        return frozenset()
    return frozenset(f["rule"] for f in flags if isinstance(f, Mapping)
                     and isinstance(f.get("rule"), str) and f.get("cleared_at") is None
                     and f.get("attempt") == attempt)
