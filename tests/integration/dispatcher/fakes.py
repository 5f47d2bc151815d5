"""Helpers of the dispatcher's in-process tests (their fixtures, ``svc`` and ``procs``,
are in conftest.py beside them): a scripted registry, a stand-in fork server, real run
folders (worker.json, exit.json, the run lock) and real processes standing in for
workers (``sleep``, in a session of their own)."""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from core.errors import OrchestratorError
from services.dispatcher.active import ActiveRun
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.service import DispatcherService
from core.rundir import EXIT_FILE, RUN_LOCK, WORKER_FILE
from services.dispatcher.spawner import process_start_time, run_processes, take_run_lock
from tests.helpers import wait_until

def _internal() -> OrchestratorError:
    return OrchestratorError.from_dict({"code": "internal", "message": "disk I/O error"})


class Registry:
    """Records every command; ``fail[method]`` lists errors its next calls raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail: dict[str, list[OrchestratorError]] = {}

    def call(self, method: str, args: Any = None) -> dict[str, Any]:
        self.calls.append((method, dict(args or {})))
        if self.fail.get(method):
            raise self.fail[method].pop(0)
        if method == "list_artifacts":
            return {"artifacts": []}
        return {"run": {"run_id": (args or {}).get("run_id"), "last_seq": 1}}

    def call_many(self, requests: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        out: list[Any] = []
        for method, args in requests:
            try:
                out.append(self.call(method, args))
            except OrchestratorError as exc:
                out.append(exc)
        return out

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


class Forks:
    def __init__(self) -> None:
        self.spawned: list[str] = []
        self.ended_dirs: set[str] = set()
        self.exit_status: dict[str, int] = {}
        self.due: set[str] = set()

    def status_due(self, run_dir: str) -> bool:
        return run_dir in self.due

    def done_with(self, run_dir: str) -> None:
        self.ended_dirs.discard(run_dir)
        self.exit_status.pop(run_dir, None)

    def spawn(self, run_dir: str, argv: list[str], env: dict[str, str]) -> None:
        self.spawned.append(run_dir)


class Publisher:
    def publish(self, *args: Any) -> None:
        pass


def _worker(procs: list[subprocess.Popen[bytes]], alive: bool = True) -> int:
    """A stand-in worker in its own process group; with ``alive`` False, already reaped."""
    p = subprocess.Popen(["sleep", "30"] if alive else ["true"], start_new_session=True)
    procs.append(p)
    if not alive:
        p.wait()
    return p.pid


def _tagged(procs: list[subprocess.Popen[bytes]], run_id: str) -> int:
    """A process of run ``run_id`` known only by its environment (as a worker's, or a
    process it started), in a session of its own."""
    p = subprocess.Popen(["sleep", "30"], start_new_session=True,
                         env={**os.environ, "TRAINER_RUN_ID": run_id})
    procs.append(p)
    # Until it has exec'd, /proc shows the parent's environment: wait to see the tag.
    wait_until(lambda: p.pid in run_processes(run_id), 10,
               message=f"the tagged process of {run_id} to be seen in /proc")
    return p.pid


def _folder(svc: DispatcherService, run_id: str, pid: int | None = None,
            age_s: float = 1.0) -> str:
    path = os.path.join(svc.settings.runs_dir, run_id)
    os.makedirs(path, exist_ok=True)
    if pid is not None:
        with open(os.path.join(path, WORKER_FILE), "w", encoding="utf-8") as fh:
            json.dump({"pid": pid, "pgid": pid, "start_time": process_start_time(pid) or 1.0,
                       "shim_pid": 0, "started_at": svc.clock.now() - age_s,
                       RUN_LOCK: True}, fh)
    return path


def _exit(path: str, code: int) -> None:
    with open(os.path.join(path, EXIT_FILE), "w", encoding="utf-8") as fh:
        json.dump({"exit_code": code, "signal": None}, fh)


def _hold_lock(path: str) -> int:
    """This test as the run's shim: the lock held (released when the fd is closed)."""
    return take_run_lock(path)


def _record(run_id: str, status: str, **config: Any) -> dict[str, Any]:
    return {"run_id": run_id, "status": status, "gpus": [], "last_seq": 5,
            "cancel_requested_by": "", "cancel_reason": "", "priority": 0, "submitted_seq": 1,
            "config": {"worker": "test-sleep", "resources": {"cpu_slots": 1}, **config}}


def _ours(svc: DispatcherService, run_id: str, path: str) -> ActiveRun:
    run = ActiveRun(run_id, path, {}, [], 1, RunLogs(run_id, path, 1 << 20))
    svc.active[run_id] = run
    return run


def _outcome(svc: DispatcherService, run_id: str) -> dict[str, Any] | None:
    entry = svc.finishing.get(run_id)
    return entry[1] if entry else None
