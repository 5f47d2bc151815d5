"""The dispatcher's decisions about one run while it supervises it: a shim that
vanishes, RunStarted or a verdict not applied, the GPUs read again, the run lock."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import sys
from typing import Any, Callable

import pytest

from core.commands import ClaimGpus, FinishRun, RecordStarted
from services.dispatcher import spawner
from services.dispatcher.decide.phases import Phase
from services.dispatcher.shell.gpuread import read_inventory
from core.rundir import RUN_LOCK, WORKER_FILE
from services.dispatcher.procs import group_alive, process_start_time
from tests.helpers import REPO, wait_until
from tests.integration.dispatcher.fakes import (Harness, folder, internal, record, tagged,
                                                worker, write_exit)

SHIM_KILLED = 9   # a shim's wait status: killed by SIGKILL (it wrote no exit record)


def _lost(h: Harness, run_id: str) -> FinishRun:
    (finish,) = h.registry.finishes(run_id)
    assert (finish.outcome, finish.cause) == ("failed", "lost"), finish
    return finish


# --- a shim that vanishes ----------------------------------------------------------

def test_a_run_whose_shim_ended_without_an_exit_record_ends_lost(
        h: Harness, procs: list) -> None:
    h.started("r1", worker(procs, alive=False))
    h.full_sweep()
    assert not h.registry.finishes("r1")  # the fork server has not reported its shim's end
    h.shim_ended("r1", SHIM_KILLED)
    finish = _lost(h, "r1")
    assert finish.exit_code is None and finish.signal is None and "shim" in finish.message


def test_a_shim_that_died_before_starting_the_worker_leaves_a_lost_run(h: Harness) -> None:
    h.ours("r2")                         # no worker.json, no lock, no exit record
    h.shim_ended("r2", SHIM_KILLED)
    _lost(h, "r2")


def test_a_worker_left_without_its_shim_is_killed_then_the_run_is_lost(
        h: Harness, procs: list) -> None:
    pid = worker(procs)
    h.started("r3", pid)
    h.shim_ended("r3", SHIM_KILLED)
    assert not h.registry.finishes("r3") and h.phase("r3") is Phase.REAPING  # killed first
    wait_until(lambda: not group_alive(pid), 5, message="the orphaned worker killed")
    h.sweep()
    _lost(h, "r3")


def test_processes_of_a_run_whose_shim_died_unrecorded_are_killed_then_it_is_lost(
        h: Harness, procs: list) -> None:
    """Its shim died after starting the worker but before writing worker.json (or the
    worker started a process in a session of its own): found by the run id in their
    environment, they are killed before the run ends lost; another run's are not."""
    pids = [tagged(procs, "r4"), tagged(procs, "r4")]
    other = tagged(procs, "r44")
    h.ours("r4")                         # no worker.json, no lock, no exit record
    h.shim_ended("r4", SHIM_KILLED)
    assert not h.registry.finishes("r4") and h.phase("r4") is Phase.REAPING  # killed first
    wait_until(lambda: all(process_start_time(p) is None for p in pids), 5,
               message="the run's processes killed")
    h.sweep()
    _lost(h, "r4")
    assert process_start_time(other) is not None


# --- RunStarted refused ----------------------------------------------------------

def test_a_run_started_answer_not_applied_is_asked_again_before_the_end(
        h: Harness, procs: list) -> None:
    path = h.ours("r4")
    folder(h, "r4", worker(procs, alive=False))
    write_exit(path, 0)
    h.registry.refuse(RecordStarted, internal())
    h.sweep()                            # its worker record read: RunStarted, refused
    assert not h.run("r4").started_recorded and not h.registry.finishes("r4")
    h.shim_ended("r4", 0)                # its end is known: it waits for RunStarted
    assert not h.registry.finishes("r4")
    h.sweep()                            # RunStarted again, then the end
    assert h.registry.finishes("r4")[0].outcome == "completed"
    assert h.registry.finishes("r4")[0].exit_code == 0
    started = [r for r in h.registry.requests if isinstance(r, (RecordStarted, FinishRun))]
    assert [type(r) for r in started] == [RecordStarted, RecordStarted, FinishRun]


# --- "never" not applied ---------------------------------------------------------

def test_an_unschedulable_verdict_not_applied_keeps_the_run_queued(h: Harness) -> None:
    h.registry.refuse(FinishRun, internal())
    h.submit("r5", resources={"gpus": 1, "cpu_slots": 1})  # one GPU; this machine has none
    assert h.phase("r5") is Phase.QUEUED and h.state.retry_due
    h.sweep()
    assert h.phase("r5") is None
    verdicts = h.registry.commands()
    assert [type(c) for c in verdicts] == [FinishRun, FinishRun]
    assert all((c.run_id, c.outcome, c.cause) == ("r5", "failed", "unschedulable")
               for c in verdicts)
    assert h.registry.runs["r5"]["status"] == "FAILED"


# --- the GPUs, read again ------------------------------------------------------------

def test_the_gpus_are_read_again_and_our_own_processes_are_not_foreign(
        make_harness: Callable[..., Harness], procs: list, tmp_path: Any,
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
    pid = worker(procs)
    (tmp_path / "cuda" / str(pid)).write_text(str(2**30))
    # At start-up, before the worker was adopted: its GPU process reads as foreign.
    h = make_harness(inventory=read_inventory(0),
                     gpu_read=lambda ours: read_inventory(0, ours))
    assert h.state.inventory.gpus[0].foreign_pids == (pid,)
    h.registry.add({**record("r1", "RUNNING", resources={"gpus": 1, "cpu_slots": 1}),
                    "gpus": [nvml.UUID]})
    # r2 needs the memory the adopted worker holds: it starts once that is freed.
    need_mb = (nvml.TOTAL - nvml.BASE_USED) // 2**20 - 256
    h.registry.add(record("r2", "PENDING", resources={
        "gpus": 1, "cpu_slots": 1, "min_gpu_memory_mb": need_mb}))
    path = folder(h, "r1", pid)
    h.lock("r1")                         # its shim, still at work
    h.boot()
    assert h.phase("r1") is Phase.RUNNING and h.phase("r2") is Phase.QUEUED
    h.full_sweep()                       # the GPUs read again, our run's processes ours
    h.hear_gpus()
    assert h.state.inventory.gpus[0].foreign_pids == ()
    held_free = h.state.inventory.gpus[0].memory_free
    procs[-1].kill()                     # the adopted run ends: its GPU goes to the queued one
    procs[-1].wait()
    write_exit(path, 0)
    h.unlock("r1")
    h.sweep()
    assert h.registry.finishes("r1")[0].outcome == "completed"
    assert not h.registry.sent(ClaimGpus) and h.phase("r2") is Phase.QUEUED  # memory held
    h.full_sweep()
    h.hear_gpus()                        # the GPU's memory freed, read again
    assert h.state.inventory.gpus[0].memory_free > held_free
    assert [(c.run_id, c.gpu_uuids) for c in h.registry.sent(ClaimGpus)] == \
        [("r2", (nvml.UUID,))]
    assert h.forks.spawned == [h.run_dir("r2")] and h.run("r2").gpus == (nvml.UUID,)


def test_a_shim_from_before_the_lock_counts_as_alive_while_its_pid_lives(
        h: Harness, procs: list) -> None:
    """After an upgrade, a run's shim may be one that never takes the lock: its pid
    (worker.json, no run_lock) tells whether it is still in charge."""
    path = folder(h, "r11", worker(procs, alive=False))
    worker_file = os.path.join(path, WORKER_FILE)
    with open(worker_file, encoding="utf-8") as fh:
        data = json.load(fh)
    shim = worker(procs)  # stands in for the old shim
    data.pop(RUN_LOCK)
    for pid, alive in ((shim, True), (worker(procs, alive=False), False)):
        data["shim_pid"] = pid
        with open(worker_file, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        assert h.launcher.observe("r11").shim_alive is alive
    data.update(shim_pid=shim, **{RUN_LOCK: True})  # a shim that locks: its lock says
    with open(worker_file, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    assert h.launcher.observe("r11").shim_alive is False


def test_where_folders_cannot_be_locked_the_shim_pid_decides(
        h: Harness, procs: list, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a file system that refuses to flock a folder, the lock is given up (not an
    error) and the shim's recorded process (shim.json, then worker.json) decides."""
    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")
    path = h.ours("r12")
    monkeypatch.setattr(spawner.fcntl, "flock", no_locks)
    assert spawner.take_run_lock(path) is None and spawner.shim_holds(path) is None
    assert not h.launcher.observe("r12").shim_alive  # no record: no shim ever started it
    shim = worker(procs)  # a shim that has not started the worker yet: shim.json only
    with open(os.path.join(path, spawner.SHIM_FILE), "w", encoding="utf-8") as fh:
        json.dump({"shim_pid": shim, "shim_start_time": process_start_time(shim)}, fh)
    assert h.launcher.observe("r12").shim_alive
    with open(os.path.join(path, spawner.SHIM_FILE), "w", encoding="utf-8") as fh:
        json.dump({"shim_pid": shim, "shim_start_time": 1.0}, fh)  # the pid, reused
    assert not h.launcher.observe("r12").shim_alive
    folder(h, "r12", worker(procs, alive=False))
    worker_file = os.path.join(path, WORKER_FILE)
    with open(worker_file, encoding="utf-8") as fh:
        data = json.load(fh)
    for pid, alive in ((worker(procs), True), (worker(procs, alive=False), False)):
        data.update(shim_pid=pid, **{RUN_LOCK: False})  # what such a shim writes
        with open(worker_file, "w", encoding="utf-8") as fh:
            json.dump(data, fh)
        assert h.launcher.observe("r12").shim_alive is alive
    h.shim_ended("r12", SHIM_KILLED)     # ours, its shim reported ended: lost, not awaited
    h.sweep()
    assert h.phase("r12") is None
    _lost(h, "r12")


# --- log files ---------------------------------------------------------------------

def test_a_backlogged_run_s_logs_are_not_polled_and_nothing_of_them_is_lost(
        tmp_path) -> None:
    from services.dispatcher.shell.effectrunner import RunLogFollowers
    from tests.integration.dispatcher.fakes import Published
    for run_id in ("a", "b"):
        os.makedirs(tmp_path / run_id)
        (tmp_path / run_id / "stdout.log").write_text(f"{run_id} says hi\n")
    published = Published()
    logs = RunLogFollowers(lambda r: str(tmp_path / r), 1 << 20, published)  # type: ignore[arg-type]
    logs.follow("a", from_end=False)
    logs.follow("b", from_end=False)
    logs.poll(1.0, skip={"b"})   # b waits in SLURM's queue: its files are not looked at
    assert [m[2]["lines"] for m in published.messages] == [["a says hi"]]
    logs.poll(2.0)               # its job started: what it wrote meanwhile goes out
    assert [m[2]["lines"] for m in published.messages] == [["a says hi"], ["b says hi"]]
