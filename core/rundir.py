"""The run-folder contract: the files in ``$TRAINER_HOME/runs/<run_id>/`` and their
records, in one place (pure: names and parsing, no I/O).

Who writes what:

| file | written by | read by |
|---|---|---|
| ``config.json`` | the dispatcher (launch) | the worker (``--config``) |
| ``shim.json`` | the shim, where it cannot lock the run | the dispatcher after a restart |
| ``worker.json`` | the shim, once the worker started (``WorkerRecord``) | the dispatcher |
| ``exit.json`` | the shim, once the worker ended (``ExitRecord``) | the dispatcher |
| ``kill.json`` | the dispatcher, when a kill begins (``KillRecord``) | a restarted dispatcher |
| ``stdout.log``, ``stderr.log`` | the worker (the shim opens them) | the dispatcher, the gateway |
| ``metrics.jsonl`` | the worker's SDK | the gateway |
| ``artifacts.jsonl`` | the worker's SDK (the manifest) | the dispatcher |
| ``result.json`` | the worker's SDK | the dispatcher |
| ``tensorboard/<label>/*tfevents*.trainer-sdk`` | the SDK (worker/tbwriter.py) | TensorBoard |
| other ``*tfevents*`` files | the worker's own code (SB3) | the gateway, the results |
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from core.fields import from_map

CONFIG_FILE = "config.json"
# The kind of the artifact recording an attempt's code identity (its meta), written by
# the worker runner as the attempt starts (worker/attemptcode.py): code/attempt-<n>.json.
CODE_ARTIFACT = "code"
SHIM_FILE = "shim.json"      # the shim's pid and start time, where the run cannot be locked
WORKER_FILE = "worker.json"
EXIT_FILE = "exit.json"
KILL_FILE = "kill.json"      # the kill under way: why, and when SIGTERM went (wall clock)
STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
METRICS_FILE = "metrics.jsonl"
MANIFEST_FILE = "artifacts.jsonl"
RESULT_FILE = "result.json"
# TensorBoard event files: the SDK writes its own into TB_DIR/<label>/ with this suffix on
# the file name, so that readers tell them (a copy of metrics.jsonl) from those a worker
# writes itself (SB3, CleanRL), which count as the run's metrics.
TB_DIR = "tensorboard"
TB_SDK_SUFFIX = ".trainer-sdk"
TB_MARK = "tfevents"          # in every event file's name (TensorBoard's own test)

RUN_FILES = (CONFIG_FILE, SHIM_FILE, WORKER_FILE, EXIT_FILE, KILL_FILE, STDOUT_FILE,
             STDERR_FILE, METRICS_FILE, MANIFEST_FILE, RESULT_FILE)

RUN_LOCK = "run_lock"  # in worker.json: written by a shim that holds the run's lock


@dataclass(frozen=True)
class WorkerRecord:
    """``worker.json``: the worker a shim started. ``run_lock`` is False where the shim
    could not lock the run folder (then only pids and start times say it is alive)."""

    pid: int
    pgid: int
    start_time: Optional[float]
    shim_pid: int
    shim_start_time: Optional[float]
    started_at: float
    run_lock: bool = False
    cores: Optional[list] = None          # the CPUs it is pinned to ([]: not pinned;
                                          # None: a shim from before pinning)
    cores_note: str = ""                  # why pinning failed ("" if it did not)
    memory_limit_mb: int = 0              # its memory limit (0: none) ...
    memory_enforced_by: str = ""          # ... enforced by "cgroup" or "sampled"
    attempt: Optional[int] = None         # the run's attempt it runs (its TRAINER_ATTEMPT;
                                          # None: a shim from before, or none given)

    @classmethod
    def from_map(cls, data: Any) -> WorkerRecord:
        return from_map(cls, data, WORKER_FILE)

    def to_map(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ExitRecord:
    """``exit.json``: how the worker ended (or ``spawn_error`` when it never started:
    then ``pid`` is None and the usage fields are absent)."""

    pid: Optional[int]
    started_at: float
    ended_at: float
    exit_code: Optional[int]
    signal: Optional[int]
    core_dumped: bool = False
    maxrss_kb: int = 0
    utime_s: float = 0.0
    stime_s: float = 0.0
    leftovers_killed: int = 0   # processes the worker left behind, killed before this
    spawn_error: Optional[str] = None
    memory_limit_mb: int = 0            # present with a memory limit only
    memory_enforced_by: str = ""        # "cgroup" or "sampled"
    memory_exceeded: bool = False       # over the limit: the run's processes were killed
    memory_peak_mb: float = 0.0         # the cgroup's memory.peak, or the sampled peak
    memory_note: str = ""               # why the cgroup could not be used
    attempt: Optional[int] = None       # the attempt that ended (as in worker.json)

    @classmethod
    def from_map(cls, data: Any) -> ExitRecord:
        return from_map(cls, data, EXIT_FILE)


@dataclass(frozen=True)
class KillRecord:
    """``kill.json``: a kill the dispatcher began, its grace counted from ``term_at``
    (wall clock), so that a restarted dispatcher keeps the grace already running."""

    outcome: str
    cause: str
    message: str
    term_at: float
    grace_s: float

    @classmethod
    def from_map(cls, data: Any) -> KillRecord:
        return from_map(cls, data, KILL_FILE)

    def to_map(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
