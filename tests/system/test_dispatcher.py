"""The dispatcher with real processes: scheduling on fake GPUs, exits, cancels,
timeouts, kills, output floods."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
import signal

import pytest

from services.dispatcher.spawner import read_json
from services.dispatcher.procs import process_start_time
from tests.system.stack import Stack
from tests.system.dispatch_helpers import (TERMINAL, assert_nothing_left, read_text,
                                                run_dir, seen, submit, wait_status)
from tests.helpers import wait_until


def test_a_run_completes_and_its_artifact_is_registered(dstack: Stack) -> None:
    """ckpt.bin is reported on the bus; left.bin is only in the manifest (its message
    "lost"): the exit reconciliation registers it."""
    run_id = submit(dstack, "test-sleep", params={"seconds": 0.2, "manifest_only": True})
    run = wait_status(dstack, run_id, TERMINAL)
    assert run["status"] == "COMPLETED" and run["exit_code"] == 0, run
    assert run["pid"] and run["started_at"] and run["artifact_count"] == 3
    arts = dstack.client().call("list_artifacts", {"run_id": run_id})["artifacts"]
    assert sorted(a["path"] for a in arts) == ["ckpt.bin", "code/attempt-1.json", "left.bin"]
    with open(os.path.join(run_dir(dstack, run_id), "stdout.log")) as fh:
        assert "done" in fh.read()
    assert seen(dstack, run_id)["cuda"] == ""  # no GPU asked: none visible
    assert_nothing_left(dstack)


def test_nonzero_exit_fails_with_code_and_stderr(dstack: Stack) -> None:
    run_id = submit(dstack, "test-exit", params={"code": 3, "message": "out of cheese"})
    run = wait_status(dstack, run_id, TERMINAL)
    assert run["status"] == "FAILED" and run["cause"] == "exit_code"
    assert run["exit_code"] == 3 and "out of cheese" in run["message"]
    assert_nothing_left(dstack)


def test_a_run_that_can_never_fit_fails_at_once(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", gpus=3)
    run = wait_status(dstack, run_id, TERMINAL, timeout=10)
    assert run["status"] == "FAILED" and run["cause"] == "unschedulable"
    assert "3 GPU" in run["message"] and "has 2" in run["message"]


@pytest.mark.parametrize("end", ["exit", "cancel"])
def test_processes_that_left_the_group_end_with_the_run(dstack: Stack, end: str) -> None:
    """The worker starts a process in a session of its own (out of its process group,
    which the dispatcher signals), which starts another the same way: whether the
    worker exits or is cancelled, both are gone before the run ends and its GPU is
    free."""
    run_id = submit(dstack, "test-sleep", gpus=1, cancel_grace_s=5,
                    params={"seconds": 0.3 if end == "exit" else 60, "escape": True})
    folder = run_dir(dstack, run_id)
    pids = [int(wait_until(lambda f=f: read_text(os.path.join(folder, f)), 20, message=f))
            for f in ("escaped.pid", "escaped2.pid")]
    if end == "cancel":
        wait_status(dstack, run_id, {"RUNNING"})
        dstack.client().call("request_cancel", {"run_id": run_id, "reason": "stop"})
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == ("COMPLETED" if end == "exit" else "CANCELLED"), run
    assert [process_start_time(p) for p in pids] == [None, None]
    assert read_json(os.path.join(folder, "exit.json"))["leftovers_killed"] == 2
    assert any('"run.leftovers_killed"' in line and run_id in line
               for line in dstack.dispatcher.log().splitlines())
    assert_nothing_left(dstack)


def test_a_run_whose_shim_dies_ends_lost_and_frees_its_gpu(dstack: Stack) -> None:
    """Its shim killed while the dispatcher runs: nobody can record the worker's end
    any more, so the worker is killed, and the processes it started in sessions of
    their own (which its shim, their subreaper, would have ended), and the run ends
    FAILED lost at once."""
    run_id = submit(dstack, "test-sleep", gpus=1, params={"seconds": 60, "escape": True})
    folder = run_dir(dstack, run_id)
    escaped = [int(wait_until(lambda f=f: read_text(os.path.join(folder, f)), 20, message=f))
               for f in ("escaped.pid", "escaped2.pid")]
    wait_status(dstack, run_id, {"RUNNING"})
    worker = wait_until(lambda: read_json(os.path.join(folder, "worker.json")), 10)
    os.kill(int(worker["shim_pid"]), signal.SIGKILL)
    run = wait_status(dstack, run_id, TERMINAL, timeout=10)
    assert run["status"] == "FAILED" and run["cause"] == "lost", run
    assert [process_start_time(p) for p in escaped] == [None, None]
    assert_nothing_left(dstack)  # the worker is gone, the GPU free


@pytest.mark.timeout(120)
def test_twenty_runs_on_two_gpus_never_overlap(dstack: Stack) -> None:
    ids = [submit(dstack, "test-sleep", seed=i, gpus=1, params={"seconds": 0.3})
           for i in range(20)]
    runs = [wait_status(dstack, r, TERMINAL, timeout=100) for r in ids]
    assert all(r["status"] == "COMPLETED" for r in runs), [r["status"] for r in runs]
    spans: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        info = seen(dstack, run["run_id"])
        assert info["cuda"] == run["gpus"][0]  # the worker saw exactly its GPU
        # From the shim's start of the worker (before any of its imports) to its end.
        start = read_json(os.path.join(run_dir(dstack, run["run_id"]), "worker.json"))[
            "started_at"]
        end = read_json(os.path.join(run_dir(dstack, run["run_id"]), "exit.json"))["ended_at"]
        spans.setdefault(info["cuda"], []).append((start, end))
    assert set(spans) == {"GPU-fake-0000", "GPU-fake-0001"}
    for gpu, intervals in spans.items():
        intervals.sort()
        for (_, end), (start, _) in zip(intervals, intervals[1:]):
            assert start >= end, f"two runs overlapped on {gpu}"
    assert_nothing_left(dstack)


def test_cancel_pending_and_running(dstack: Stack) -> None:
    client = dstack.client()
    hog = submit(dstack, "test-sleep", seed=1, gpus=2, params={"seconds": 30})
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, hog), "seen.json")), 20)
    waiter = submit(dstack, "test-sleep", seed=2, gpus=1)
    run = wait_until(lambda: (r := client.call("get_run", {"run_id": waiter})["run"])
                     ["waiting_reason"] and r, 10, message="a waiting reason")
    assert "GPU" in run["waiting_reason"]
    client.call("request_cancel", {"run_id": waiter, "requested_by": "alice", "reason": "nah"})
    assert client.call("get_run", {"run_id": waiter})["run"]["status"] == "CANCELLED"
    client.call("request_cancel", {"run_id": hog, "requested_by": "bob", "reason": "done"})
    run = wait_status(dstack, hog, TERMINAL, timeout=15)
    assert run["status"] == "CANCELLED" and run["cancel_requested_by"] == "bob"
    assert run["exit_code"] == 0  # it checkpointed and left within its grace
    with open(os.path.join(run_dir(dstack, hog), "stdout.log")) as fh:
        assert "stopping" in fh.read()
    assert_nothing_left(dstack)


def test_a_worker_ignoring_sigterm_is_killed_after_the_grace(dstack: Stack) -> None:
    run_id = submit(dstack, "test-ignore-term", cancel_grace_s=0.5)
    wait_status(dstack, run_id, {"RUNNING"})
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, run_id), "seen.json")), 10)
    dstack.client().call("request_cancel", {"run_id": run_id, "reason": "stop"})
    run = wait_status(dstack, run_id, TERMINAL, timeout=15)
    assert run["status"] == "CANCELLED" and run["signal"] == 9
    assert_nothing_left(dstack)


def test_heartbeat_loss_fails_the_run_within_timeout_plus_interval(dstack: Stack) -> None:
    """A worker that heartbeats, then hangs: SIGTERM within timeout + one interval of
    its last heartbeat (read from the dispatcher's log), then FAILED heartbeat_timeout."""
    timeout, interval = 1.0, 0.2
    run_id = submit(dstack, "test-silent", params={"beat_for": 0.6},
                    heartbeat_timeout_s=timeout, heartbeat_interval_s=interval,
                    startup_grace_s=5.0, cancel_grace_s=0.2)
    run = wait_status(dstack, run_id, TERMINAL, timeout=15)
    assert run["status"] == "FAILED" and run["cause"] == "heartbeat_timeout"
    with open(os.path.join(run_dir(dstack, run_id), "silent.json")) as fh:
        last_beat = json.load(fh)["last_beat"]
    term = [json.loads(line) for line in dstack.dispatcher.log().splitlines()
            if '"run.signal"' in line and run_id in line and '"TERM"' in line]
    assert len(term) == 1, term
    term_at = datetime.strptime(term[0]["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=timezone.utc).timestamp()
    # (the log's clock has millisecond steps)
    assert timeout - 0.002 <= term_at - last_beat < timeout + interval, (term_at - last_beat)
    assert_nothing_left(dstack)


def test_time_limit(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 30}, time_limit_s=0.5)
    run = wait_status(dstack, run_id, TERMINAL, timeout=15)
    assert run["status"] == "FAILED" and run["cause"] == "time_limit"
    assert_nothing_left(dstack)


@pytest.mark.timeout(120)
def test_output_flood_neither_stalls_nor_loses_a_byte(dstack: Stack) -> None:
    run_id = submit(dstack, "test-flood", params={"mb": 50, "long_line": 1024 * 1024})
    run = wait_status(dstack, run_id, TERMINAL, timeout=90)
    assert run["status"] == "COMPLETED", run
    half = 50 * 1024 * 1024 // 2
    lines = -(-half // 100)  # each stream gets this many 100-byte lines
    out = os.path.getsize(os.path.join(run_dir(dstack, run_id), "stdout.log"))
    err = os.path.getsize(os.path.join(run_dir(dstack, run_id), "stderr.log"))
    assert err == lines * 100
    assert out == lines * 100 + 1024 * 1024 + 1
