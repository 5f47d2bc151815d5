"""The first launcher: a shim per run on this host, forked by the fork server
(services/dispatcher/forkserver.py; the shim is spawner.py's). A run is its folder,
``<runs_dir>/<run_id>``: the shim writes worker.json and exit.json there and holds
the folder's lock while it owns the run, so a run started by an earlier dispatcher
is observed (and adopted) the same way as one started here."""

from __future__ import annotations

import os
import signal
from typing import Optional

from core.errors import ValidationError
from core.runconfig import RunConfig
from core.settings import Settings
from services.dispatcher import launch, procs
from services.dispatcher.decide.inputs import FolderRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.forkserver import ForkServer, ForkServerGone
from services.dispatcher.limits import Limits
from services.dispatcher.shell.folders import has_exit_record, read_folder, write_kill_record
from services.dispatcher.shell.launcher import LauncherGone, StartError

GONE = "forkserver.gone"
SIGNALS = {Sig.TERM: signal.SIGTERM, Sig.KILL: signal.SIGKILL, Sig.USR2: signal.SIGUSR2}


class ForkLauncher:
    def __init__(self, settings: Settings, fd_soft_limit: Optional[int] = None,
                 forks: Optional[ForkServer] = None) -> None:
        self.settings = settings
        self.forks = forks if forks is not None else ForkServer(fd_soft_limit)
        self.wake_fd = self.forks.wake_fd
        self._told: dict[str, Optional[int]] = {}   # run dir -> the exit status told

    def run_dir(self, run_id: str) -> str:
        return launch.run_dir(self.settings, run_id)

    def start(self, run_id: str, config: RunConfig, gpus: tuple[str, ...],
              attempt: int = 1, resume_from: str = "", cores: tuple[int, ...] = (),
              python: str = "") -> None:
        limits = Limits(cores, config.resources.memory_limit_mb, self.settings.cgroup)
        try:
            if attempt > 1:
                launch.set_aside(self.run_dir(run_id), attempt - 1)
            path, argv, env = launch.prepare(
                self.settings, {"run_id": run_id, "config": config.to_map()}, list(gpus),
                attempt, resume_from, python)
        except (launch.UnknownWorker, OSError) as exc:
            raise StartError(str(exc)) from exc
        except ValidationError as exc:   # a CURVE key file of TRAINER_HOME/keys
            raise StartError(exc.message) from exc
        self.forget(run_id)   # nothing of an earlier shim of this run is kept
        try:
            self.forks.spawn(path, argv, env, limits)
        except ForkServerGone as exc:
            raise LauncherGone(str(exc), GONE) from exc

    def signal(self, run_id: str, pgid: int, sig: Sig) -> None:
        if sig is Sig.USR2:   # the worker (its group's leader) only: its children
            procs.signal_process(pgid, SIGNALS[sig])   # would die of it
        else:
            procs.signal_group(pgid, SIGNALS[sig])

    def kill(self, run_id: str, pids: frozenset[int]) -> None:
        procs.kill_processes(set(pids))

    def observe(self, run_id: str) -> FolderRead:
        return read_folder(run_id, self.run_dir(run_id))

    def exited(self, run_id: str) -> bool:
        return has_exit_record(self.run_dir(run_id))

    def record_kill(self, run_id: str, record: KillRecord) -> str:
        return write_kill_record(self.run_dir(run_id), record)

    def ended(self) -> list[ShimEnded]:
        try:
            self.forks.ended()
        except ForkServerGone as exc:
            raise LauncherGone(str(exc), GONE) from exc
        out = []
        for path in self.forks.ended_dirs:
            status = self.forks.exit_status.get(path)
            if path in self._told and (self._told[path] is not None or status is None):
                continue  # told already (its status too, or it is still on its way)
            self._told[path] = status
            out.append(ShimEnded(os.path.basename(path), status))
        return out

    def moved(self) -> list[str]:
        return []   # no queue: a shim starts its worker at once

    def processes_of(self, pgids: frozenset[int]) -> frozenset[int]:
        return frozenset(procs.group_members(set(pgids)))

    def forget(self, run_id: str) -> None:
        path = self.run_dir(run_id)
        self.forks.done_with(path)
        self._told.pop(path, None)

    def check(self) -> None:
        try:
            self.forks.check()
        except ForkServerGone as exc:
            raise LauncherGone(str(exc), GONE) from exc

    def problem(self) -> str:
        return ""

    def close(self) -> None:
        self.forks.close()
