"""An idle stack sleeps until its next due work (its status, every status interval;
here 20 s), yet a submitted run starts at once, an event missed at the end of a burst
is still fetched, and SIGTERM stops every service at once (the signal wakes its poll)."""

from __future__ import annotations

import os
import socket
import time
from typing import Iterator

import pytest
import zmq

from core.settings import Settings
from tests.system.stack import Stack
from tests.helpers import ServiceProcess, wait_until
from tests.system.dispatch_helpers import submit, wait_status

LONG_STATUS_S = "20"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def idle_stack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    env = {**service_env, "TRAINER_STATUS_INTERVAL": LONG_STATUS_S, "TRAINER_CPU_SLOTS": "2"}
    s = Stack(env, Settings.from_env(env), ctx)
    try:  # (not Stack.start_*: they wait for a status message, 20 s apart here)
        s.bus.start()
        wait_until(lambda: os.path.exists(s.settings.bus_sub.removeprefix("ipc://")), 20,
                   message="the broker's socket")
        s.start_registry()
        started(s.dispatcher.start())
        yield s
    finally:
        s.close()


def started(proc: ServiceProcess) -> None:
    def up() -> bool:
        assert proc.alive(), proc.log()
        return "service.started" in proc.log()
    wait_until(up, 30, message=f"{proc.module} to start")


def _stop_time(proc: ServiceProcess) -> float:
    assert proc.proc is not None and proc.alive(), proc.log()
    t0 = time.monotonic()
    proc.proc.terminate()
    proc.proc.wait(timeout=30)
    return time.monotonic() - t0


@pytest.mark.timeout(90)
def test_an_idle_stack_starts_a_run_at_once_and_stops_at_once(idle_stack: Stack) -> None:
    s = idle_stack
    gateway = ServiceProcess("services.gateway", {**s.env, "TRAINER_GATEWAY_ADDR":
                             f"127.0.0.1:{free_port()}"}, os.path.join(s.settings.home, "gw.log"))
    started(gateway.start())
    # The services have sent their first status and sleep until the next (20 s away):
    # a submit still wakes the dispatcher, whose run completes well within that.
    run_id = submit(s, "test-exit", params={"code": 0})
    t0 = time.monotonic()
    assert wait_status(s, run_id, {"COMPLETED", "FAILED"}, timeout=15)["status"] == "COMPLETED"
    assert time.monotonic() - t0 < float(LONG_STATUS_S) / 2
    # SIGTERM wakes each sleeping service: none waits for its next due work.
    for proc in (gateway, s.dispatcher, s.registry, s.bus):
        took = _stop_time(proc)
        assert proc.proc is not None and proc.proc.returncode == 0, proc.log()
        assert took < 3.0, f"{proc.module} took {took:.1f}s to stop after SIGTERM"
