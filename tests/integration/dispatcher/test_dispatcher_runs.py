"""The dispatcher's decisions about one run while it supervises it: a shim that
vanishes, RunStarted or a verdict not applied, the GPUs read again, the run lock."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from typing import Any

import pytest

from services.dispatcher.allocator import Pending
from services.dispatcher.inventory import read_inventory, refresh_in_background
from services.dispatcher.service import DispatcherService
from core.rundir import RUN_LOCK, WORKER_FILE
from services.dispatcher.spawner import group_alive, process_start_time, shim_alive
from tests.helpers import REPO, wait_until
from tests.integration.dispatcher.fakes import (_worker, _folder, _exit, _ours, _outcome,
                                                _internal, _tagged)


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


def test_processes_of_a_run_whose_shim_died_unrecorded_are_killed_then_it_is_lost(
        svc: DispatcherService, procs: list) -> None:
    """Its shim died after starting the worker but before writing worker.json (or the
    worker started a process in a session of its own): found by the run id in their
    environment, they are killed before the run ends lost; another run's are not."""
    pids = [_tagged(procs, "r4"), _tagged(procs, "r4")]
    other = _tagged(procs, "r44")
    path = _folder(svc, "r4")  # no worker.json, no lock, no exit record
    run = _ours(svc, "r4", path)
    svc.forks.ended_dirs.add(path)  # type: ignore[attr-defined]
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert _outcome(svc, "r4") is None  # killed first
    wait_until(lambda: all(process_start_time(p) is None for p in pids), 5,
               message="the run's processes killed")
    svc._supervise(run, svc.clock.monotonic(), check_exit=True)
    assert (_outcome(svc, "r4") or {}).get("cause") == "lost"
    assert process_start_time(other) is not None


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
    svc.start_run = lambda record, gpus: launched.append(gpus)  # type: ignore[assignment]
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
