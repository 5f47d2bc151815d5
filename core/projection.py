"""Projections: the tables derived from the event log, and the pure function that
says how one event changes them.

The live registry and the replay tool both call ``changes()``; only the way the
resulting RowChanges reach SQLite differs (at once, or coalesced in batches), so
the two cannot disagree. Table definitions live here too, as plain data.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Optional, Union

from core import events as ev
from core.digest import canonical_json
from core.envstate import EnvState, apply_env
from core.experimentstate import ExperimentState, apply_experiment
from core.streams import ENV_STREAM, EXPERIMENT_STREAM, RUN_STREAM
from core.runstate import RunState, RunStatus, apply, apply_in_place

RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "status", "digest", "config", "priority", "submitted_by", "submitted_seq",
    "submitted_at", "updated_at", "last_seq", "version", "waiting_reason", "gpus",
    "gpus_held", "pid", "pid_start_time", "host", "started_at", "finished_at", "cause",
    "exit_code", "signal", "message", "cancel_requested_by", "cancel_reason",
    "artifact_count", "adoptions", "result", "cancel_requested_at", "attempt",
    "resume_from", "latest_checkpoint", "last_attempt_cause", "code_digest", "code",
    "attempt_code", "experiment", "flags", "launcher", "job_id", "job_gpus",
)
GPU_SLOT_COLUMNS: tuple[str, ...] = ("gpu_uuid", "run_id", "claimed_seq")
ARTIFACT_COLUMNS: tuple[str, ...] = ("run_id", "path", "kind", "size", "meta", "seq",
                                     "registered_at")
ENV_COLUMNS: tuple[str, ...] = (
    "name", "python", "python_version", "sys_path", "prefix", "sdk_version", "added_by",
    "added_seq", "added_at", "updated_at", "last_seq", "version", "removed", "removed_by",
    "removed_at", "remove_reason",
)
EXPERIMENT_COLUMNS: tuple[str, ...] = (
    "name", "status", "spec", "spec_digest", "points", "cells", "cell_count",
    "max_concurrent", "priority", "submitted_by", "created_seq", "created_at", "updated_at",
    "last_seq", "version", "revision", "cancelled_by", "cancel_reason", "cancelled_at",
)
# One row per cell of each experiment's current revision: which runs are whose cells.
EXPERIMENT_CELL_COLUMNS: tuple[str, ...] = ("experiment", "point", "seed", "run_id")

# table -> (columns, primary key columns)
TABLES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "runs": (RUN_COLUMNS, ("run_id",)),
    "gpu_slots": (GPU_SLOT_COLUMNS, ("gpu_uuid",)),
    "artifacts": (ARTIFACT_COLUMNS, ("run_id", "path")),
    "envs": (ENV_COLUMNS, ("name",)),
    "experiments": (EXPERIMENT_COLUMNS, ("name",)),
    "experiment_cells": (EXPERIMENT_CELL_COLUMNS, ("experiment", "point", "seed")),
}
# Each stream kind's own table: one row per stream, rewritten (with its last_seq) by
# every event of the stream. A new kind adds its table here.
STREAM_TABLES: dict[str, str] = {RUN_STREAM: "runs", ENV_STREAM: "envs",
                                 EXPERIMENT_STREAM: "experiments"}
State = Union[RunState, EnvState, ExperimentState]


@dataclass(frozen=True, slots=True)
class RowChange:
    """Upsert ``row`` (a tuple in the table's column order) or delete ``key``."""

    table: str
    row: Optional[tuple[Any, ...]] = None
    key: Optional[tuple[Any, ...]] = None


def run_row(s: RunState) -> tuple[Any, ...]:
    return (s.run_id, s.status.value, s.digest, s.config_json, s.priority,
            s.submitted_by, s.submitted_seq, s.submitted_at, s.updated_at, s.last_seq,
            s.version, s.waiting_reason, _gpus_json(s.gpus), int(s.gpus_held), s.pid,
            s.pid_start_time, s.host, s.started_at, s.finished_at, s.cause, s.exit_code,
            s.signal, s.message, s.cancel_requested_by, s.cancel_reason, s.artifact_count,
            s.adoptions, canonical_json(s.result) if s.result else None,
            s.cancel_requested_at, s.attempt, s.resume_from, s.latest_checkpoint,
            s.last_attempt_cause, s.code_digest, _map_json(s.code), _map_json(s.attempt_code),
            s.experiment, canonical_json(list(s.flags)) if s.flags else None,
            s.launcher, s.job_id, _gpus_json(s.job_gpus))


def _map_json(value: dict) -> Optional[str]:
    return canonical_json(value) if value else None


def _gpus_json(gpus: tuple[str, ...]) -> str:
    """json.dumps(list(gpus)), without the encoder for the common plain uuids."""
    if all(_PLAIN.match(g) for g in gpus):
        return "[" + ", ".join(f'"{g}"' for g in gpus) + "]"
    return json.dumps(list(gpus))


_PLAIN = re.compile(r"^[A-Za-z0-9._:-]*$")


def run_from_row(row: tuple[Any, ...]) -> RunState:
    d = dict(zip(RUN_COLUMNS, row))
    d["status"] = RunStatus(d["status"])
    d["config_json"] = d["config"]
    d["config"] = json.loads(d["config"])
    d["gpus"] = tuple(json.loads(d["gpus"]))
    d["gpus_held"] = bool(d["gpus_held"])
    d["result"] = json.loads(d["result"]) if d["result"] else {}  # NULL: none recorded
    d["attempt"] = d["attempt"] or 1
    for name in ("resume_from", "latest_checkpoint", "last_attempt_cause", "code_digest",
                 "experiment", "launcher", "job_id"):
        d[name] = d[name] or ""
    d["job_gpus"] = tuple(json.loads(d["job_gpus"])) if d["job_gpus"] else ()
    for name in ("code", "attempt_code"):
        d[name] = json.loads(d[name]) if d[name] else {}
    d["flags"] = tuple(json.loads(d["flags"])) if d["flags"] else ()
    return RunState(**d)


def run_view(s: RunState) -> dict[str, Any]:
    """A run as plain data for replies and tools (config as a map, gpus as a list)."""
    view = dict(zip(RUN_COLUMNS, run_row(s)))
    view.update(config=s.config, gpus=list(s.gpus), gpus_held=s.gpus_held,
                result=dict(s.result), code=dict(s.code), attempt_code=dict(s.attempt_code),
                flags=[dict(f) for f in s.flags], job_gpus=list(s.job_gpus))
    return view


def env_row(s: EnvState) -> tuple[Any, ...]:
    return (s.name, s.python, s.python_version, json.dumps(list(s.sys_path)), s.prefix,
            s.sdk_version, s.added_by, s.added_seq, s.added_at, s.updated_at, s.last_seq,
            s.version, int(s.removed), s.removed_by, s.removed_at, s.remove_reason)


def env_from_row(row: tuple[Any, ...]) -> EnvState:
    d = dict(zip(ENV_COLUMNS, row))
    d["sys_path"] = tuple(json.loads(d["sys_path"]))
    d["removed"] = bool(d["removed"])
    return EnvState(**d)


def experiment_row(s: ExperimentState) -> tuple[Any, ...]:
    return (s.name, s.status, canonical_json(s.spec), s.spec_digest, canonical_json(s.points),
            json.dumps([list(c) for c in s.cells], separators=(",", ":")), len(s.cells),
            s.max_concurrent, s.priority, s.submitted_by, s.created_seq, s.created_at,
            s.updated_at, s.last_seq, s.version, s.revision, s.cancelled_by, s.cancel_reason,
            s.cancelled_at)


def experiment_from_row(row: tuple[Any, ...]) -> ExperimentState:
    d = dict(zip(EXPERIMENT_COLUMNS, row))
    del d["cell_count"]
    d["spec"] = json.loads(d["spec"])
    d["points"] = json.loads(d["points"])
    d["cells"] = tuple((p, seed, r) for p, seed, r in json.loads(d["cells"]))
    return ExperimentState(**d)


def _cell_changes(before: Optional[ExperimentState],
                  after: ExperimentState) -> list[RowChange]:
    """The experiment_cells rows of a new revision: the old cells' rows deleted, the
    new ones written (a cell is keyed by its point's index, which a revision renumbers)."""
    old = set(before.cells) if before is not None else set()
    new_keys = {(p, seed) for p, seed, _ in after.cells}
    out = [RowChange("experiment_cells", key=(after.name, p, seed))
           for p, seed, _ in sorted(old) if (p, seed) not in new_keys]
    out.extend(RowChange("experiment_cells", row=(after.name, p, seed, r))
               for p, seed, r in after.cells if (p, seed, r) not in old)
    return out


def key_of(event: ev.DomainEvent) -> tuple[str, str]:
    """(stream kind, key) of the stream an event belongs to: whose state it changes."""
    return event.STREAM, event.stream_key


def state_key(state: State) -> tuple[str, str]:
    """(stream kind, key) of a state: the stream it is the fold of."""
    if isinstance(state, RunState):
        return RUN_STREAM, state.run_id
    if isinstance(state, ExperimentState):
        return EXPERIMENT_STREAM, state.name
    return ENV_STREAM, state.name


def own_row(state: State) -> tuple[str, tuple[Any, ...]]:
    """(table, row) of a stream's own row: its state as the projection stores it."""
    if isinstance(state, RunState):
        return "runs", run_row(state)
    if isinstance(state, ExperimentState):
        return "experiments", experiment_row(state)
    return "envs", env_row(state)


def changes(before: Optional[State], event: ev.DomainEvent, seq: int, at: float,
            in_place: bool = False) -> tuple[State, list[RowChange]]:
    """Apply one event: its stream's new state (a run's, an environment's, an
    experiment's), and the
    changes it makes to the other tables (the stream's own row is ``own_row(state)``).
    Pure. ``before``: the state of the event's stream (``key_of(event)``).

    ``in_place``: change ``before`` itself (a replay that owns its states).
    Raises IllegalTransition (from the state machine) when the event is not allowed."""
    if isinstance(event, ev.EnvEvent):
        assert before is None or isinstance(before, EnvState)
        return apply_env(before, event, seq, at), []
    if isinstance(event, ev.ExperimentEvent):
        assert before is None or isinstance(before, ExperimentState)
        state = apply_experiment(before, event, seq, at)
        cells = _cell_changes(before, state) if isinstance(event, ev.ExperimentSubmitted) \
            else []
        return state, cells
    assert isinstance(event, ev.Event) and (before is None or isinstance(before, RunState))
    after = (apply_in_place if in_place else apply)(before, event, seq, at)
    out: list[RowChange] = []
    if isinstance(event, ev.GpusClaimed):
        out.extend(RowChange("gpu_slots", row=(u, event.run_id, seq)) for u in event.gpu_uuids)
    elif isinstance(event, ev.GpusReleased):
        out.extend(RowChange("gpu_slots", key=(u,)) for u in event.gpu_uuids)
    elif isinstance(event, ev.ArtifactRegistered):
        out.append(RowChange("artifacts", row=(event.run_id, event.path, event.kind,
                                               event.size,
                                               canonical_json(event.meta) if event.meta else "{}",
                                               seq, at)))
    return after, out
