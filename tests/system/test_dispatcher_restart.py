"""A dispatcher killed with SIGKILL loses nothing: live workers are adopted, dead
ones without an exit record end FAILED lost, and cancels at any moment work."""

from __future__ import annotations

import os
import signal
import time

from bus.codec import envelope_from_map, event_from_envelope
from bus.topics import Topic
from services.dispatcher.forkserver import fork_server_of
from services.dispatcher.spawner import read_json
from services.dispatcher.procs import process_start_time
from tests.system.stack import Stack
from tests.system.dispatch_helpers import (TERMINAL, assert_nothing_left, read_text, run_dir,
                                                submit, wait_status)
from tests.helpers import wait_until


def _worker(stack: Stack, run_id: str) -> dict:
    path = os.path.join(run_dir(stack, run_id), "worker.json")
    return wait_until(lambda: read_json(path), 20, message="worker.json")


def _claim_order(stack: Stack, run_ids: list[str]) -> list[str]:
    """The runs among run_ids in the order of their GpusClaimed events in the log."""
    events = stack.client().call("events_since", {"after_seq": 0, "limit": 1000})["events"]
    decoded = [event_from_envelope(envelope_from_map(e)) for e in events]
    return [e.run_id for e in decoded if e.TYPE == "GpusClaimed" and e.run_id in run_ids]


def test_restarted_dispatcher_adopts_a_live_worker_which_then_completes(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 4})
    wait_status(dstack, run_id, {"RUNNING"})
    worker = _worker(dstack, run_id)
    dstack.dispatcher.kill9()
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "COMPLETED" and run["adoptions"] == 1, run
    assert run["pid"] == worker["pid"]
    events = dstack.client().call("events_since", {"after_seq": 0, "limit": 1000})["events"]
    types = [event_from_envelope(envelope_from_map(e)).TYPE for e in events]
    assert types.count("RunAdopted") == 1 and types.count("RunStarted") == 1
    assert_nothing_left(dstack)


def test_worker_killed_while_the_dispatcher_is_down_ends_lost(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 30})
    wait_status(dstack, run_id, {"RUNNING"})
    worker = _worker(dstack, run_id)
    dstack.dispatcher.kill9()
    # the whole run dies (shim and worker, as an OOM killer or a reboot would do it)
    os.kill(int(worker["shim_pid"]), signal.SIGKILL)
    os.killpg(int(worker["pgid"]), signal.SIGKILL)
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "FAILED" and run["cause"] == "lost", run
    assert_nothing_left(dstack)


def test_a_lost_run_whose_group_lives_on_is_emptied_before_its_gpu_is_freed(
        dstack: Stack) -> None:
    """The worker and its shim die while the dispatcher is down, a child of the worker
    lives on in its process group: the restarted dispatcher kills it, then ends the
    run FAILED lost and releases its GPU."""
    run_id = submit(dstack, "test-sleep", params={"seconds": 30, "child": True}, gpus=1)
    wait_status(dstack, run_id, {"RUNNING"})
    worker = _worker(dstack, run_id)
    child_file = os.path.join(run_dir(dstack, run_id), "child.pid")
    child = int(wait_until(lambda: read_text(child_file), 20, message="child.pid"))
    dstack.dispatcher.kill9()
    os.kill(int(worker["shim_pid"]), signal.SIGKILL)
    os.kill(int(worker["pid"]), signal.SIGKILL)  # the child is not killed
    wait_until(lambda: process_start_time(int(worker["pid"])) is None, 10, message="worker gone")
    assert process_start_time(child) is not None
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "FAILED" and run["cause"] == "lost", run
    assert process_start_time(child) is None  # gone before the run was ended
    assert_nothing_left(dstack)


def test_worker_killed_by_sigkill_while_the_dispatcher_is_down_has_its_true_status(
        dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 30})
    wait_status(dstack, run_id, {"RUNNING"})
    worker = _worker(dstack, run_id)
    dstack.dispatcher.kill9()
    os.killpg(int(worker["pgid"]), signal.SIGKILL)  # the shim survives and records it
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, run_id), "exit.json")), 10)
    dstack.start_dispatcher()
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "FAILED" and run["cause"] == "signal" and run["signal"] == 9, run
    assert_nothing_left(dstack)


def test_cancel_right_after_submit_ends_cancelled_whatever_the_state(dstack: Stack) -> None:
    client = dstack.client()
    ids = [submit(dstack, "test-sleep", seed=i, params={"seconds": 20}) for i in range(4)]
    for run_id in ids:
        client.call("request_cancel", {"run_id": run_id, "reason": "changed my mind"})
    runs = [wait_status(dstack, r, TERMINAL, timeout=30) for r in ids]
    assert all(r["status"] == "CANCELLED" for r in runs), [r["status"] for r in runs]
    assert_nothing_left(dstack)


def test_a_cancel_while_the_run_is_starting_is_sent_once_its_worker_has_started(
        dstack: Stack) -> None:
    """The fork server held (SIGSTOP): the run is DISPATCHING, its worker not started,
    when the cancel is recorded; once it starts, it gets SIGTERM and ends CANCELLED."""
    server = fork_server_of(dstack.dispatcher.pid)
    assert server is not None
    client = dstack.client()
    os.kill(server, signal.SIGSTOP)
    try:
        run_id = submit(dstack, "test-sleep", params={"seconds": 20})
        wait_status(dstack, run_id, {"DISPATCHING"})
        client.call("request_cancel", {"run_id": run_id, "requested_by": "alice",
                                       "reason": "while starting"})
        assert client.call("get_run", {"run_id": run_id})["run"]["status"] == "DISPATCHING"
    finally:
        os.kill(server, signal.SIGCONT)
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "CANCELLED" and run["cancel_requested_by"] == "alice", run
    events = client.call("events_since", {"after_seq": 0, "limit": 1000})["events"]
    order = [e.TYPE for e in map(event_from_envelope, map(envelope_from_map, events))
             if e.run_id == run_id]
    assert order.index("GpusClaimed") < order.index("CancelRequested") < order.index(
        "RunStarted"), order
    assert_nothing_left(dstack)


def test_pending_queue_survives_a_dispatcher_restart(dstack: Stack) -> None:
    hog = submit(dstack, "test-sleep", seed=1, gpus=2, params={"seconds": 3})
    wait_status(dstack, hog, {"RUNNING"})
    queued = [submit(dstack, "test-sleep", seed=10 + i, gpus=1, priority=i) for i in range(3)]
    dstack.dispatcher.kill9()
    dstack.start_dispatcher()
    runs = [wait_status(dstack, r, TERMINAL, timeout=40) for r in [hog, *queued]]
    assert all(r["status"] == "COMPLETED" for r in runs), runs
    # Two 1-GPU runs start together once the hog ends, so their start times race;
    # the order in which the dispatcher claimed their GPUs is the queue's order.
    assert _claim_order(dstack, queued) == [queued[2], queued[1], queued[0]]
    assert_nothing_left(dstack)


def test_registry_restart_mid_run_loses_nothing(dstack: Stack) -> None:
    """The registry killed mid-run and started again later: meanwhile the dispatcher
    keeps publishing its status (it is alive: `trainer health` must not call it down,
    also while its call to finish the run waits for the registry), and once the
    registry is back the run completes and a new one runs."""
    run_id = submit(dstack, "test-sleep", params={"seconds": 1})
    wait_status(dstack, run_id, {"RUNNING"})
    topic = Topic.STATUS.topic("dispatcher")
    status = dstack.subscriber(topic)
    dstack.registry.kill9()
    wait_until(lambda: os.path.exists(os.path.join(run_dir(dstack, run_id), "exit.json")),
               15, message="the worker to end while the registry is down")
    # A window to measure in: inside the 2 x 2 s that the call to finish the run waits.
    arrivals, end = [time.monotonic()], time.monotonic() + 3.0
    while time.monotonic() < end:
        msg = status.recv(100)
        if msg is not None and msg.topic == topic:
            arrivals.append(time.monotonic())
    arrivals.append(end)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert max(gaps) < 1.5, gaps  # every 0.5 s (TRAINER_STATUS_INTERVAL is 0.5 here)
    dstack.start_registry()
    run = wait_status(dstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "COMPLETED", run
    second = submit(dstack, "test-sleep", seed=99, params={"seconds": 0.1})
    assert wait_status(dstack, second, TERMINAL, timeout=30)["status"] == "COMPLETED"
    assert dstack.dispatcher.alive()
    assert_nothing_left(dstack)


def test_a_killed_fork_server_stops_the_dispatcher_and_a_restart_loses_nothing(
        dstack: Stack) -> None:
    running = submit(dstack, "test-sleep", params={"seconds": 3})
    wait_status(dstack, running, {"RUNNING"})
    server = fork_server_of(dstack.dispatcher.pid)
    assert server is not None
    os.kill(server, signal.SIGKILL)
    # the dispatcher sees its fork server gone and exits (supervisord restarts it)
    wait_until(lambda: not dstack.dispatcher.alive(), 10, message="the dispatcher to exit")
    assert "forkserver.gone" in dstack.dispatcher.log()
    dstack.start_dispatcher()
    later = submit(dstack, "test-sleep", seed=7, params={"seconds": 0.1})
    runs = [wait_status(dstack, r, TERMINAL, timeout=30) for r in (running, later)]
    assert [r["status"] for r in runs] == ["COMPLETED", "COMPLETED"], runs
    assert runs[0]["adoptions"] == 1
    assert_nothing_left(dstack)
