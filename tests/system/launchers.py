"""What the launcher contract suite (test_launcher_contract.py) needs of each launcher
beyond its protocol (services/dispatcher/shell/launcher.py): how to build instances of
it (a second one is a restarted dispatcher's), where a run's folder is, how to break
what it stands on (its supervisor of a run, its back end), and how to end every process
a test started. One harness class per implementation; the ``launcher_harness`` fixture
(tests/system/conftest.py) is parametrised over ``HARNESSES``.

A new launcher (SLURM) adds a harness here with the same methods and passes the same
suite."""

from __future__ import annotations

import contextlib
import os
import signal
from typing import TYPE_CHECKING, Callable, ContextManager, Iterator, Optional, Protocol

from core.rundir import SHIM_FILE, WORKER_FILE
from core.settings import Settings
from services.dispatcher.shell.launcher import Launcher
from services.dispatcher.spawner import read_json
from services.dispatcher.procs import process_start_time, run_processes
from tests.helpers import wait_until

if TYPE_CHECKING:
    from tests.system.slurmcluster import SlurmCluster


class LauncherHarness(Protocol):
    """What the contract suite asks of an implementation's harness."""

    name: str

    def new(self) -> Launcher: ...
    def close(self, launcher: Launcher) -> None: ...
    def folder(self, run_id: str) -> str: ...
    def kill_supervisor(self, run_id: str) -> None: ...
    def kill_backend(self, launcher: Launcher) -> int: ...
    def spoil_folder(self, run_id: str) -> None: ...
    def remembers(self, launcher: Launcher, run_id: str) -> bool: ...
    def status_held(self, launcher: Launcher) -> ContextManager[None]: ...
    def teardown(self) -> None: ...


def _kill(pid: int, start_time: Optional[float]) -> None:
    """SIGKILL ``pid`` if it is still the process that started at ``start_time``."""
    if pid > 0 and start_time is not None and process_start_time(pid) == start_time:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class ForkHarness:
    """ForkLauncher: a fork server per instance, a shim per run, run folders under
    ``settings.runs_dir`` (a temporary TRAINER_HOME, test workers allowed)."""

    name = "fork"

    def __init__(self, settings: Settings) -> None:
        assert settings.test_workers, "the contract suite runs tests/workers' workers"
        self.settings = settings
        self.launchers: list[Launcher] = []
        self._closed: set[int] = set()

    def new(self) -> Launcher:
        """Another instance over the same runs (the first, or a restarted dispatcher's)."""
        # Imported here, not by conftest.py at collection: a launcher that fails to
        # import fails its contract tests, not the collection of every system test.
        from services.dispatcher.shell.forklauncher import ForkLauncher
        launcher = ForkLauncher(self.settings)
        self.launchers.append(launcher)
        return launcher

    def close(self, launcher: Launcher) -> None:
        """``launcher.close()``, once (teardown closes the ones the test left open)."""
        if id(launcher) not in self._closed:
            self._closed.add(id(launcher))
            launcher.close()

    def folder(self, run_id: str) -> str:
        """Where the run's worker runs (it writes its own files there)."""
        return os.path.join(self.settings.runs_dir, run_id)  # as launch.run_dir

    def kill_supervisor(self, run_id: str) -> None:
        """SIGKILL the run's shim (its worker lives on, orphaned) and wait until it is
        gone (a zombie counts as gone)."""
        worker = read_json(os.path.join(self.folder(run_id), WORKER_FILE)) or {}
        pid = int(worker.get("shim_pid") or 0)
        assert pid > 0, f"no shim recorded for {run_id}: {worker}"
        _kill(pid, worker.get("shim_start_time"))
        wait_until(lambda: process_start_time(pid) is None, 10, message=f"shim {pid} to die")

    def kill_backend(self, launcher: Launcher) -> int:
        """SIGKILL what the launcher starts runs through (its fork server); its pid.
        Not waited for: ``check()`` must see it go by itself."""
        pid = launcher.forks.proc.pid  # type: ignore[attr-defined]  # ForkLauncher's
        os.kill(pid, signal.SIGKILL)
        return pid

    def spoil_folder(self, run_id: str) -> None:
        """Make the run's folder impossible to write into, even for root (these tests
        may run as root, whom a read-only mode does not stop): a regular file where the
        folder would be."""
        os.makedirs(self.settings.runs_dir, exist_ok=True)
        with open(self.folder(run_id), "w", encoding="ascii") as fh:
            fh.write("not a folder")

    def remembers(self, launcher: Launcher, run_id: str) -> bool:
        """Does the instance still keep anything for the run (what forget() is for: a
        dispatcher that runs for months must not grow by each run)? White-box."""
        path = self.folder(run_id)
        forks = launcher.forks  # type: ignore[attr-defined]  # ForkLauncher's
        return path in forks.ended_dirs or path in forks.exit_status or \
            path in forks._status_due.values() or path in launcher._told  # type: ignore

    @contextlib.contextmanager
    def status_held(self, launcher: Launcher) -> Iterator[None]:
        """While inside, a shim's exit status is held back (its fork server is stopped:
        the shim's end is seen by its pidfd, its status comes with the server's notice
        once it runs again), so ended() tells an end before its status."""
        pid = launcher.forks.proc.pid  # type: ignore[attr-defined]  # ForkLauncher's
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGCONT)

    def leftovers(self) -> list[int]:
        """Every live process of every run under the runs folder: shims (by their
        records) first, then what the workers started (by process group and by the run
        id in their environment)."""
        shims: set[int] = set()
        found: set[int] = set()
        runs = self.settings.runs_dir
        for run_id in sorted(os.listdir(runs)) if os.path.isdir(runs) else []:
            path = os.path.join(runs, run_id)
            if not os.path.isdir(path):
                continue
            worker = read_json(os.path.join(path, WORKER_FILE)) or {}
            for record in (worker, read_json(os.path.join(path, SHIM_FILE)) or {}):
                pid = int(record.get("shim_pid") or 0)
                if pid > 0 and process_start_time(pid) == record.get("shim_start_time"):
                    shims.add(pid)
            pgid = worker.get("pgid")
            found |= run_processes(run_id, pgid if isinstance(pgid, int) else None)
        return sorted(shims) + sorted(found - shims)

    def teardown(self) -> None:
        """Close every instance, then SIGKILL every process of every run (shims first,
        so that none writes records meanwhile) until none is left."""
        errors = []
        for launcher in self.launchers:
            try:
                self.close(launcher)
            except Exception as exc:  # noqa: BLE001 - the processes must still be ended
                errors.append(exc)
        def none_left() -> bool:
            for pid in self.leftovers():
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            return not self.leftovers()
        wait_until(none_left, 15, message="every process of the test's runs to end")
        if errors:
            raise errors[0]


class SlurmHarness(ForkHarness):
    """SlurmLauncher against the test cluster (the ``slurm`` fixture): a batch job per
    run, its batch step the shim; run folders as ForkHarness's (shared: same host).
    Its back end is slurmctld (killed, then started again at teardown)."""

    name = "slurm"
    fixtures = ("slurm",)

    def __init__(self, settings: Settings, cluster: "SlurmCluster") -> None:
        super().__init__(settings)
        self.cluster = cluster

    def new(self) -> Launcher:
        from services.dispatcher.shell.slurmlauncher import SlurmLauncher
        launcher = SlurmLauncher(self.settings, env=self.cluster.env, poll_s=0.2,
                                  query_timeout_s=2.0, gone_after_s=3.0)
        self.launchers.append(launcher)
        return launcher

    def kill_backend(self, launcher: Launcher) -> int:
        """slurmctld stopped (SIGTERM: it saves its state, so that its jobs are still
        its own when it starts again at teardown; waited for)."""
        return self.cluster.kill_ctld(signal.SIGTERM)

    def remembers(self, launcher: Launcher, run_id: str) -> bool:
        return launcher.knows(run_id)  # type: ignore[attr-defined]  # SlurmLauncher's

    @contextlib.contextmanager
    def status_held(self, launcher: Launcher) -> Iterator[None]:
        launcher.hold_status = True  # type: ignore[attr-defined]  # SlurmLauncher's
        try:
            yield
        finally:
            launcher.hold_status = False  # type: ignore[attr-defined]

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.cluster.clean()


HARNESSES: dict[str, Callable[..., LauncherHarness]] = {"fork": ForkHarness,
                                                       "slurm": SlurmHarness}
