"""The dispatcher's launcher: each run goes to the launcher its config names
(``"launcher"``; "" takes TRAINER_LAUNCHER's): the local one (forklauncher.py) or
SLURM's (slurmlauncher.py), made at the first run that needs it, so that a host
without SLURM never calls its tools. A run started by an earlier dispatcher is
SLURM's when its folder holds the record of a submission (slurm.json).

``wake_fd`` is an epoll set of both launchers' own: readable when either has news."""

from __future__ import annotations

import os
import select
from typing import Callable, Optional

from core.runconfig import RunConfig
from core.slurmoptions import SLURM
from services.dispatcher.decide.inputs import FolderRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.shell.launcher import Launcher
from services.dispatcher.shell.slurmsubmit import JOB_FILE


class RoutedLauncher:
    def __init__(self, local: Launcher, make_slurm: Callable[[], Launcher],
                 runs_dir: str, default: str = "local") -> None:
        self.local = local
        self.make_slurm = make_slurm
        self.runs_dir = runs_dir
        self.default = default
        self.slurm: Optional[Launcher] = None
        self._epoll = select.epoll()
        self._epoll.register(local.wake_fd, select.EPOLLIN)
        self.wake_fd = self._epoll.fileno()
        self._route: dict[str, Launcher] = {}
        if default == SLURM:
            self._slurm()

    def _slurm(self) -> Launcher:
        if self.slurm is None:
            self.slurm = self.make_slurm()
            self._epoll.register(self.slurm.wake_fd, select.EPOLLIN)
        return self.slurm

    def of(self, run_id: str) -> Launcher:
        """The run's launcher: the one that started it, else SLURM's if its folder
        records a submission, else the local one."""
        chosen = self._route.get(run_id)
        if chosen is None:
            folder = os.path.join(self.runs_dir, run_id)
            chosen = self._slurm() if os.path.exists(os.path.join(folder, JOB_FILE)) \
                else self.local
            self._route[run_id] = chosen
        return chosen

    def start(self, run_id: str, config: RunConfig, gpus: tuple[str, ...],
              attempt: int = 1, resume_from: str = "", cores: tuple[int, ...] = (),
              python: str = "") -> None:
        chosen = self._slurm() if (config.launcher or self.default) == SLURM else self.local
        self._route[run_id] = chosen
        chosen.start(run_id, config, gpus, attempt, resume_from, cores, python)

    def signal(self, run_id: str, pgid: int, sig: Sig) -> None:
        self.of(run_id).signal(run_id, pgid, sig)

    def kill(self, run_id: str, pids: frozenset[int]) -> None:
        self.of(run_id).kill(run_id, pids)

    def observe(self, run_id: str) -> FolderRead:
        return self.of(run_id).observe(run_id)

    def exited(self, run_id: str) -> bool:
        return self.of(run_id).exited(run_id)

    def record_kill(self, run_id: str, record: KillRecord) -> str:
        return self.of(run_id).record_kill(run_id, record)

    def ended(self) -> list[ShimEnded]:
        self._epoll.poll(0)
        out = self.local.ended()
        if self.slurm is not None:
            out += self.slurm.ended()
        return out

    def moved(self) -> list[str]:
        return self.local.moved() + (self.slurm.moved() if self.slurm is not None else [])

    def processes_of(self, pgids: frozenset[int]) -> frozenset[int]:
        return self.local.processes_of(pgids)

    def forget(self, run_id: str) -> None:
        self.local.forget(run_id)
        if self.slurm is not None:
            self.slurm.forget(run_id)
        self._route.pop(run_id, None)

    def check(self) -> None:
        self.local.check()
        if self.slurm is not None:
            self.slurm.check()

    def problem(self) -> str:
        return "; ".join(p for p in (self.local.problem(),
                                     self.slurm.problem() if self.slurm else "") if p)

    def close(self) -> None:
        try:
            self.local.close()
            if self.slurm is not None:
                self.slurm.close()
        finally:
            self._epoll.close()

