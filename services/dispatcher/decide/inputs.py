"""Observations: what the shell heard or read, as plain values for ``step``.

Times: ``at`` and Tick.now are monotonic seconds; ``wall`` and CommittedEvent.ts are
wall-clock seconds. The shell turns what it heard into these, in the order heard.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from core.events import Event
from services.dispatcher.decide.gpus import Inventory
from services.dispatcher.decide.scheduling import ExperimentLimits


@dataclass(frozen=True)
class Tick:
    now: float      # monotonic
    wall: float     # wall clock


@dataclass(frozen=True)
class CommittedEvent:
    """An event the registry committed (the gap-free follower), with its seq and time."""
    seq: int
    ts: float
    event: Event


@dataclass(frozen=True)
class ExperimentRevised:
    """A committed ExperimentSubmitted (an experiment's first spec or a new revision):
    how its runs are scheduled from ``seq`` on."""
    seq: int
    limits: ExperimentLimits


@dataclass(frozen=True)
class ExperimentResumed:
    """A committed ExperimentRerun: the experiment is ACTIVE again (its limits are not
    in the event: asked for when not known)."""
    seq: int
    name: str


@dataclass(frozen=True)
class Heartbeat:
    """One heartbeat: what supervision and the liveness rules read of it."""

    run_id: str
    step: Optional[int]
    at: float                        # when heard (monotonic)
    sent: Optional[float] = None     # the worker's clock when sent (its envelope's ts)
    finite: Optional[bool] = None    # metrics_finite: every metric since the last beat
    nonfinite: str = ""              # the first metric that was not finite
    phase: str = ""                  # "" (training) or "evaluating"


@dataclass(frozen=True)
class Heartbeats:
    """The heartbeats of one drain of the bus, in the order heard: one step for all of
    them (a thousand runs beating each second cost a few dozen steps, not a thousand)."""

    beats: tuple[Heartbeat, ...]


@dataclass(frozen=True)
class ArtifactReported:
    """An artifact a worker reported on the bus. ``outside``: why its path may not be
    registered ("" if it may), judged by the shell (symlinks resolved)."""

    run_id: str
    kind: str
    path: str
    size: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    outside: str = ""


@dataclass(frozen=True)
class BusSeen:
    """Our own status came back through the broker: the bus works."""

    at: float


@dataclass(frozen=True)
class BusIdle:
    """Probing slows down (no run to watch): the bus is judged on a wider window; what
    was last seen stands."""

    window_s: float


@dataclass(frozen=True)
class BusRearmed:
    """Probing starts again after an idle spell, on a new window (the shell's pacer)."""

    window_s: float


@dataclass(frozen=True)
class ShimEnded:
    """The fork server's notice: the shim of this run ended; its exit status (None
    while it is on its way)."""
    run_id: str
    status: Optional[int] = None


@dataclass(frozen=True)
class BackEndMoved:
    """The launcher's notice: these runs' jobs moved in their back end's queue (a SLURM
    job's state or waiting reason changed): their folders are read now."""
    run_ids: tuple[str, ...]


@dataclass(frozen=True)
class WorkerRecord:
    pid: int
    pgid: int
    start_time: Optional[float]   # the process start time the shim read
    started_at: Optional[float]   # wall clock, when the shim started it
    cores: tuple[int, ...] = ()   # the CPUs the shim pinned it to (() = not pinned)
    attempt: Optional[int] = None  # the attempt its shim ran (None: a shim from before)


@dataclass(frozen=True)
class ExitRecord:
    exit_code: Optional[int]
    signal: Optional[int]
    signal_name: str = ""         # the shell names the signal (SIGKILL)
    spawn_error: str = ""
    leftovers_killed: int = 0
    memory_exceeded: bool = False  # over its memory limit (its shim or cgroup killed it)
    memory_limit_mb: int = 0
    memory_peak_mb: Optional[float] = None
    memory_enforced_by: str = ""   # cgroup | sampled ("" = no limit)
    attempt: Optional[int] = None  # the attempt its shim ran (None: a shim from before)


@dataclass(frozen=True)
class KillRecord:
    """The kill an earlier dispatcher began (kill.json); term_at is wall clock."""

    outcome: str
    cause: str
    message: str
    term_at: float
    grace_s: float


@dataclass(frozen=True)
class ManifestEntry:
    kind: str
    path: str
    size: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    outside: str = ""             # why it may not be registered ("" if it may)


@dataclass(frozen=True)
class FolderRead:
    """What a run's folder (and the process table) holds. The shell reads whether a
    shim holds the run BEFORE it reads the exit record: "no shim, no exit record" read
    in that order is final. ``shim_alive``: a shim holds the run's lock (or its
    recorded pid lives, where folders cannot be locked). ``worker_alive``: the worker
    record's pid lives with the recorded start time. ``processes``: the pids of the
    run (its process group, and the run id in their environment)."""

    run_id: str
    worker: Optional[WorkerRecord] = None
    exit: Optional[ExitRecord] = None
    kill: Optional[KillRecord] = None
    shim_alive: bool = False
    worker_alive: bool = False
    group_alive: bool = False
    processes: frozenset[int] = frozenset()
    disk_free: Optional[int] = None     # bytes free where the run folder is
    stderr_tail: str = ""
    manifest: tuple[ManifestEntry, ...] = ()
    metrics: Mapping[str, Any] = field(default_factory=dict)  # result.json's metrics
    result_problem: str = ""            # why result.json gave none ("" if it did)
    result_cause: str = ""              # result.json's typed cause of a failure (the SDK's)
    result_reason: str = ""             # ... and its reason
    # The back end's verdict, where it ended the attempt (a SLURM job scancelled, past
    # its limit): a TerminalCause value and why; our kill wins over it, it over the exit
    # record. Why it waits in the back end's queue ("SLURM: Resources"). Where its
    # worker runs (a SLURM job's node), its job and GPUs: RunStarted's host, job_id,
    # job_gpus ("": the dispatcher's host, no job)
    ended_by: str = ""
    ended_message: str = ""
    waiting: str = ""
    host: str = ""
    job_id: str = ""
    job_gpus: tuple[str, ...] = ()

    def stale_attempt(self, attempt: int) -> Optional[int]:
        """The attempt of a worker or exit record here that is not ``attempt``'s (None
        when there is none): an earlier attempt's, which ``launch.set_aside`` had not
        moved yet (a dispatcher killed between the claim of the next attempt and its
        start). A record without an attempt (a shim from before they were recorded)
        counts as the run's current attempt's."""
        for record in (self.exit, self.worker):
            if record is not None and record.attempt is not None \
                    and record.attempt != attempt:
                return record.attempt
        return None

    def of_attempt(self, attempt: int) -> "FolderRead":
        """The read as attempt ``attempt`` sees it: the records of another attempt
        (``stale_attempt``) count as absent, and so does what was read because of them
        (whether that worker or its group lives; that end's stderr and what
        result.json said). The read itself when it holds none."""
        if self.stale_attempt(attempt) is None:
            return self
        changes: dict[str, Any] = {}
        if self.worker is not None and self.worker.attempt not in (None, attempt):
            changes.update(worker=None, worker_alive=False, group_alive=False)
        if self.exit is not None and self.exit.attempt not in (None, attempt):
            changes.update(exit=None, group_alive=False, stderr_tail="", metrics={},
                           result_problem="", result_cause="", result_reason="")
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StartFailed:
    """The shell could not prepare or request the worker (unknown worker, OSError)."""

    run_id: str
    message: str


@dataclass(frozen=True)
class GpusRead:
    inventory: Optional[Inventory]
    error: str = ""               # a bug in the read: the inventory is kept


class ReplyKind(str, enum.Enum):
    APPLIED = "applied"
    NOT_APPLIED = "not_applied"   # a failed batch, a full disk: may be sent again
    BUSY = "busy"                 # ResourceBusy: a GPU is held by another run
    REFUSED = "refused"           # refused for good (illegal, not found, invalid)


@dataclass(frozen=True)
class RunView:
    """A run as the registry's reply shows it."""

    run_id: str
    status: str
    config: Mapping[str, Any]
    last_seq: int
    priority: int = 0
    submitted_seq: int = 0
    gpus: tuple[str, ...] = ()
    cancel_requested_by: str = ""
    cancel_reason: str = ""
    cancel_requested_at: Optional[float] = None
    attempt: int = 1
    resume_from: str = ""
    python: str = ""                # a claim's: its python_env's interpreter ("": ours)
    python_error: str = ""          # a claim's: why that interpreter cannot be had
    experiment: str = ""            # the experiment it was created as a cell of
    flags: frozenset[str] = frozenset()  # the liveness rules standing on its attempt


@dataclass(frozen=True)
class Replied:
    """The registry's answer to a Call or Query, matched by its tag."""

    tag: int
    kind: ReplyKind
    code: str = ""
    message: str = ""
    run: Optional[RunView] = None        # claim_gpus, get_run
    runs: tuple[RunView, ...] = ()       # snapshot (a page)
    experiments: tuple[ExperimentLimits, ...] = ()  # snapshot: those that set a limit;
    #                                                  get_experiment: the one
    head_seq: int = 0
    more: bool = False
    gpu_uuid: str = ""                   # BUSY: the GPU, and the run holding it
    holder: str = ""


@dataclass(frozen=True)
class RegistryLost:
    """A call found the registry away (Unavailable): answers in flight are lost."""

    reason: str = ""


@dataclass(frozen=True)
class RegistryBack:
    """The registry answers (at start-up, or after it was lost): read the state."""
