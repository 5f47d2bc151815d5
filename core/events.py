"""Domain events: one frozen dataclass per fact, and the EVENT_TYPES registry.

Every event belongs to one stream of a kind (core.streams): a run's events (``Event``) to
``run-<run_id>``, a Python environment's (``EnvEvent``) to ``env-<name>``, an
experiment's (``ExperimentEvent``) to ``exp-<name>``. ``TYPE`` is
its stable name on the wire and in the log; ``SCHEMA_VERSION`` is the version of its
fields.
Old versions are upcast at read time in ``core.upcasting`` (the one place for it).

High-rate telemetry (heartbeats, metrics, log lines) is never a domain event.
"""

from __future__ import annotations

import dataclasses
import enum
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from core.errors import ValidationError
from core.fields import from_map
from core.streams import ENV_STREAM, EXPERIMENT_STREAM, RUN_STREAM, STREAM_KINDS, stream_name


class TerminalCause(str, enum.Enum):
    """Why a run ended. Stable strings: they are stored and sent on the wire."""

    COMPLETED = "completed"              # exit code 0
    EXIT_CODE = "exit_code"              # the worker exited non-zero
    SIGNAL = "signal"                    # the worker was killed by a signal
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    TIME_LIMIT = "time_limit"
    LOST = "lost"                        # process gone and no exit record
    UNSCHEDULABLE = "unschedulable"      # can never fit (asks for more than exists)
    SPAWN_ERROR = "spawn_error"          # the worker could not be started
    CHECKPOINT_IGNORED = "checkpoint_ignored"  # given a checkpoint, it never loaded it
    MEMORY_LIMIT = "memory_limit"        # over its resources.memory_limit_mb: killed
    NOT_LEARNING = "not_learning"        # a liveness rule's stop or kill (docs/SUPERVISION.md)
    CANCELLED = "cancelled"
    SLURM_CANCELLED = "slurm_cancelled"  # its SLURM job cancelled from outside (docs/SLURM.md)
    NODE_FAILURE = "node_failure"        # its SLURM job's node failed (NODE_FAIL)
    PREEMPTED = "preempted"              # its SLURM job was preempted (PREEMPTED)


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """Any event of the log. ``STREAM``: the kind of stream it belongs to (core.ids);
    ``stream_key``: which one of that kind (a run id, an environment's name)."""

    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1
    STREAM: ClassVar[str] = ""

    @property
    def stream_key(self) -> str:
        raise NotImplementedError

    @property
    def stream(self) -> str:
        return stream_name(self.STREAM, self.stream_key)

    def to_payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass(frozen=True, slots=True)
class Event(DomainEvent):
    """An event of one run's stream, ``run-<run_id>``."""

    STREAM: ClassVar[str] = RUN_STREAM
    run_id: str

    @property
    def stream_key(self) -> str:
        return self.run_id


@dataclass(frozen=True, slots=True)
class RunSubmitted(Event):
    """A run was accepted. Fields: run_id, digest (SHA-256 of the canonical config),
    config (the config map, defaults applied), priority (higher runs first),
    submitted_by (who asked), code (the worker's code identity at submit, core.codeid;
    {} where none was computed), code_digest (core.codeid.code_digest of it; ""),
    experiment (the name of the experiment whose cell it was created as; "": none).
    v1 had no submitted_by; v2 no code; v3 no experiment."""

    TYPE: ClassVar[str] = "RunSubmitted"
    SCHEMA_VERSION: ClassVar[int] = 4
    digest: str
    config: dict
    priority: int
    submitted_by: str
    code: dict = field(default_factory=dict)
    code_digest: str = ""
    experiment: str = ""


@dataclass(frozen=True, slots=True)
class RunWaiting(Event):
    """The scheduler cannot start the run yet. Fields: run_id, reason."""

    TYPE: ClassVar[str] = "RunWaiting"
    reason: str


@dataclass(frozen=True, slots=True)
class GpusClaimed(Event):
    """GPU slots were claimed for the run (PENDING -> DISPATCHING). Fields: run_id,
    gpu_uuids (possibly empty for a CPU-only run), claimed_by (the dispatcher)."""

    TYPE: ClassVar[str] = "GpusClaimed"
    gpu_uuids: tuple[str, ...]
    claimed_by: str


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """The worker process runs (DISPATCHING -> RUNNING). Fields: run_id, pid,
    pid_start_time (tells a reused pid apart), host (a SLURM job's node), attempt (v1: 1),
    launcher (local | slurm), job_id, job_gpus (its SLURM job and the GPUs SLURM gave it,
    as SLURM numbers them; "", () locally): added at v2 with defaults, no new version."""

    TYPE: ClassVar[str] = "RunStarted"
    SCHEMA_VERSION: ClassVar[int] = 2
    pid: int
    pid_start_time: float
    host: str
    attempt: int = 1
    launcher: str = ""
    job_id: str = ""
    job_gpus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RunAdopted(Event):
    """A restarted dispatcher took over a live worker. Fields: run_id, pid, adopted_by."""

    TYPE: ClassVar[str] = "RunAdopted"
    pid: int
    adopted_by: str


@dataclass(frozen=True, slots=True)
class CancelRequested(Event):
    """Someone asked to cancel the run. Fields: run_id, requested_by, reason."""

    TYPE: ClassVar[str] = "CancelRequested"
    requested_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunCompleted(Event):
    """The worker exited 0. Fields: run_id, exit_code (always 0), result (the run's
    recorded result, core.runresult: final steps, total steps, the worker's numeric
    metrics; empty when none was known; absent in logs written before it existed)."""

    TYPE: ClassVar[str] = "RunCompleted"
    SCHEMA_VERSION: ClassVar[int] = 2
    exit_code: int
    result: dict = field(default_factory=dict)
    attempt: int = 1                # the attempt that ended the run (v1 had none: 1)


@dataclass(frozen=True, slots=True)
class RunFailed(Event):
    """The run ended badly. Fields: run_id, cause (a TerminalCause value), exit_code
    (or None), signal (or None), message (for instance the last lines of stderr),
    result (as for RunCompleted)."""

    TYPE: ClassVar[str] = "RunFailed"
    SCHEMA_VERSION: ClassVar[int] = 2
    cause: str
    exit_code: typing.Optional[int]
    signal: typing.Optional[int]
    message: str
    result: dict = field(default_factory=dict)
    attempt: int = 1                # the attempt that ended the run (v1 had none: 1)


@dataclass(frozen=True, slots=True)
class RunCancelled(Event):
    """The run ended because it was cancelled. Fields: run_id, requested_by, reason,
    exit_code and signal of the worker (None when it never ran), result (as for
    RunCompleted)."""

    TYPE: ClassVar[str] = "RunCancelled"
    SCHEMA_VERSION: ClassVar[int] = 2
    requested_by: str
    reason: str
    exit_code: typing.Optional[int]
    signal: typing.Optional[int]
    result: dict = field(default_factory=dict)
    attempt: int = 1                # the attempt that ended the run (v1 had none: 1)


@dataclass(frozen=True, slots=True)
class AttemptEnded(Event):
    """An attempt ended with a cause its run's retry policy names, and attempts are
    left: the run is PENDING again for the next one (RUNNING | DISPATCHING -> PENDING;
    its GPUs are released in the same transaction). Fields: run_id, attempt (the one
    that ended), cause (a TerminalCause value), exit_code, signal, message, resume_from
    (the checkpoint artifact the next attempt resumes from, a path in the run folder;
    "" when it starts from scratch), result (as for RunCompleted)."""

    TYPE: ClassVar[str] = "AttemptEnded"
    attempt: int
    cause: str
    exit_code: typing.Optional[int]
    signal: typing.Optional[int]
    message: str
    resume_from: str
    result: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RerunRequested(Event):
    """An ended run was given a new attempt (COMPLETED | FAILED | CANCELLED -> PENDING).
    Fields: run_id, attempt (the new one), requested_by, reason, resume_from (the
    checkpoint artifact it resumes from; "" from scratch)."""

    TYPE: ClassVar[str] = "RerunRequested"
    attempt: int
    requested_by: str
    reason: str
    resume_from: str


@dataclass(frozen=True, slots=True)
class GpusReleased(Event):
    """The run's GPU slots are free again; always in the transaction of its terminal
    event. Fields: run_id, gpu_uuids."""

    TYPE: ClassVar[str] = "GpusReleased"
    gpu_uuids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ArtifactRegistered(Event):
    """A file in the run directory is an artifact. Fields: run_id, kind (video,
    checkpoint, ...), path (relative to the run directory), size (bytes), meta (map)."""

    TYPE: ClassVar[str] = "ArtifactRegistered"
    kind: str
    path: str
    size: int
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunFlagged(Event):
    """A liveness rule judged the running attempt not learning (docs/SUPERVISION.md).
    Fields: run_id, attempt, rule (stalled | diverged | slowed | gpu_idle), action (warn |
    checkpoint | stop | kill: what the dispatcher does about it), evidence (map: the
    values seen and the window they were seen over)."""

    TYPE: ClassVar[str] = "RunFlagged"
    attempt: int
    rule: str
    action: str
    evidence: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RunFlagCleared(Event):
    """A standing flag's rule no longer holds (the steps advance again, the metrics are
    finite, ...). Fields: run_id, attempt, rule, evidence (map: what was seen)."""

    TYPE: ClassVar[str] = "RunFlagCleared"
    attempt: int
    rule: str
    evidence: dict = field(default_factory=dict)


# --- the stream of a Python environment, env-<name> ------------------------------------

@dataclass(frozen=True, slots=True)
class EnvEvent(DomainEvent):
    """An event of one registered Python environment's stream, ``env-<name>``."""

    STREAM: ClassVar[str] = ENV_STREAM
    name: str

    @property
    def stream_key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class EnvAdded(EnvEvent):
    """A Python environment was registered (or registered again: what its interpreter
    said then replaces what it said before). Fields: name, python (the interpreter's
    absolute path), python_version (e.g. "3.11.7"), sys_path (the interpreter's
    sys.path, where its workers' entry points are read), prefix (its sys.prefix),
    sdk_version (the version of the distribution that provides worker.runner there),
    added_by (who asked)."""

    TYPE: ClassVar[str] = "EnvAdded"
    python: str
    python_version: str
    sys_path: tuple[str, ...]
    prefix: str
    sdk_version: str
    added_by: str


@dataclass(frozen=True, slots=True)
class EnvRemoved(EnvEvent):
    """A Python environment was removed: runs can no longer name it. Fields: name,
    removed_by, reason."""

    TYPE: ClassVar[str] = "EnvRemoved"
    removed_by: str
    reason: str


# --- the stream of an experiment, exp-<name> ------------------------------------------

@dataclass(frozen=True, slots=True)
class ExperimentEvent(DomainEvent):
    """An event of one experiment's stream, ``exp-<name>``."""

    STREAM: ClassVar[str] = EXPERIMENT_STREAM
    name: str

    @property
    def stream_key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ExperimentSubmitted(ExperimentEvent):
    """An experiment's spec was submitted: the first time (its stream begins) or
    changed (a new revision: its cells are the new spec's). Fields: name, spec (the
    spec with its defaults, core.sweepspec), spec_digest, points (each config point's
    axis values, in the spec's order), cells (one [point, seed, run_id] per cell: the
    index into points, the seed, the run; runs created here are RunSubmitted events of
    the same commit, the others existed already), max_concurrent (runs of the
    experiment running at once; 0: no limit), priority (the cells' queue priority;
    null: each run's own), submitted_by (who asked)."""

    TYPE: ClassVar[str] = "ExperimentSubmitted"
    spec: dict
    spec_digest: str
    points: list
    cells: list
    max_concurrent: int
    priority: Optional[int]
    submitted_by: str


@dataclass(frozen=True, slots=True)
class ExperimentCancelled(ExperimentEvent):
    """The experiment was cancelled: each of its runs not ended was asked to cancel
    (CancelRequested in its own stream, in the same commit). Fields: name,
    requested_by, reason, runs (the runs asked)."""

    TYPE: ClassVar[str] = "ExperimentCancelled"
    requested_by: str
    reason: str
    runs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ExperimentRerun(ExperimentEvent):
    """The experiment's failed and cancelled cells were asked to run again, each as a
    new attempt of its run (RerunRequested in its own stream, in the same commit).
    Fields: name, requested_by, runs (the runs rerun)."""

    TYPE: ClassVar[str] = "ExperimentRerun"
    requested_by: str
    runs: tuple[str, ...]


EVENT_TYPES: dict[str, type[DomainEvent]] = {
    cls.TYPE: cls
    for cls in (RunSubmitted, RunWaiting, GpusClaimed, RunStarted, RunAdopted,
                CancelRequested, RunCompleted, RunFailed, RunCancelled, GpusReleased,
                ArtifactRegistered, AttemptEnded, RerunRequested, RunFlagged, RunFlagCleared,
                EnvAdded, EnvRemoved,
                ExperimentSubmitted, ExperimentCancelled, ExperimentRerun)
}
# The event types of each stream kind (core.streams.STREAM_KINDS).
TYPES_OF_KIND: dict[str, frozenset[str]] = {
    kind: frozenset(t for t, cls in EVENT_TYPES.items() if cls.STREAM == kind)
    for kind in STREAM_KINDS}


def event_from_payload(type_name: str, payload: Any) -> DomainEvent:
    """Build an event of the current schema version from a payload map.

    Raises ValidationError naming the field when the payload does not fit."""
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ValidationError("type", f"unknown event type {type_name!r}")
    return from_map(cls, payload, type_name)
