"""The run state machine: the only place a run's status changes.

    PENDING -> DISPATCHING (GPU slots claimed) -> RUNNING (worker started)
            -> COMPLETED | FAILED | CANCELLED
    DISPATCHING | RUNNING --AttemptEnded--> PENDING    (a retried attempt: the next one)
    COMPLETED | FAILED | CANCELLED --RerunRequested--> PENDING   (a new attempt, asked)

TRANSITIONS maps (status before, event type) to the status after. A pair that is
not in the table is illegal and ``apply`` raises IllegalTransition naming the run,
its status and the attempted move. Self-loops (an event that records something
without moving the run) are listed too, so that nothing is implicitly allowed.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional

from core import events as ev
from core.digest import canonical_json
from core.errors import IllegalTransition
from core.rundir import CODE_ARTIFACT


class RunStatus(str, enum.Enum):
    PENDING = "PENDING"
    DISPATCHING = "DISPATCHING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
ACTIVE = frozenset({RunStatus.PENDING, RunStatus.DISPATCHING, RunStatus.RUNNING})

# (status before or None for a new run, event type) -> status after
TRANSITIONS: dict[tuple[Optional[RunStatus], str], RunStatus] = {
    (None, "RunSubmitted"):                        RunStatus.PENDING,
    (RunStatus.PENDING, "RunWaiting"):             RunStatus.PENDING,
    (RunStatus.PENDING, "GpusClaimed"):            RunStatus.DISPATCHING,
    (RunStatus.DISPATCHING, "RunWaiting"):         RunStatus.DISPATCHING,   # its SLURM job
    (RunStatus.DISPATCHING, "RunStarted"):         RunStatus.RUNNING,
    (RunStatus.RUNNING, "RunAdopted"):             RunStatus.RUNNING,
    (RunStatus.PENDING, "CancelRequested"):        RunStatus.PENDING,
    (RunStatus.DISPATCHING, "CancelRequested"):    RunStatus.DISPATCHING,
    (RunStatus.RUNNING, "CancelRequested"):        RunStatus.RUNNING,
    (RunStatus.RUNNING, "RunCompleted"):           RunStatus.COMPLETED,
    (RunStatus.PENDING, "RunFailed"):              RunStatus.FAILED,
    (RunStatus.DISPATCHING, "RunFailed"):          RunStatus.FAILED,
    (RunStatus.RUNNING, "RunFailed"):              RunStatus.FAILED,
    (RunStatus.PENDING, "RunCancelled"):           RunStatus.CANCELLED,
    (RunStatus.DISPATCHING, "RunCancelled"):       RunStatus.CANCELLED,
    (RunStatus.RUNNING, "RunCancelled"):           RunStatus.CANCELLED,
    (RunStatus.COMPLETED, "GpusReleased"):         RunStatus.COMPLETED,
    (RunStatus.FAILED, "GpusReleased"):            RunStatus.FAILED,
    (RunStatus.CANCELLED, "GpusReleased"):         RunStatus.CANCELLED,
    (RunStatus.DISPATCHING, "ArtifactRegistered"): RunStatus.DISPATCHING,
    (RunStatus.RUNNING, "ArtifactRegistered"):     RunStatus.RUNNING,
    (RunStatus.COMPLETED, "ArtifactRegistered"):   RunStatus.COMPLETED,
    (RunStatus.FAILED, "ArtifactRegistered"):      RunStatus.FAILED,
    (RunStatus.CANCELLED, "ArtifactRegistered"):   RunStatus.CANCELLED,
    (RunStatus.DISPATCHING, "AttemptEnded"):       RunStatus.PENDING,
    (RunStatus.RUNNING, "AttemptEnded"):           RunStatus.PENDING,
    (RunStatus.PENDING, "GpusReleased"):           RunStatus.PENDING,   # after AttemptEnded
    (RunStatus.PENDING, "ArtifactRegistered"):     RunStatus.PENDING,   # a late one
    (RunStatus.COMPLETED, "RerunRequested"):       RunStatus.PENDING,
    (RunStatus.FAILED, "RerunRequested"):          RunStatus.PENDING,
    (RunStatus.CANCELLED, "RerunRequested"):       RunStatus.PENDING,
    # liveness flags judge a running attempt only (docs/SUPERVISION.md)
    (RunStatus.RUNNING, "RunFlagged"):             RunStatus.RUNNING,
    (RunStatus.RUNNING, "RunFlagCleared"):         RunStatus.RUNNING,
}


@dataclass(slots=True)
class RunState:
    """Everything the log says about one run, as of ``last_seq``.

    Treat it as a value: ``apply`` returns a new one. Only ``apply_in_place``
    mutates, on states its caller owns alone (a replay's private fold)."""

    run_id: str
    status: RunStatus
    digest: str
    config: dict
    config_json: str                  # canonical JSON of config, computed once
    priority: int
    submitted_by: str
    submitted_seq: int
    submitted_at: float
    updated_at: float
    last_seq: int
    version: int                      # the run stream's version (events applied)
    waiting_reason: str = ""
    gpus: tuple[str, ...] = ()
    gpus_held: bool = False           # True from GpusClaimed until GpusReleased
    pid: Optional[int] = None
    pid_start_time: Optional[float] = None
    host: str = ""
    started_at: Optional[float] = None
    finished_at: Optional[float] = None
    cause: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    message: str = ""
    cancel_requested_by: str = ""
    cancel_reason: str = ""
    cancel_requested_at: Optional[float] = None  # when the cancel was recorded (wall clock)
    artifact_count: int = 0
    adoptions: int = 0
    result: dict = field(default_factory=dict)  # from the terminal event (core.runresult)
    attempt: int = 1                  # the attempt under way (or the last one, ended)
    resume_from: str = ""             # the checkpoint the attempt resumes from ("": none)
    latest_checkpoint: str = ""       # the run's newest `checkpoint` artifact (a path)
    last_attempt_cause: str = ""      # why the attempt before this one ended
    code_digest: str = ""             # core.codeid.code_digest of ``code`` ("": none)
    code: dict = field(default_factory=dict)          # the code identity at submit
    attempt_code: dict = field(default_factory=dict)  # at the latest attempt's start
    experiment: str = ""              # the experiment it was created as a cell of ("")
    # The liveness flags (docs/SUPERVISION.md), oldest first, the last MAX_FLAGS: maps
    # {rule, action, attempt, evidence, flagged_at, seq, cleared_at, cleared_evidence}.
    flags: tuple[dict, ...] = ()
    # Where the attempt's worker was started (RunStarted): by which launcher ("local",
    # "slurm"; "": not recorded, a log from before), its SLURM job and the GPUs SLURM
    # gave that job on its node (`host`); "" and () locally and until it starts.
    launcher: str = ""
    job_id: str = ""
    job_gpus: tuple[str, ...] = ()

    @property
    def standing_flags(self) -> frozenset[str]:
        """The rules whose flag stands on the attempt under way."""
        return frozenset(f["rule"] for f in self.flags
                         if f["cleared_at"] is None and f["attempt"] == self.attempt)


def next_status(run_id: str, status: Optional[RunStatus], event_type: str) -> RunStatus:
    try:
        return TRANSITIONS[(status, event_type)]
    except KeyError:
        raise IllegalTransition(run_id, status.value if status else "NEW", event_type) from None


def apply(state: Optional[RunState], event: ev.Event, seq: int, at: float) -> RunState:
    """The run after ``event`` (committed at ``seq``, time ``at``); ``state`` is left
    as it was. Pure."""
    return apply_in_place(_copy(state) if state is not None else None, event, seq, at)


def apply_in_place(state: Optional[RunState], event: ev.Event, seq: int,
                   at: float) -> RunState:
    """``apply``, changing ``state`` itself: for a fold that owns its states (replay)."""
    status = next_status(event.run_id, state.status if state else None, event.TYPE)
    if state is None:
        assert isinstance(event, ev.RunSubmitted)
        return RunState(run_id=event.run_id, status=status, digest=event.digest,
                        config=event.config, config_json=canonical_json(event.config),
                        priority=event.priority,
                        submitted_by=event.submitted_by, submitted_seq=seq,
                        code_digest=event.code_digest, code=event.code,
                        experiment=event.experiment, submitted_at=at, updated_at=at,
                        last_seq=seq, version=1)
    for name, value in _CHANGES[event.TYPE](state, event, at).items():
        setattr(state, name, value)
    if isinstance(event, (ev.RunFlagged, ev.RunFlagCleared)):
        state.flags = _flag_log(state.flags, event, seq, at)
    state.status = status
    state.updated_at = at
    state.last_seq = seq
    state.version += 1
    return state


def _make_copy() -> Any:
    """A generated copy of a RunState (3x faster than dataclasses.replace)."""
    names = [f.name for f in dataclasses.fields(RunState)]
    src = (f"def copy(s):\n"
           f"    return _RunState({', '.join(f's.{n}' for n in names)})\n")
    scope: dict[str, Any] = {"_RunState": RunState}
    exec(src, scope)  # noqa: S102 - generated from the dataclass's own field names
    return scope["copy"]


_copy = _make_copy()


def fold(items: Iterable[tuple[int, float, ev.Event]]) -> dict[str, RunState]:
    """Fold (seq, time, event) triples into the state of every run."""
    runs: dict[str, RunState] = {}
    for seq, at, event in items:
        runs[event.run_id] = apply_in_place(runs.get(event.run_id), event, seq, at)
    return runs


def _ended(at: float, **kw: Any) -> dict[str, Any]:
    return {"finished_at": at, "waiting_reason": "", **kw}


_CHANGES = {
    "RunWaiting": lambda s, e, at: {"waiting_reason": e.reason},
    "GpusClaimed": lambda s, e, at: {"gpus": tuple(e.gpu_uuids), "gpus_held": True,
                                     "waiting_reason": ""},
    "RunStarted": lambda s, e, at: {"pid": e.pid, "pid_start_time": e.pid_start_time,
                                    "host": e.host, "started_at": at, "waiting_reason": "",
                                    "launcher": e.launcher, "job_id": e.job_id,
                                    "job_gpus": tuple(e.job_gpus)},
    "RunAdopted": lambda s, e, at: {"pid": e.pid, "adoptions": s.adoptions + 1},
    "CancelRequested": lambda s, e, at: {"cancel_requested_by": e.requested_by,
                                         "cancel_reason": e.reason,
                                         "cancel_requested_at": at},
    "RunCompleted": lambda s, e, at: _ended(at, cause=ev.TerminalCause.COMPLETED.value,
                                            exit_code=e.exit_code, result=e.result),
    "RunFailed": lambda s, e, at: _ended(at, cause=e.cause, exit_code=e.exit_code,
                                         signal=e.signal, message=e.message,
                                         result=e.result),
    "RunCancelled": lambda s, e, at: _ended(at, cause=ev.TerminalCause.CANCELLED.value,
                                            exit_code=e.exit_code, signal=e.signal,
                                            cancel_requested_by=e.requested_by or
                                            s.cancel_requested_by,
                                            cancel_reason=e.reason or s.cancel_reason,
                                            result=e.result),
    "GpusReleased": lambda s, e, at: {"gpus_held": False},
    "ArtifactRegistered": lambda s, e, at: {
        "artifact_count": s.artifact_count + 1,
        **({"latest_checkpoint": e.path} if e.kind == "checkpoint" else {}),
        **({"attempt_code": e.meta} if e.kind == CODE_ARTIFACT else {})},
    "AttemptEnded": lambda s, e, at: {**_next_attempt(e.attempt + 1, e.resume_from),
                                      "last_attempt_cause": e.cause},
    "RunFlagged": lambda s, e, at: {},       # the flag log: _flag_log (it needs the seq)
    "RunFlagCleared": lambda s, e, at: {},
    "RerunRequested": lambda s, e, at: {
        **_next_attempt(e.attempt, e.resume_from), "finished_at": None, "cause": "",
        "exit_code": None, "signal": None, "message": "", "result": {},
        "cancel_requested_by": "", "cancel_reason": "", "cancel_requested_at": None,
        "last_attempt_cause": s.cause},
}


def _next_attempt(attempt: int, resume_from: str) -> dict[str, Any]:
    """A run back in the queue for ``attempt``: what the last attempt held is gone."""
    return {"attempt": attempt, "resume_from": resume_from, "pid": None,
            "pid_start_time": None, "host": "", "started_at": None, "waiting_reason": "",
            "launcher": "", "job_id": "", "job_gpus": ()}


MAX_FLAGS = 50   # the flags a run keeps (its newest)


def _flag_log(log: tuple[dict, ...], event: ev.Event, seq: int, at: float) -> tuple[dict, ...]:
    """The log after a RunFlagged (a new entry) or a RunFlagCleared (the standing entry
    of its rule and attempt, closed)."""
    if isinstance(event, ev.RunFlagged):
        entry = {"rule": event.rule, "action": event.action, "attempt": event.attempt,
                 "evidence": event.evidence, "flagged_at": at, "seq": seq,
                 "cleared_at": None, "cleared_evidence": {}}
        return (log + (entry,))[-MAX_FLAGS:]
    assert isinstance(event, ev.RunFlagCleared)
    out = list(log)
    for i in range(len(out) - 1, -1, -1):
        f = out[i]
        if f["rule"] == event.rule and f["attempt"] == event.attempt and f["cleared_at"] is None:
            out[i] = {**f, "cleared_at": at, "cleared_evidence": event.evidence}
            break
    return tuple(out)
assert set(_CHANGES) | {"RunSubmitted"} == ev.TYPES_OF_KIND["run"], "every run event needs a change"
