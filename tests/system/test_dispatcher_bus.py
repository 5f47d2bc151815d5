"""The dispatcher and the bus: artifacts registered live, log lines published,
no run killed for silence while the bus itself is down."""

from __future__ import annotations

import time

from tests.system.stack import Stack
from tests.system.dispatch_helpers import (TERMINAL, assert_nothing_left, submit,
                                                wait_status)
from tests.helpers import wait_until


def test_reported_artifacts_are_registered_while_the_run_runs(dstack: Stack) -> None:
    client = dstack.client()
    run_id = submit(dstack, "test-sleep", params={"seconds": 3, "artifact_early": True})
    wait_until(lambda: client.call("list_artifacts", {"run_id": run_id})["artifacts"], 15,
               message="the early artifact to be registered")
    assert client.call("get_run", {"run_id": run_id})["run"]["status"] == "RUNNING"
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    paths = sorted(a["path"] for a in client.call("list_artifacts",
                                                  {"run_id": run_id})["artifacts"])
    # and the attempt's code identity, recorded by the worker runner (kind "code")
    assert run["status"] == "COMPLETED" and paths == ["ckpt.bin", "code/attempt-1.json",
                                                      "early.txt"]


def test_worker_output_is_published_on_the_bus(dstack: Stack) -> None:
    sub = dstack.subscriber("log.")
    run_id = submit(dstack, "test-exit", params={"code": 1, "message": "hello from stderr"})
    wait_status(dstack, run_id, TERMINAL)
    def got_line() -> bool:
        msg = sub.recv(200)
        return msg is not None and msg.topic == f"log.{run_id}.stderr" and \
            "hello from stderr" in msg.envelope.payload["lines"]
    wait_until(got_line, 10, message="the stderr line on the bus")


def test_no_run_is_killed_for_silence_while_the_bus_is_down(dstack: Stack) -> None:
    run_id = submit(dstack, "test-sleep", params={"seconds": 5}, heartbeat_timeout_s=1.0,
                    startup_grace_s=0.0)
    wait_status(dstack, run_id, {"RUNNING"})
    dstack.bus.kill9()
    down_at = time.monotonic()
    wait_until(lambda: "bus.unreachable" in dstack.dispatcher.log(), 10,
               message="the dispatcher to notice the bus is gone")
    wait_until(lambda: time.monotonic() - down_at > 2.0, 10, message="2 s without a bus")
    assert wait_status(dstack, run_id, {"RUNNING", *TERMINAL})["status"] == "RUNNING"
    dstack.start_bus()
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "COMPLETED", run
    assert_nothing_left(dstack)
