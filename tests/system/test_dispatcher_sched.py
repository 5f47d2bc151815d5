"""The dispatcher with real processes: a big run is not starved by smaller ones, a
cancel's grace counts from the recorded cancel across a restart, and GPUs outside the
inventory are refused."""

from __future__ import annotations

import os
import signal
import time

import pytest

from core.errors import ValidationError
from core.rundir import KILL_FILE
from services.dispatcher.forkserver import fork_server_of
from services.dispatcher.procs import process_start_time
from tests.system.stack import Stack
from tests.system.dispatch_helpers import TERMINAL, run_dir, run_of, submit, wait_status
from tests.helpers import wait_until


def test_a_run_needing_every_cpu_slot_is_not_starved_by_later_single_slot_runs(
        dstack: Stack) -> None:
    """The report, on the fixture's 4 slots: one slot is busy, a priority-10 run asks
    all 4, then priority -5 runs ask 1 each. The 3 free slots are kept for the big run:
    it starts as soon as the busy one frees, before any of the small runs."""
    holder = submit(dstack, "test-sleep", seed=1, params={"seconds": 1.5})
    wait_status(dstack, holder, {"RUNNING"}, timeout=20)
    big = submit(dstack, "test-sleep", seed=2, priority=10, params={"seconds": 0.2},
                 resources={"gpus": 0, "cpu_slots": 4})
    small = [submit(dstack, "test-sleep", seed=10 + i, priority=-5, params={"seconds": 0.2})
             for i in range(6)]
    def scheduled(run_id: str) -> bool:  # a pass has judged it: waits, or started
        run = run_of(dstack, run_id)
        return run["status"] != "PENDING" or bool(run["waiting_reason"])
    wait_until(lambda: all(map(scheduled, small)), 10, message="the small runs judged")
    assert [run_of(dstack, r)["status"] for r in small] == ["PENDING"] * len(small)
    assert run_of(dstack, big)["waiting_reason"] == "needs 4 CPU slot(s), more than are free"
    assert "free ones are kept for " + big in run_of(dstack, small[0])["waiting_reason"]
    runs = {r: wait_status(dstack, r, TERMINAL, timeout=30) for r in [holder, big, *small]}
    assert all(run["status"] == "COMPLETED" for run in runs.values()), runs
    assert runs[big]["started_at"] >= runs[holder]["finished_at"]
    assert runs[big]["started_at"] < min(runs[r]["started_at"] for r in small)


def test_a_cancel_grace_is_not_restarted_by_a_dispatcher_restart(dstack: Stack) -> None:
    """A worker deaf to SIGTERM, cancelled with a 4 s grace; the dispatcher is killed
    (SIGKILL) after the SIGTERM and started again: the run is SIGKILLed 4 s after the
    cancel (plus the sweep), not 4 s after the restart."""
    grace = 4.0
    run_id = submit(dstack, "test-ignore-term", cancel_grace_s=grace)
    wait_status(dstack, run_id, {"RUNNING"}, timeout=20)
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, run_id), "seen.json")), 20,
               message="the worker to ignore SIGTERM")
    cancelled = dstack.client().call("request_cancel", {"run_id": run_id, "reason": "r"})
    cancelled_at = cancelled["run"]["updated_at"]  # the CancelRequested event's time
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, run_id), KILL_FILE)), 10,
               message="the SIGTERM to be recorded")
    # Part of the grace passes before the restart: the worker, deaf to the SIGTERM,
    # heartbeats on (every 0.2 s) through six more beats first.
    beats = dstack.subscriber(f"hb.{run_id}")
    heard: list[object] = []
    def six_beats() -> bool:
        msg = beats.recv(100)
        if msg is not None and msg.topic == f"hb.{run_id}":
            heard.append(msg)
        return len(heard) >= 6
    wait_until(six_beats, 10, message="six heartbeats after the SIGTERM")
    dstack.dispatcher.kill9()
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "CANCELLED" and run["signal"] == signal.SIGKILL, run
    took = run["finished_at"] - cancelled_at
    assert took < grace + 1.0, f"ended {took:.1f}s after the cancel (grace {grace:g}s)"


def test_a_cancel_recorded_while_the_dispatcher_is_down_keeps_its_deadline(
        dstack: Stack) -> None:
    """The dispatcher is killed first, then the run (deaf to SIGTERM, 3 s grace) is
    cancelled, and the dispatcher stays down past that grace: once started again it
    ends the run with SIGKILL at once (its grace was over), not a whole grace later."""
    grace = 5.0
    run_id = submit(dstack, "test-ignore-term", cancel_grace_s=grace)
    wait_status(dstack, run_id, {"RUNNING"}, timeout=20)
    dstack.dispatcher.kill9()
    cancelled = dstack.client().call("request_cancel", {"run_id": run_id, "reason": "r"})
    cancelled_at = cancelled["run"]["cancel_requested_at"]
    assert cancelled_at == cancelled["run"]["updated_at"]  # the CancelRequested event's time
    beats = dstack.subscriber(f"hb.{run_id}")
    heard: list[object] = []
    def beats_for_the_grace() -> bool:  # the worker beats every 0.2 s: 5.4 s of them
        msg = beats.recv(100)
        if msg is not None and msg.topic == f"hb.{run_id}":
            heard.append(msg)
        return len(heard) >= (grace + 0.4) / 0.2
    wait_until(beats_for_the_grace, 15, message="the grace to pass, in heartbeats")
    restarted_at = time.time()
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "CANCELLED" and run["signal"] == signal.SIGKILL, run
    record = run_of(dstack, run_id)
    assert record["cancel_requested_at"] == cancelled_at
    took = run["finished_at"] - restarted_at  # its start, recovery, a TERM, then the KILL
    assert took < grace - 1.0, f"ended {took:.1f}s after the restart (grace {grace:g}s)"


def test_a_claimed_gpu_gone_at_the_start_fails_the_run_and_unknown_gpus_are_refused(
        dstack: Stack) -> None:
    """The fork server held (SIGSTOP): a 2-GPU run is DISPATCHING, its worker not
    started. A claim naming a GPU outside the dispatcher's inventory is refused. The
    dispatcher (and its fork server) die, and it comes back with one fake GPU: the run
    it starts again holds a GPU that is gone, and fails naming it."""
    server = fork_server_of(dstack.dispatcher.pid)
    assert server is not None
    os.kill(server, signal.SIGSTOP)
    try:
        run_id = submit(dstack, "test-sleep", gpus=2)
        wait_status(dstack, run_id, {"DISPATCHING"})
        other = submit(dstack, "test-sleep", seed=1, gpus=1)
        with pytest.raises(ValidationError) as err:
            dstack.client().call("claim_gpus", {"run_id": other, "gpu_uuids": ["GPU-bogus"],
                                                "claimed_by": "tool"})
        assert "GPU 'GPU-bogus' is not in the GPU inventory (2 GPU(s)" in err.value.message
        dstack.client().call("request_cancel", {"run_id": other})
        dstack.dispatcher.kill9()
    finally:
        os.kill(server, signal.SIGKILL)
    wait_until(lambda: process_start_time(server) is None, 10, message="the fork server gone")
    dstack.dispatcher.env = {**dstack.env, "TRAINER_FAKE_GPUS": "1"}
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "FAILED" and run["cause"] == "spawn_error", run
    assert "GPU(s) GPU-fake-0001 claimed for the run are no longer in the GPU inventory" \
        in run["message"], run["message"]
