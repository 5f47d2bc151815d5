"""The dispatcher's state as one value, and the record of one run.

A RunRecord is frozen: ``record.moved(move, **changes)`` returns the record after a
move of the phase table (services/dispatcher/decide/phases.py), or None when the move
drops the run; an illegal move raises IllegalMove. DispatcherState is frozen too; the
step functions build the next one with ``dataclasses.replace`` and copy a mapping
only when they change it (``with_run``), so nothing a caller holds changes under it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from core.runconfig import RunConfig
from services.dispatcher.decide.gpus import Inventory
from services.dispatcher.decide.liveness import Liveness
from services.dispatcher.decide.phases import Move, Phase, next_phase
from services.dispatcher.decide.scheduling import ExperimentLimits, Pending
from services.dispatcher.decide.supervise import BusHealth, KillPlan, Watch
from services.dispatcher.decide.values import replaced

SOURCE = "dispatcher"   # claimed_by / adopted_by, and our status's source
SWEEP_S = 0.25          # folders of starting and adopted runs, retries: this often
FULL_SWEEP_S = 2.0      # every run's folder (an exit notice missed), the GPUs: this often
PROBE_GAP_S = 0.02      # an overdue run asks for a fresh bus probe at most this often
REAP_PATIENCE_S = 5.0   # processes that outlive SIGKILL this long are reported
BACKLOG_PHASES = frozenset({Phase.STARTING, Phase.RECOVERING})   # (RunRecord.backlogged)


@dataclass(frozen=True)
class Cancel:
    requested_by: str
    reason: str
    at: Optional[float] = None   # when the registry recorded it (wall clock)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    phase: Phase
    config: RunConfig
    priority: int = 0
    submitted_seq: int = 0
    gpus: tuple[str, ...] = ()
    adopted: bool = False          # its shim is not our child (a restart)
    started_recorded: bool = False  # the registry has its RunStarted
    pgid: Optional[int] = None
    pid: Optional[int] = None
    pid_start_time: Optional[float] = None
    watch: Optional[Watch] = None
    kill: Optional[KillPlan] = None
    cancel: Optional[Cancel] = None
    last_step: Optional[int] = None
    waiting_reason: str = ""       # the reason the registry has stored
    # Its last folder read said it waits in its back end's queue (a SLURM job pending
    # for a reason: FolderRead.waiting); see ``backlogged``
    in_backend_queue: bool = False
    artifacts: frozenset[str] = frozenset()   # paths registered (or refused) already
    # RegisterArtifact commands to send: reported before its worker record was read
    # (STARTING), or from its manifest and not applied yet (ENDING: its end waits)
    artifacts_todo: tuple[Any, ...] = ()
    shim_ended: bool = False       # the fork server told of its shim's end
    shim_status: Optional[int] = None  # ... and its exit status (None: on its way)
    finish: Any = None             # the FinishRun to send (ENDING, JUDGING)
    reaping_since: Optional[float] = None
    reap_reported: bool = False
    noted: bool = False            # its first read was logged (RECOVERING: awaited)
    attempt: int = 1               # the registry's attempt of the run
    resume_from: str = ""          # the checkpoint (in its folder) the attempt resumes from
    cores: tuple[int, ...] = ()    # the CPUs its worker is pinned to (() = not pinned)
    python: str = ""               # the interpreter of its python_env ("": the dispatcher's)
    host: str = ""                 # where its worker runs, as its launcher says ("": ours)
    job_id: str = ""               # ... its SLURM job ("": none)
    job_gpus: tuple[str, ...] = () # ... and the GPUs SLURM gave that job
    python_error: str = ""         # why that interpreter cannot be had (the claim's answer)
    experiment: str = ""           # the experiment it was created as a cell of ("": none)
    # A cell heard before its experiment's ExperimentSubmitted (which follows its cells'
    # RunSubmitted in the same commit): not scheduled until that is heard.
    awaits_spec: bool = False
    liveness: Optional[Liveness] = None   # its learning judged (decide/liveness.py)
    standing_flags: frozenset[str] = frozenset()  # as the registry had them (adopted)

    @property
    def cpu_slots(self) -> int:
        return self.config.resources.cpu_slots

    def pending(self, experiments: Optional[Mapping[str, ExperimentLimits]] = None) -> Pending:
        """The run as the scheduler sees it: with its experiment's limit, and its
        experiment's priority where that sets one."""
        res = self.config.resources
        limits = experiments.get(self.experiment) if experiments and self.experiment \
            else None
        if limits is None:
            return Pending(self.run_id, self.priority, self.submitted_seq, res.gpus,
                           res.min_gpu_memory_mb, res.cpu_slots, self.experiment)
        priority = self.priority if limits.priority is None else limits.priority
        return Pending(self.run_id, priority, self.submitted_seq, res.gpus,
                       res.min_gpu_memory_mb, res.cpu_slots, self.experiment,
                       limits.max_concurrent)

    def moved(self, move: Move, **changes: Any) -> Optional["RunRecord"]:
        after = next_phase(self.run_id, self.phase, move)
        if after is None:
            return None
        return replaced(self, phase=after, **changes)

    def changed(self, **changes: Any) -> "RunRecord":
        """The same phase, other fields (no move)."""
        return replaced(self, **changes)

    @property
    def backlogged(self) -> bool:
        """Not started, and waiting in its back end's queue (its shim's end not told):
        nothing of it can change but by its back end, whose launcher tells of it, so it
        is read at full sweeps only and needs no tick of the loop."""
        return self.in_backend_queue and self.phase in BACKLOG_PHASES and not self.shim_ended


class CallFor(str, enum.Enum):
    """What a registry call in flight was for: its reply is handled accordingly."""

    CLAIM = "claim"
    NEVER = "never"
    WAITING = "waiting"
    STARTED = "started"
    ADOPTED = "adopted"
    FINISH = "finish"
    ARTIFACT = "artifact"
    SNAPSHOT = "snapshot"
    GET_RUN = "get_run"
    EXPERIMENT = "experiment"
    FLAG = "flag"
    CLEAR_FLAG = "clear_flag"


@dataclass(frozen=True)
class InFlight:
    purpose: CallFor
    run_id: str = ""
    detail: Any = None    # the waiting reason, the artifact path, ...


@dataclass(frozen=True)
class Counters:
    started: int = 0
    finished: int = 0
    adopted: int = 0
    kills: int = 0
    retried: int = 0             # attempts ended that the registry began again
    flags: int = 0               # liveness flags raised (decide/learning.py)


@dataclass(frozen=True)
class DispatcherConfig:
    cpu_slots: int
    max_runs: int = 0             # 0 = no cap
    host: str = ""                # RecordStarted's host
    bus_window_s: float = 1.5     # our status must come back within this
    cores: tuple[int, ...] = ()   # the CPUs the dispatcher may use (its affinity mask)
    launcher: str = "local"       # a run's launcher where its config names none
                                  # (TRAINER_LAUNCHER)

    def on_slurm(self, config: RunConfig) -> bool:
        """Does the run go to SLURM (which then places it: it holds none of our GPUs,
        CPU slots or cores)?"""
        return (config.launcher or self.launcher) == "slurm"


class Registry(str, enum.Enum):
    UNKNOWN = "unknown"           # not read yet: the snapshot comes first
    READING = "reading"           # the snapshot's pages are on their way
    UP = "up"
    LOST = "lost"                 # a call found it away: read again once it answers


@dataclass(frozen=True)
class Snapshot:
    """The start-up (or resync) read in progress: pages of non-terminal runs."""

    runs: tuple[Any, ...] = ()    # inputs.RunView, newest first as paged
    as_of: Optional[int] = None   # the head seq before the first page
    experiments: tuple[ExperimentLimits, ...] = ()   # the first page's, as of as_of


def _member(index: frozenset[str], run_id: str, member: bool) -> frozenset[str]:
    """``index`` with ``run_id`` in it exactly when ``member`` (copied only if it moves)."""
    if member == (run_id in index):
        return index
    return index | {run_id} if member else index - {run_id}


Indexes = tuple[frozenset[str], frozenset[str], frozenset[str]]


def _indexed(indexes: Indexes, run_id: str, record: Optional[RunRecord]) -> Indexes:
    """The run indexes (``starting``, ``backlogged``, ``past_queue``) with ``run_id``'s
    record now ``record`` (None: gone)."""
    starting, backlogged, past_queue = indexes
    waits = record is not None and record.backlogged
    return (_member(starting, run_id, record is not None and not waits
                    and record.phase is Phase.STARTING),
            _member(backlogged, run_id, waits),
            _member(past_queue, run_id, record is not None and record.phase is not Phase.QUEUED))


@dataclass(frozen=True)
class DispatcherState:
    config: DispatcherConfig
    inventory: Inventory = field(default_factory=Inventory)
    runs: Mapping[str, RunRecord] = field(default_factory=dict)
    known_seq: Mapping[str, int] = field(default_factory=dict)
    held_elsewhere: Mapping[str, str] = field(default_factory=dict)  # GPU -> its holder
    calls: Mapping[int, InFlight] = field(default_factory=dict)      # tag -> what for
    next_tag: int = 1
    registry: Registry = Registry.UNKNOWN
    snapshot: Optional[Snapshot] = None
    bus: BusHealth = field(default_factory=lambda: BusHealth(1.5))
    now: float = 0.0              # monotonic, from the last tick
    wall: float = 0.0             # wall clock, from the last tick
    next_sweep: float = 0.0
    next_full: float = 0.0
    next_deadline: float = math.inf
    gpu_read_due: bool = False    # a GPU read is in flight
    dirty: bool = True            # a scheduling pass is due
    retry_due: bool = False       # a command was not applied: schedule at the next sweep
    stats: Counters = field(default_factory=Counters)
    # Indexes of ``runs`` (kept by with_run/with_runs): the STARTING runs read at every
    # tick (not backlogged); the backlogged ones (RunRecord.backlogged); every run past
    # the queue (any phase but QUEUED: the loop watches them)
    starting: frozenset[str] = frozenset()
    backlogged: frozenset[str] = frozenset()
    past_queue: frozenset[str] = frozenset()
    # The experiments that set a limit or a priority, as of experiments_seq (the
    # snapshot's head, then each ExperimentSubmitted followed).
    experiments: Mapping[str, ExperimentLimits] = field(default_factory=dict)
    experiments_seq: int = 0

    @staticmethod
    def initial(config: DispatcherConfig, inventory: Inventory, now: float,
                wall: float) -> "DispatcherState":
        return DispatcherState(config, inventory, bus=BusHealth(config.bus_window_s),
                               now=now, wall=wall, next_sweep=now, next_full=now)

    def in_phase(self, *phases: Phase) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.phase in phases]

    def with_run(self, run_id: str, record: Optional[RunRecord]) -> "DispatcherState":
        runs = dict(self.runs)
        if record is None:
            runs.pop(run_id, None)
        else:
            runs[run_id] = record
        starting, backlogged, past_queue = _indexed(self.indexes(), run_id, record)
        return replaced(self, runs=runs, starting=starting, backlogged=backlogged,
                        past_queue=past_queue)

    def with_runs(self, records: Iterable[RunRecord]) -> "DispatcherState":
        runs = dict(self.runs)
        indexes = self.indexes()
        for r in records:
            runs[r.run_id] = r
            indexes = _indexed(indexes, r.run_id, r)
        starting, backlogged, past_queue = indexes
        return replaced(self, runs=runs, starting=starting, backlogged=backlogged,
                        past_queue=past_queue)

    def indexes(self) -> Indexes:
        return self.starting, self.backlogged, self.past_queue

    def urgent(self) -> bool:
        """A run past the queue that is not backlogged: one to start, watch, end or
        report, which the loop ticks for."""
        return len(self.past_queue) > len(self.backlogged)

    def next_wake(self) -> float:
        """The latest the shell may wait before its next Tick (monotonic)."""
        return min(self.next_sweep, self.next_deadline)
