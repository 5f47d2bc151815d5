"""The dispatcher's decisions about one run, driven without a stack: the service is
built with __new__ around a scripted registry and a stand-in fork server, over real
run folders (worker.json, exit.json, the shim's lock) and real processes standing
in for workers (``sleep``, in a session of their own)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
from typing import Any, Iterator

import pytest

from bus.logs import ServiceLogger
from core.clock import FakeClock
from core.errors import OrchestratorError
from core.settings import Settings
from services.dispatcher import recovery
from services.dispatcher.active import ActiveRun
from services.dispatcher.allocator import Pending
from services.dispatcher.inventory import Inventory, read_inventory, refresh_in_background
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.service import DispatcherService
from services.dispatcher.spawner import (EXIT_FILE, RUN_LOCK, WORKER_FILE, group_alive,
                                         process_start_time, shim_alive, take_run_lock)
from services.dispatcher.supervision import BusHealth, check
from tests.helpers import REPO, wait_until


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

    def spawn(self, run_dir: str, argv: list[str], env: dict[str, str]) -> None:
        self.spawned.append(run_dir)


class Publisher:
    def publish(self, *args: Any) -> None:
        pass


@pytest.fixture
def svc(tmp_path: Any) -> DispatcherService:
    s = DispatcherService.__new__(DispatcherService)
    s.settings = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    s.pending, s.active, s.finishing, s.waiting = {}, {}, {}, {}
    s.held_elsewhere, s.unstarted, s.retry_due, s.known_seq = {}, set(), False, {}
    s.next_deadline = 0.0
    s.stats = {"started": 0, "finished": 0, "adopted": 0, "kills": 0}
    s.log = ServiceLogger("dispatcher-test")
    s.clock = FakeClock()
    s.bus = BusHealth(1.5, s.clock.monotonic())
    s.client, s.forks, s.publisher = Registry(), Forks(), Publisher()  # type: ignore
    s.inventory, s.cpu_slots, s.dirty = Inventory(), 4, False
    return s


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    out: list[subprocess.Popen[bytes]] = []
    yield out
    for p in out:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def _worker(procs: list[subprocess.Popen[bytes]], alive: bool = True) -> int:
    """A stand-in worker in its own process group; with ``alive`` False, already reaped."""
    p = subprocess.Popen(["sleep", "30"] if alive else ["true"], start_new_session=True)
    procs.append(p)
    if not alive:
        p.wait()
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


# --- a shim that vanishes ----------------------------------------------------------

def test_a_run_whose_shim_ended_without_an_exit_record_ends_lost(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r1", _worker(procs, alive=False))
    run = _ours(svc, "r1", path)
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r1") is None  # the fork server has not reported its shim's end
    svc.forks.ended_dirs.add(path)  # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r1") == {"outcome": "failed", "cause": "lost",
                                   "message": _outcome(svc, "r1")["message"]}  # type: ignore
    assert "shim" in _outcome(svc, "r1")["message"]  # type: ignore[index]


def test_a_shim_that_died_before_starting_the_worker_leaves_a_lost_run(
        svc: DispatcherService) -> None:
    path = _folder(svc, "r2")  # no worker.json, no lock, no exit record
    run = _ours(svc, "r2", path)
    svc.forks.ended_dirs.add(path)  # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert (_outcome(svc, "r2") or {}).get("cause") == "lost"


def test_a_worker_left_without_its_shim_is_killed_then_the_run_is_lost(
        svc: DispatcherService, procs: list) -> None:
    pid = _worker(procs)
    path = _folder(svc, "r3", pid)
    run = _ours(svc, "r3", path)
    svc.forks.ended_dirs.add(path)  # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r3") is None  # its group is killed first
    wait_until(lambda: not group_alive(pid), 5, message="the orphaned worker killed")
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert (_outcome(svc, "r3") or {}).get("cause") == "lost"


# --- RunStarted refused ----------------------------------------------------------

def test_a_run_started_answer_not_applied_is_asked_again_before_the_end(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r4", _worker(procs, alive=False))
    _exit(path, 0)
    run = _ours(svc, "r4", path)
    svc.client.fail["record_started"] = [_internal()]  # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert not run.recorded_started and _outcome(svc, "r4") is None
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert run.recorded_started and _outcome(svc, "r4") == {"outcome": "completed",
                                                            "exit_code": 0}
    assert svc.client.methods().count("record_started") == 2  # type: ignore[attr-defined]


# --- "never" not applied ---------------------------------------------------------

def test_an_unschedulable_verdict_not_applied_keeps_the_run_queued(
        svc: DispatcherService) -> None:
    pending = Pending("r5", 0, 7, 1, 0, 1)  # one GPU; this machine has none
    svc.pending["r5"] = pending
    svc.client.fail["finish"] = [_internal()]  # type: ignore[attr-defined]
    svc._schedule()
    assert svc.pending == {"r5": pending} and svc.retry_due
    svc._schedule()
    assert not svc.pending and svc.client.methods() == ["finish", "finish"]  # type: ignore


# --- start-up: a shim that still owns the run -------------------------------------

def test_recovery_waits_for_the_exit_record_of_a_shim_still_at_work(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r6", _worker(procs, alive=False))  # the worker has exited...
    lock = _hold_lock(path)  # ...and its shim is still writing the exit record
    assert recovery._resume(svc, _record("r6", "RUNNING")) == "awaited"
    assert "finish" not in svc.client.methods()  # type: ignore[attr-defined]
    run = svc.active["r6"]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r6") is None
    _exit(path, 0)
    os.close(lock)
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r6") == {"outcome": "completed", "exit_code": 0}


def test_recovery_never_starts_again_a_run_whose_shim_holds_it(
        svc: DispatcherService, procs: list) -> None:
    path = _folder(svc, "r7")  # DISPATCHING, no worker.json: its shim is starting it
    lock = _hold_lock(path)
    try:
        assert recovery._resume(svc, _record("r7", "DISPATCHING")) == "awaited"
        assert svc.forks.spawned == [] and "r7" in svc.unstarted  # type: ignore
        _folder(svc, "r7", _worker(procs))  # the shim's worker.json appears
        svc._supervise(svc.active["r7"], svc.clock.monotonic(), check_exit=True)
        assert "record_started" in svc.client.methods()  # type: ignore[attr-defined]
        assert svc.active["r7"].pgid is not None and "r7" not in svc.unstarted
    finally:
        os.close(lock)


def test_recovery_starts_a_run_that_no_shim_holds(svc: DispatcherService) -> None:
    path = _folder(svc, "r8")
    assert recovery._resume(svc, _record("r8", "DISPATCHING")) == "restarted"
    assert svc.forks.spawned == [path]  # type: ignore[attr-defined]


# --- start-up: what an adopted run keeps ------------------------------------------

def test_an_adopted_worker_keeps_its_time_limit_and_its_startup_grace(
        svc: DispatcherService, procs: list) -> None:
    _folder(svc, "r9", _worker(procs), age_s=2.5)
    assert recovery._resume(svc, _record("r9", "RUNNING", time_limit_s=3.0)) == "adopted"
    watch = svc.active["r9"].watch
    assert watch is not None and watch.last_beat is None  # no beat yet: the grace stands
    later = svc.clock.monotonic() + 0.6
    action = check(watch, later, later)
    assert action is not None and action.plan.cause == "time_limit"


def test_an_adopted_worker_past_its_startup_grace_gets_a_fresh_heartbeat_window(
        svc: DispatcherService, procs: list) -> None:
    _folder(svc, "r10", _worker(procs), age_s=600.0)
    assert recovery._resume(svc, _record("r10", "RUNNING", startup_grace_s=120.0,
                                         heartbeat_timeout_s=30.0)) == "adopted"
    watch = svc.active["r10"].watch
    assert watch is not None and watch.last_beat == svc.clock.monotonic()
    later = svc.clock.monotonic() + 29.0
    assert check(watch, later, later) is None


def test_a_cancel_asked_while_the_run_was_starting_survives_a_restart(
        svc: DispatcherService, procs: list) -> None:
    record = {**_record("r11", "DISPATCHING"), "cancel_requested_by": "alice",
              "cancel_reason": "stop it"}
    assert recovery._resume(svc, record) == "restarted"
    run = svc.active["r11"]
    assert run.cancel == ("alice", "stop it")
    pid = _worker(procs)
    _folder(svc, "r11", pid)  # the relaunched worker shows up: it is stopped at once
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert run.watch is not None and run.watch.kill is not None
    assert run.watch.kill.outcome == "cancelled"
    assert procs[-1].wait(5) == -signal.SIGTERM


# --- the start-up snapshot ---------------------------------------------------------

class Listing(Registry):
    """list_runs over runs that change between pages: after the first page, the
    oldest run ends."""

    def __init__(self, seqs: list[int]) -> None:
        super().__init__()
        self.live = {s: {**_record(f"r{s}", "RUNNING"), "submitted_seq": s} for s in seqs}

    def call(self, method: str, args: Any = None) -> dict[str, Any]:
        assert method == "list_runs"
        first = not self.calls
        self.calls.append((method, dict(args)))
        runs = sorted(self.live.values(), key=lambda r: r["submitted_seq"],
                      reverse=bool(args.get("newest_first", True)))
        if args.get("before_seq"):
            runs = [r for r in runs if r["submitted_seq"] < args["before_seq"]]
        offset = int(args.get("offset", 0))
        page = runs[offset:offset + int(args["limit"])]
        if first:
            del self.live[min(self.live)]  # a run ends before the next page is read
        return {"runs": page, "total": len(runs), "head_seq": 100}


def test_the_startup_snapshot_misses_no_run_when_one_ends_between_pages(
        svc: DispatcherService, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(recovery, "PAGE", 2)
    listing = Listing([1, 2, 3, 4, 5])
    svc.client = listing  # type: ignore[assignment]
    runs, as_of = recovery.snapshot(svc)
    seqs = [r["submitted_seq"] for r in runs]
    assert set(listing.live) <= set(seqs) and as_of == 100
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))  # oldest first, once each


# --- the GPUs, read again ------------------------------------------------------------

def test_the_gpus_are_read_again_and_our_own_processes_are_not_foreign(
        svc: DispatcherService, procs: list, tmp_path: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """After a restart the adopted worker's GPU process was read as foreign, and the
    inventory was never read again: the GPU stayed out of reach after the run ended.
    (tests/fixtures/fake_cuda's pynvml: one GPU, memory held by the pids in a folder.)"""
    spec = importlib.util.spec_from_file_location(
        "pynvml", os.path.join(REPO, "tests", "fixtures", "fake_cuda", "pynvml.py"))
    assert spec is not None and spec.loader is not None
    nvml = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nvml)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setenv("FAKE_CUDA_DIR", str(tmp_path / "cuda"))
    (tmp_path / "cuda").mkdir()
    pid = _worker(procs)
    (tmp_path / "cuda" / str(pid)).write_text(str(2**30))
    svc.inventory = read_inventory(0)  # at start-up, before the worker was adopted
    assert svc.inventory.gpus[0].foreign_pids == (pid,)
    svc.read_gpus = lambda ours: read_inventory(0, ours)
    run = _ours(svc, "r1", _folder(svc, "r1", pid))
    run.pgid, run.gpus = pid, [nvml.UUID]
    svc.pending["r2"] = Pending("r2", 0, 9, 1, 0, 1)
    svc.gpu_read = None
    wait_until(lambda: (refresh_in_background(svc, start=True),
                        svc.inventory.gpus[0].foreign_pids == ())[1],
               10, message="the re-read (in its thread) to count the adopted worker as ours")
    held_free = svc.inventory.gpus[0].memory_free
    procs[-1].kill()  # the adopted run ends: its GPU goes to the queued one
    procs[-1].wait()
    del svc.active["r1"]
    launched: list[list[str]] = []
    svc._launch = lambda record, gpus: launched.append(gpus)  # type: ignore[assignment]
    wait_until(lambda: (refresh_in_background(svc, start=True),
                        svc.inventory.gpus[0].memory_free > held_free)[1],
               10, message="the GPU's memory freed, read again")
    svc._schedule()
    assert launched == [[nvml.UUID]]


def test_a_shim_from_before_the_lock_counts_as_alive_while_its_pid_lives(
        svc: DispatcherService, procs: list) -> None:
    """After an upgrade, a run's shim may be one that never takes the lock: its pid
    (worker.json, no run_lock) tells whether it is still in charge."""
    path = _folder(svc, "r11", _worker(procs, alive=False))
    worker_file = os.path.join(path, WORKER_FILE)
    with open(worker_file, encoding="utf-8") as fh:
        record = json.load(fh)
    shim = _worker(procs)  # stands in for the old shim
    record.pop(RUN_LOCK)
    for pid, alive in ((shim, True), (_worker(procs, alive=False), False)):
        record["shim_pid"] = pid
        with open(worker_file, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        assert shim_alive(path) is alive
    record.update(shim_pid=shim, **{RUN_LOCK: True})  # a shim that locks: its lock says
    with open(worker_file, "w", encoding="utf-8") as fh:
        json.dump(record, fh)
    assert shim_alive(path) is False


def test_where_folders_cannot_be_locked_the_shim_pid_decides(
        svc: DispatcherService, procs: list, monkeypatch: Any) -> None:
    """On a file system that refuses to flock a folder, the lock is given up (not an
    error) and the shim's recorded process (shim.json, then worker.json) decides."""
    import errno

    from services.dispatcher import spawner

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")
    monkeypatch.setattr(spawner.fcntl, "flock", no_locks)
    path = _folder(svc, "r12")
    assert spawner.take_run_lock(path) is None and spawner.shim_holds(path) is None
    assert not spawner.shim_alive(path)  # no record at all: no shim ever started it
    shim = _worker(procs)  # a shim that has not started the worker yet: shim.json only
    with open(os.path.join(path, spawner.SHIM_FILE), "w", encoding="utf-8") as fh:
        json.dump({"shim_pid": shim, "shim_start_time": process_start_time(shim)}, fh)
    assert spawner.shim_alive(path)
    with open(os.path.join(path, spawner.SHIM_FILE), "w", encoding="utf-8") as fh:
        json.dump({"shim_pid": shim, "shim_start_time": 1.0}, fh)  # the pid, reused
    assert not spawner.shim_alive(path)
    _folder(svc, "r12", _worker(procs, alive=False))
    worker_file = os.path.join(path, WORKER_FILE)
    with open(worker_file, encoding="utf-8") as fh:
        record = json.load(fh)
    for pid, alive in ((_worker(procs), True), (_worker(procs, alive=False), False)):
        record.update(shim_pid=pid, **{RUN_LOCK: False})  # what such a shim writes
        with open(worker_file, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
        assert spawner.shim_alive(path) is alive
    run = _ours(svc, "r12", path)  # ours, its shim reported ended: lost, not awaited
    svc.forks.ended_dirs.add(path)  # type: ignore[attr-defined]
    run.pgid = record["pgid"]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert (_outcome(svc, "r12") or {}).get("cause") == "lost"


def test_recovery_finds_the_exit_record_its_shim_wrote_as_it_let_go(
        svc: DispatcherService, procs: list, monkeypatch: Any) -> None:
    """The worker has ended and no shim holds the run any more, but the exit record
    appeared after recovery first looked: the run is finished from it, not lost."""
    from services.dispatcher import spawner
    path = _folder(svc, "r13", _worker(procs, alive=False))
    real = spawner.shim_alive

    def shim_just_left(run_dir: str) -> bool:
        _exit(run_dir, 0)  # written just before the shim let go
        return real(run_dir)
    monkeypatch.setattr(spawner, "shim_alive", shim_just_left)
    assert recovery._resume(svc, _record("r13", "RUNNING")) == "finished_later"
    assert "finish" not in svc.client.methods()  # type: ignore[attr-defined]
    svc._supervise(svc.active["r13"], svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r13") == {"outcome": "completed", "exit_code": 0}
