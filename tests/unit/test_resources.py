"""What a run's resources mean, as pure logic: resources.memory_limit_mb in the config
(validated, left out of the digest while 0), memory_limit as a retryable cause, the
shim's exit record read into the end memory_limit, and the worker's thread variables."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core import commands as c
from core.commands import FinishRun
from core.errors import ValidationError
from core.events import TerminalCause
from core.runconfig import RunConfig
from core.settings import Settings
from services.dispatcher import launch, limits
from services.dispatcher.decide.inputs import ExitRecord, ShimEnded
from services.dispatcher.decide.supervise import Outcome
from services.dispatcher.limits import Limits, placed, resident
from services.dispatcher.shell.folders import exit_record, worker_record
from tests.unit.dispatcher.driver import Driver, commands, folder


def digest(config: dict) -> str:
    return c.decide_submit(c.SubmitRun({}), c.validate_config(c.SubmitRun(config=config)),
                           "r1")[0].digest


def test_memory_limit_mb_defaults_to_none_and_is_left_out_of_the_canonical_map() -> None:
    plain = RunConfig.from_map({"seed": 1})
    assert plain.resources.memory_limit_mb == 0
    assert "memory_limit_mb" not in plain.canonical_map()["resources"]
    assert digest({"seed": 1}) == digest({"seed": 1, "resources": {"memory_limit_mb": 0}})
    limited = RunConfig.from_map({"seed": 1, "resources": {"memory_limit_mb": 512}})
    assert limited.canonical_map()["resources"]["memory_limit_mb"] == 512
    assert digest({"seed": 1, "resources": {"memory_limit_mb": 512}}) != digest({"seed": 1})
    again = RunConfig.from_map(limited.canonical_map())   # the map reads back the same
    assert again.resources.memory_limit_mb == 512


@pytest.mark.parametrize("value, reason", [
    (-1, "between 0 and"), (8, "at least 16"), (2**60, "between 0 and"),
    ("64", "must be an integer"), (True, "must be an integer"), (1.5, "must be an integer"),
])
def test_a_bad_memory_limit_names_the_field(value: object, reason: str) -> None:
    with pytest.raises(ValidationError) as err:
        RunConfig.from_map({"resources": {"memory_limit_mb": value}})
    assert err.value.field == "resources.memory_limit_mb" and reason in str(err.value)


def test_memory_limit_is_retried_only_when_the_policy_names_it() -> None:
    named = RunConfig.from_map({"retry": {"max_attempts": 2, "on": ["memory_limit"],
                                          "from_scratch": True}}).retry
    assert named.retries(TerminalCause.MEMORY_LIMIT.value, None)
    other = RunConfig.from_map({"retry": {"max_attempts": 2, "on": ["signal"],
                                          "from_scratch": True}}).retry
    assert not other.retries(TerminalCause.MEMORY_LIMIT.value, None)
    assert not RunConfig.from_map({}).retry.retries(TerminalCause.MEMORY_LIMIT.value, None)


def test_the_thread_variables_are_the_runs_slots_over_the_dispatchers_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "16")   # set where the dispatcher runs
    monkeypatch.setenv("MKL_NUM_THREADS", "16")
    settings = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    config = RunConfig.from_map({"worker": "cartpole", "resources": {"cpu_slots": 3}})
    _, _, env = launch.prepare(settings, {"run_id": "r1", "config": config.to_map()}, [])
    assert {v: env[v] for v in launch.THREAD_VARS} == dict.fromkeys(launch.THREAD_VARS, "3")


def test_the_shims_records_of_the_limits_are_read_back() -> None:
    worker = worker_record({"pid": 7, "pgid": 7, "start_time": 1.0, "started_at": 2.0,
                            **placed((2, 3), "", None)})
    assert worker is not None and worker.cores == (2, 3)
    assert placed((2, 3), "cores [2, 3] not pinned: bad", None)["cores"] == []
    old = worker_record({"pid": 7, "pgid": 7, "start_time": 1.0, "started_at": 2.0})
    assert old is not None and old.cores == ()   # a shim from before pinning
    record = exit_record({"exit_code": None, "signal": 9, "memory_limit_mb": 64,
                          "memory_enforced_by": "sampled", "memory_exceeded": True,
                          "memory_peak_mb": 201.5})
    assert record == ExitRecord(None, 9, "SIGKILL", "", 0, True, 64, 201.5, "sampled")
    assert exit_record({"exit_code": 0, "signal": None}) == ExitRecord(0, None)
    wire = Limits((1,), 64, "/sys/fs/cgroup/trainer")
    assert Limits.from_wire(json.loads(json.dumps(wire.to_wire()))) == wire
    assert Limits.from_wire(None) == Limits()


def end_of(record: ExitRecord) -> FinishRun:
    d = Driver()
    d.boot()
    d.start("r1")
    d.feed(ShimEnded("r1", 9))
    (finish,) = commands(d.feed(folder("r1", exit=record, stderr_tail="allocating")),
                         FinishRun)
    return finish


def test_a_run_over_its_memory_limit_ends_memory_limit_not_signal() -> None:
    sampled = end_of(ExitRecord(None, 9, "SIGKILL", "", 0, True, 64, 201.5, "sampled"))
    assert (sampled.outcome, sampled.cause, sampled.signal) == \
        (Outcome.FAILED.value, "memory_limit", 9)
    assert "over its memory limit of 64 MiB (peak 201.5 MiB)" in sampled.message
    assert "its shim killed" in sampled.message and "allocating" in sampled.message
    kernel = end_of(ExitRecord(None, 9, "SIGKILL", "", 0, True, 64, 64.0, "cgroup"))
    assert kernel.cause == "memory_limit" and "OOM killer" in kernel.message
    plain = end_of(ExitRecord(None, 9, "SIGKILL", "", 0, False, 64, 20.0, "sampled"))
    assert plain.cause == "signal"          # under its limit: a plain signal
    ok = end_of(ExitRecord(0, None, "", "", 0, True, 64, 70.0, "cgroup"))
    assert ok.outcome == Outcome.COMPLETED.value   # exit 0 stands, whatever was killed


def test_resident_memory_counts_live_processes_and_skips_gone_ones() -> None:
    assert resident([os.getpid()]) > 10 * 1024 * 1024     # this interpreter, pytest loaded
    assert resident([2**22 + 12345]) == 0                 # no such process (pid_max 2^22)


def test_the_cgroup_protocol_on_a_cgroup_tree_of_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The files a run's cgroup is made, entered, left, read and removed with (no real
    cgroup: this machine may have none with the memory controller; the system test
    tests/system/test_resources.py enforces through a real one where there is)."""
    own = tmp_path / "service"          # the shim's own cgroup
    own.mkdir()
    (tmp_path / "cgroup.subtree_control").write_text("cpu memory pids\n")
    monkeypatch.setattr(limits, "_own_cgroup", lambda: (str(tmp_path), "/service"))
    assert limits.cgroup_parent("")[2].startswith(f"cgroup {own} cannot be read")
    (own / "cgroup.subtree_control").write_text("cpu\n")
    assert "does not hand the memory controller" in limits.cgroup_parent("")[2]
    memory = limits.memory_for(64, "r1", str(tmp_path))     # TRAINER_CGROUP
    run = tmp_path / "trainer-r1"
    assert (memory.enforced_by, memory.cgroup, memory.note) == (limits.CGROUP, str(run), "")
    assert (run / "memory.max").read_text() == str(64 * 1024 * 1024)
    limits.enter(memory)
    assert (run / "cgroup.procs").read_text() == str(os.getpid())
    limits.leave(memory)
    assert (own / "cgroup.procs").read_text() == str(os.getpid())
    (run / "memory.events").write_text("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\n")
    (run / "memory.peak").write_text(str(70 * 1024 * 1024))
    limits.cgroup_end(memory)
    assert memory.exceeded and (run / "cgroup.kill").read_text() == "1"
    assert memory.record() == {"memory_limit_mb": 64, "memory_enforced_by": "cgroup",
                               "memory_exceeded": True, "memory_peak_mb": 70.0}
    unwritable = limits.memory_for(64, "r2", str(tmp_path / "missing"))
    assert unwritable.enforced_by == limits.SAMPLED and "cannot be read" in unwritable.note


def test_the_runs_own_env_vars_win_over_the_thread_counts_of_its_slots(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env({"TRAINER_HOME": str(tmp_path)})
    config = RunConfig.from_map({"worker": "cartpole", "resources": {"cpu_slots": 2},
                                 "env_vars": {"OMP_NUM_THREADS": "4"}})
    _, _, env = launch.prepare(settings, {"run_id": "r1", "config": config.to_map()}, [])
    assert env["OMP_NUM_THREADS"] == "4" and env["MKL_NUM_THREADS"] == "2"
