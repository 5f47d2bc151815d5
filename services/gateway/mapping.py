"""core <-> trainer.v1: enums, run records, events, heartbeats. No I/O, no sockets.

Enum mapping is defensive both ways: a core value the wire does not know becomes
UNSPECIFIED, and a wire number core does not know becomes None; each such unknown
value is logged once (per EnumMap, the first MAX_LOGGED of them), never raised.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from typing import Any, Generic, Mapping, Optional, TypeVar

from google.protobuf import struct_pb2, timestamp_pb2

from bus.codec import Envelope
from runtime.logs import ServiceLogger
from core.events import TerminalCause
from core.runresult import final_return
from core.runstate import TRANSITIONS, RunStatus
from trainer_api.v1 import trainer_pb2 as pb

E = TypeVar("E")
MAX_LOGGED = 100   # distinct unknown values logged per EnumMap; then one line says so


class EnumMap(Generic[E]):
    """One core enum <-> one proto enum, by name: core ``X`` is wire ``PREFIX_X``."""

    def __init__(self, name: str, core: type[E], wire: Any, prefix: str,
                 log: ServiceLogger | None = None) -> None:
        self.name = name
        self.log = log
        self._to_wire: dict[Any, int] = {}
        self._to_core: dict[int, E] = {}
        for member in core:  # type: ignore[attr-defined]
            number = wire.Value(prefix + member.name) if (prefix + member.name) in \
                wire.keys() else 0
            if number:
                self._to_wire[member] = number
                self._to_wire[member.value] = number
                self._to_core[number] = member
        self._logged: set[tuple[str, Any]] = set()
        self.unlogged = 0   # unknown values seen once the set was full (not logged)

    def to_wire(self, value: Any) -> int:
        """The wire number of a core member (or its value); 0 for anything unknown."""
        if value in (None, ""):
            return 0
        try:
            number = self._to_wire.get(value)
        except TypeError:
            number = None
        if number is None:
            self._unknown("to_wire", value)
            return 0
        return number

    def to_core(self, number: int) -> Optional[E]:
        """The core member of a wire number; None for 0 or an unknown number."""
        if number == 0:
            return None
        member = self._to_core.get(number)
        if member is None:
            self._unknown("to_core", number)
        return member

    def _unknown(self, direction: str, value: Any) -> None:
        key = (direction, repr(value)[:80])
        if key in self._logged:
            return
        if len(self._logged) >= MAX_LOGGED:   # bounded: a flood of new values costs nothing
            self.unlogged += 1
            if self.unlogged == 1 and self.log is not None:
                self.log.warning("enum.unknown_values_not_logged", enum=self.name,
                                 logged=MAX_LOGGED, hint="later unknown values of this "
                                 "enum are no longer logged one by one")
            return
        self._logged.add(key)
        if self.log is not None:
            self.log.warning("enum.unknown_value", enum=self.name, direction=direction,
                             value=repr(value)[:80])


def _max_attempts(config: Mapping[str, Any]) -> int:
    retry = config.get("retry")
    value = retry.get("max_attempts") if isinstance(retry, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1


class Mapper:
    """Everything the servicer needs to turn registry replies into messages."""

    def __init__(self, log: ServiceLogger | None = None) -> None:
        self.status = EnumMap("RunStatus", RunStatus, pb.RunStatus, "RUN_STATUS_", log)
        self.cause = EnumMap("TerminalCause", TerminalCause, pb.TerminalCause,
                             "TERMINAL_CAUSE_", log)

    def run_record(self, view: Mapping[str, Any],
                   heartbeat: Optional[pb.Heartbeat] = None) -> pb.RunRecord:
        """A RunRecord from the registry's run view (core.projection.run_view)."""
        config = view.get("config")
        if not isinstance(config, dict):
            config = _json_map(config)
        rec = pb.RunRecord(
            run_id=str(view.get("run_id", "")), status=self.status.to_wire(view.get("status")),
            cause=self.cause.to_wire(view.get("cause") or None),
            waiting_reason=str(view.get("waiting_reason") or ""),
            gpus=[str(g) for g in _list(view.get("gpus"))],
            artifact_count=_int(view.get("artifact_count")),
            last_seq=_int(view.get("last_seq")), submitted_seq=_int(view.get("submitted_seq")),
            config_json=json.dumps(config, sort_keys=True, separators=(",", ":")),
            priority=_int(view.get("priority")),
            cancel_requested_by=str(view.get("cancel_requested_by") or ""),
            cancel_reason=str(view.get("cancel_reason") or ""),
            message=str(view.get("message") or ""), digest=str(view.get("digest") or ""),
            submitted_by=str(view.get("submitted_by") or ""), host=str(view.get("host") or ""),
            gpus_held=bool(view.get("gpus_held")), name=str(config.get("name") or ""),
            tags=[str(t) for t in _list(config.get("tags"))],
            attempt=_int(view.get("attempt")) or 1, max_attempts=_max_attempts(config),
            resume_from=str(view.get("resume_from") or ""),
            last_attempt_cause=self.cause.to_wire(view.get("last_attempt_cause") or None),
            code_digest=str(view.get("code_digest") or ""),
            code_json=_compact(view.get("code")), attempt_code_json=_compact(
                view.get("attempt_code")), experiment=str(view.get("experiment") or ""),
            launcher=str(view.get("launcher") or ""), job_id=str(view.get("job_id") or ""),
            job_gpus=[str(g) for g in _list(view.get("job_gpus"))])
        for name in ("exit_code", "signal", "pid"):
            value = view.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                setattr(rec, name, value)
        for name in ("submitted_at", "started_at", "finished_at", "updated_at"):
            value = view.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                getattr(rec, name).CopyFrom(timestamp(value))
        recorded = recorded_heartbeat(view, heartbeat)
        if recorded is not None:
            rec.last_heartbeat.CopyFrom(recorded)
        rec.flags.extend(run_flag(f) for f in _list(view.get("flags")) if isinstance(f, dict))
        return rec

    def run_event(self, env: Envelope, status: Optional[str]) -> pb.RunEvent:
        run_id = (env.stream or "").removeprefix("run-") or str(env.payload.get("run_id", ""))
        msg = pb.RunEvent(seq=env.seq or 0, run_id=run_id, type=env.type,
                          status=self.status.to_wire(status),
                          stream_version=env.stream_version or 0,
                          schema_version=env.schema or 0)
        msg.payload.CopyFrom(struct(env.payload))
        msg.recorded_at.CopyFrom(timestamp(env.ts))
        return msg


def run_flag(flag: Mapping[str, Any]) -> pb.RunFlag:
    """A liveness flag of the run view (core.runstate's flag log entry)."""
    msg = pb.RunFlag(rule=str(flag.get("rule") or ""), action=str(flag.get("action") or ""),
                     seq=_int(flag.get("seq")), attempt=_int(flag.get("attempt")) or 1)
    for name in ("flagged_at", "cleared_at"):
        value = flag.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and math.isfinite(value):
            getattr(msg, name).CopyFrom(timestamp(value))
    for name in ("evidence", "cleared_evidence"):
        value = flag.get(name)
        if isinstance(value, dict):
            getattr(msg, name).CopyFrom(struct(value))
    return msg


def heartbeat_message(payload: Mapping[str, Any], sent_at: float,
                      received_at: float) -> pb.Heartbeat:
    hb = pb.Heartbeat(beat=_int(payload.get("beat")), step=_int(payload.get("step")),
                      episode=_int(payload.get("episode")),
                      steps_per_s=_float(payload.get("steps_per_s")) or 0.0,
                      rss_bytes=_int(payload.get("rss_bytes")),
                      updates=_int(payload.get("updates")),
                      phase=str(payload.get("phase") or ""))
    finite = payload.get("metrics_finite")
    if isinstance(finite, bool):
        hb.metrics_finite = finite
    for name in ("last_return", "mean_return"):
        value = _float(payload.get(name))
        if value is not None:
            setattr(hb, name, value)
    gpu_mem = payload.get("gpu_mem_bytes")
    if isinstance(gpu_mem, int) and not isinstance(gpu_mem, bool):
        hb.gpu_mem_bytes = gpu_mem
    hb.sent_at.CopyFrom(timestamp(sent_at))
    hb.received_at.CopyFrom(timestamp(received_at))
    hb.progress.CopyFrom(struct(payload))
    return hb


_ENDED = {s.value for s in RunStatus if s.terminal}


def _compact(value: Any) -> str:
    """A map as compact sorted JSON; "" for none."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")) \
        if isinstance(value, dict) and value else ""


def recorded_heartbeat(view: Mapping[str, Any],
                       live: Optional[pb.Heartbeat]) -> Optional[pb.Heartbeat]:
    """The heartbeat a run record shows: the live one the bus brought, unless the run
    has ended with a recorded result (its terminal event's, core.runresult) that went
    further (a run shorter than one heartbeat) or nothing was heard since a restart.
    One built from the result has ``beat`` 0, ``step`` the final steps, the return
    the result reports, sent/received at the run's end and ``progress`` the result."""
    result = view.get("result")
    if not isinstance(result, dict) or not result or view.get("status") not in _ENDED:
        return live
    steps = _int(result.get("steps"))
    if live is not None and live.step > steps:
        return live
    ended = _float(view.get("finished_at")) or 0.0
    hb = pb.Heartbeat(beat=0, step=steps)
    if live is not None:   # what the result does not say, from the last heartbeat
        hb.CopyFrom(live)
        hb.beat, hb.step = 0, steps
    ret = final_return(result)
    if ret is not None:
        hb.mean_return = ret
    last, episodes = _float(result.get("last_return")), _float(result.get("episodes"))
    if last is not None:
        hb.last_return = last
    if episodes is not None:
        hb.episode = int(episodes)
    rate = _float(result.get("steps_per_s"))
    if rate is not None:
        hb.steps_per_s = rate
    hb.sent_at.CopyFrom(timestamp(ended))
    hb.received_at.CopyFrom(timestamp(ended))
    hb.progress.CopyFrom(struct(result))
    return hb


# --- the status after an event ----------------------------------------------------

def _unique_targets() -> dict[str, str]:
    targets: dict[str, set[RunStatus]] = {}
    for (_before, event_type), after in TRANSITIONS.items():
        targets.setdefault(event_type, set()).add(after)
    return {t: next(iter(s)).value for t, s in targets.items() if len(s) == 1}


UNIQUE_TARGET = _unique_targets()


class StatusTracker:
    """The status of recently seen runs, to say what status an event leaves a run in
    when the event type alone does not tell (CancelRequested, ArtifactRegistered).
    Fed every event in seq order; bounded (least recently seen runs are dropped)."""

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._status: OrderedDict[str, str] = OrderedDict()

    def after(self, run_id: str, event_type: str) -> Optional[str]:
        known = self._status.get(run_id)
        status = UNIQUE_TARGET.get(event_type)
        if status is None and known is not None:
            status = TRANSITIONS.get((RunStatus(known), event_type), None)
            status = status.value if status is not None else None
        if status is not None:
            self._status[run_id] = status
            self._status.move_to_end(run_id)
            if len(self._status) > self.capacity:
                self._status.popitem(last=False)
        return status

    def seed(self, run_id: str, status: str) -> None:
        self._status[run_id] = status
        self._status.move_to_end(run_id)
        if len(self._status) > self.capacity:
            self._status.popitem(last=False)


# --- plain helpers -----------------------------------------------------------------

def timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    whole = math.floor(seconds)
    ts.seconds = int(whole)
    ts.nanos = min(int(round((seconds - whole) * 1e9)), 999_999_999)
    return ts


def struct(data: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(_jsonable(dict(data)))
    return s


def _jsonable(value: Any) -> Any:
    """Plain data Struct accepts: bytes become text, non-finite floats become None."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _json_map(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            loaded = json.loads(value)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}
    return {}


def _list(value: Any) -> list[Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    return list(value) if isinstance(value, (list, tuple)) else []


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0
    return int(value) if math.isfinite(value) else 0


def _float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
