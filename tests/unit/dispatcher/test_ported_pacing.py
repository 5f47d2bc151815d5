"""The dispatcher's pace (ported from tests/unit/test_pacing.py, which drove the old
Pacer): how long the loop may wait for the next thing to hear, how often its status
(the probe of the bus) goes out idle and while it watches runs, and that probing
again after an idle spell is neither an outage nor a recovery.

The loop's two pacing methods are called on a DispatcherLoop built without its
sockets (only the state, a status beacon and a fake clock: nothing is polled); the
bus's health is the decision core's, driven by the Driver."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace
from typing import Any

import pytest

from core.clock import FakeClock
from runtime.status import StatusBeacon
from services.dispatcher.decide.gpus import GpuSource, Inventory
from services.dispatcher.decide.inputs import BusRearmed, BusSeen, GpusRead
from services.dispatcher.decide.phases import Phase
from services.dispatcher.shell import hearing
from services.dispatcher.shell.loop import PROBE_S, DispatcherLoop
from tests.unit.dispatcher.driver import Driver, logged

IDLE_S, TICK_S = 2.0, 0.05


def ms(seconds: float) -> int:
    """The poll timeout the loop uses for a wait of ``seconds``."""
    return int(seconds * 1000) + (seconds > 0)


class NoEffects:
    def run(self, effects: list[Any]) -> list[Any]:
        return []


def loop_on(d: Driver) -> DispatcherLoop:
    """A loop whose state is ``d``'s, on a fake clock of its own (the waits are judged
    against it; the state's own times only where a test sets them), its first status
    sent."""
    clock = FakeClock()
    loop = DispatcherLoop.__new__(DispatcherLoop)
    loop.settings = SimpleNamespace(tick=TICK_S, status_interval=IDLE_S)  # type: ignore[assignment]
    loop.clock, loop.state, loop.watching = clock, d.state, False
    loop.probe_s = min(IDLE_S, PROBE_S)
    loop.beacon = StatusBeacon("dispatcher", IDLE_S, clock, dict)
    loop.effects = NoEffects()  # type: ignore[assignment]
    assert loop.beacon.due() is not None  # the first status went out
    return loop


def waiting_gpu_run() -> Driver:
    """Idle but for a queued run waiting for a GPU with more free memory (its
    waiting reason stored): the GPUs are read again at the next full sweep."""
    d = Driver(gpu_count=1)
    d.boot()
    (gpu,) = d.state.inventory.gpus
    d.feed(GpusRead(Inventory((dataclasses.replace(gpu, memory_free=0),), GpuSource.FAKE)))
    d.settle(d.submit("r1", resources={"gpus": 1, "min_gpu_memory_mb": 1}))
    assert d.phase("r1") is Phase.QUEUED and d.state.runs["r1"].waiting_reason
    assert not d.state.dirty and not d.state.retry_due
    return d


def test_an_idle_loop_sleeps_until_its_next_status(d: Driver) -> None:
    loop = loop_on(d)
    assert loop._wait_ms(5.0) == ms(IDLE_S)
    loop.clock.advance(1.5)  # type: ignore[attr-defined]
    assert loop._wait_ms(5.0) == ms(0.5)
    assert loop._wait_ms(0.1) == ms(0.1)


@pytest.mark.parametrize("until_gpu_read, expected", [(0.7, 0.7), (-1.0, 0.0), (9.0, IDLE_S)])
def test_a_run_waiting_for_gpus_wakes_the_loop_for_the_next_gpu_read(
        until_gpu_read: float, expected: float) -> None:
    loop = loop_on(waiting_gpu_run())
    loop.state = dataclasses.replace(loop.state, next_full=loop.clock.monotonic() + until_gpu_read)
    assert loop._wait_ms(5.0) == ms(expected)


def test_a_busy_loop_wakes_every_tick_and_telemetry_interval(d: Driver) -> None:
    d.start("r1")
    loop = loop_on(d)
    assert loop._wait_ms(5.0) == ms(min(TICK_S, hearing.TELEMETRY_S))
    loop.state = dataclasses.replace(loop.state, runs={}, dirty=True)  # a pass due
    assert loop._wait_ms(5.0) == ms(min(TICK_S, hearing.TELEMETRY_S))


def test_watching_a_run_probes_the_bus_at_once_and_often_then_slows_down_idle(
        d: Driver) -> None:
    d.start("r1")
    loop = loop_on(d)
    idle_state = dataclasses.replace(loop.state, runs={})
    clock: FakeClock = loop.clock  # type: ignore[assignment]
    clock.advance(0.1)
    assert loop.beacon.due() is None
    loop._pace()
    assert loop.beacon.due() is not None, "the first probe goes out at once"
    assert loop.beacon.interval == PROBE_S and loop.state.bus.window_s == 3 * PROBE_S
    clock.advance(PROBE_S)
    assert loop.beacon.due() is not None
    loop.state = dataclasses.replace(idle_state, bus=loop.state.bus)
    loop._pace()
    assert loop.beacon.interval == IDLE_S and loop.state.bus.window_s == 3 * IDLE_S
    clock.advance(PROBE_S)
    assert loop.beacon.due() is not None  # (the one already planned)
    clock.advance(IDLE_S - 0.01)
    assert loop.beacon.due() is None
    clock.advance(0.01)
    assert loop.beacon.due() is not None


def test_probing_again_after_an_idle_spell_is_no_outage_nor_recovery(d: Driver) -> None:
    d.feed(BusSeen(d.now))
    assert logged(d.tick(0.0), "bus.reachable")        # the first sight at start-up
    d.feed(BusSeen(d.now + IDLE_S))                     # idle: statuses every IDLE_S
    d.tick(IDLE_S)
    d.feed(BusRearmed(3 * PROBE_S))                     # a run is watched: probes often
    quiet = d.tick(0.0)
    assert not logged(quiet, "bus.unreachable") and not logged(quiet, "bus.reachable")
    d.feed(BusSeen(d.now + 0.01))                       # our probe came back
    assert not logged(d.tick(0.01), "bus.reachable"), "not a recovery: nothing was lost"
    assert d.state.bus.healthy(d.now)
    assert logged(d.tick(3 * PROBE_S + 0.1), "bus.unreachable")  # now silence is an outage
    d.feed(BusSeen(d.now))
    assert logged(d.tick(0.0), "bus.reachable")          # ... and its end a recovery
