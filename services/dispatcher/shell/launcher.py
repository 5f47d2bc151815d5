"""The launcher seam: how a run's worker is started, signalled, observed and
recovered. The loop knows runs by id; a launcher knows where and how they run.

    ForkLauncher (forklauncher.py)   a shim per run, forked by the fork server (this host)
    SlurmLauncher (slurmlauncher.py) a SLURM batch job per run attempt
    RoutedLauncher (routedlauncher.py) each run to the one its config names

Every launcher passes the same contract suite (tests/system/test_launcher_contract.py);
the dispatcher's shell unit tests use a fake one (tests/unit/dispatcher/shell/).
"""

from __future__ import annotations

from typing import Protocol

from core.runconfig import RunConfig
from services.dispatcher.decide.inputs import FolderRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig


class StartError(Exception):
    """The worker could not be prepared or requested (an unknown worker, a run folder
    that cannot be written): the run fails ``spawn_error`` with this message."""


class Launcher(Protocol):
    wake_fd: int
    """Readable when ``ended()`` may have news (poll it with the bus sockets)."""

    def start(self, run_id: str, config: RunConfig, gpus: tuple[str, ...],
              attempt: int = 1, resume_from: str = "", cores: tuple[int, ...] = (),
              python: str = "") -> None:
        """Request the worker of the run's ``attempt`` and return at once (its record
        comes with a later ``observe``); ``resume_from``: the checkpoint (a path in the
        run folder) it resumes from; ``cores``: the CPUs it is pinned to (() = not
        pinned); its memory limit is its config's (``resources.memory_limit_mb``);
        ``python``: the interpreter of its python_env (the registry's answer to the
        claim; "": the dispatcher's own). What an earlier attempt left (its worker and
        exit records) is put aside first. Raises StartError."""

    def signal(self, run_id: str, pgid: int, sig: Sig) -> None:
        """Signal the run's process group (gone already: nothing happens)."""

    def kill(self, run_id: str, pids: frozenset[int]) -> None:
        """SIGKILL these processes of the run (its shim is gone)."""

    def observe(self, run_id: str) -> FolderRead:
        """What the run's folder and its processes show now; also for a run this
        launcher did not start (recovery after a restart)."""

    def exited(self, run_id: str) -> bool:
        """Has the run's end been recorded (a cheap check, before ``observe``)?"""

    def record_kill(self, run_id: str, record: KillRecord) -> str:
        """Store the kill just begun beside the run ("" if stored, else why not): a
        restarted dispatcher keeps its grace."""

    def ended(self) -> list[ShimEnded]:
        """The runs whose shim ended since the last call (never blocks)."""

    def moved(self) -> list[str]:
        """The runs whose job moved in the back end's queue since the last call (its
        state or waiting reason changed: a SLURM job that started, or waits for another
        reason), worth a read now; never blocks. Call it with ``ended`` (wake_fd
        tells of both); [] for a launcher without a queue of its own."""

    def processes_of(self, pgids: frozenset[int]) -> frozenset[int]:
        """The live processes of these process groups (our runs' processes, for the
        GPU read's foreign processes)."""

    def forget(self, run_id: str) -> None:
        """The run is done with: drop what is kept for it."""

    def check(self) -> None:
        """Raise LauncherGone if the launcher can no longer start or watch runs."""

    def problem(self) -> str:
        """What keeps it from working well now, for ``trainer health`` ("": nothing;
        SLURM's: squeue failing)."""

    def close(self) -> None:
        """Stop launching; the runs live on (a restarted dispatcher adopts them)."""


class LauncherGone(RuntimeError):
    """The launcher cannot go on (the fork server exited): the dispatcher exits and is
    restarted; its runs are adopted, a claimed run never started is started again.
    ``event``: the log event that says so (``forkserver.gone`` for the fork launcher)."""

    def __init__(self, message: str, event: str = "launcher.gone") -> None:
        super().__init__(message)
        self.event = event
