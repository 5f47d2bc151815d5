"""Fixtures of the dispatcher's in-process tests: the decision core driven through the
real shell pieces (fakes.Harness) around a scripted registry and a stand-in fork server
on a FakeClock; the dispatcher's loop itself (DispatcherLoop, with in-process zmq
sockets); and the stand-in worker processes, killed after each test."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any, Callable, Iterator

import pytest
import zmq

from bus.badframes import BadFrameLog
from bus.pubsub import Publisher, Subscriber
from core.clock import FakeClock
from core.settings import Settings
from runtime.logs import ServiceLogger
from services.dispatcher.decide.gpus import Inventory
from services.dispatcher.decide.state import SOURCE
from services.dispatcher.shell.forklauncher import ForkLauncher
from services.dispatcher.shell.gpuread import GpuReader
from services.dispatcher.shell.loop import DispatcherLoop
from tests.integration.dispatcher.fakes import Follower, Harness, ScriptedRegistry, StandInForks


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry() -> ScriptedRegistry:
    return ScriptedRegistry()


@pytest.fixture
def forks() -> Iterator[StandInForks]:
    stand_in = StandInForks()
    yield stand_in
    stand_in.close()


@pytest.fixture
def make_harness(settings: Settings, clock: FakeClock, registry: ScriptedRegistry,
                 forks: StandInForks) -> Iterator[Callable[..., Harness]]:
    """A dispatcher not started yet (``boot()`` starts it), on this test's registry,
    fork server and clock; keywords: Harness's (inventory, gpu_read, cpu_slots)."""
    made: list[Harness] = []

    def make(**options: Any) -> Harness:
        made.append(Harness(settings, clock, registry, forks, **options))
        return made[-1]
    yield make
    for harness in made:
        harness.close()


@pytest.fixture
def cold(make_harness: Callable[..., Harness]) -> Harness:
    """A dispatcher with 4 CPU slots and no GPU, about to start (the start-up tests
    give the registry its runs first, then ``boot()`` it)."""
    return make_harness()


@pytest.fixture
def h(cold: Harness) -> Harness:
    """The same, started on an empty registry."""
    return cold.boot()


@pytest.fixture
def loop(settings: Settings, clock: FakeClock, registry: ScriptedRegistry,
         forks: StandInForks, ctx: zmq.Context) -> Iterator[DispatcherLoop]:
    """The dispatcher's loop itself around the same stand-ins, its follower a
    fakes.Follower (``loop.follower.error``: what its poll raises); its sockets are
    in-process zmq sockets, closed after the test."""
    log = ServiceLogger("dispatcher-test")
    bad = BadFrameLog(log)
    events = ctx.socket(zmq.SUB)
    telemetry = ctx.socket(zmq.SUB)
    pub = ctx.socket(zmq.PUB)
    for sock in (events, telemetry, pub):
        sock.setsockopt(zmq.LINGER, 0)
    built = DispatcherLoop(settings, registry,  # type: ignore[arg-type]
                           Follower(Subscriber(events, bad)),  # type: ignore[arg-type]
                           Subscriber(telemetry, bad), Publisher(pub, SOURCE, clock),
                           ForkLauncher(settings, forks=forks),  # type: ignore[arg-type]
                           Inventory(), 4, clock, log, GpuReader(None), "test-host")
    yield built
    built.close()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    out: list[subprocess.Popen[bytes]] = []
    yield out
    for p in out:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
