"""The dispatcher's pace (services/dispatcher/shell/pacing.py): how long the loop may
wait for the next thing to hear, how often its status (the probe of the bus) goes out
idle and while it watches runs, and that probing again after an idle spell is neither
an outage nor a recovery. The Pacer is judged on the decision core's state (driven by
the Driver) and a status beacon on a fake clock: nothing is polled."""

from __future__ import annotations

import dataclasses

import pytest

from core.clock import FakeClock
from runtime.status import StatusBeacon
from services.dispatcher.decide.gpus import GpuSource, Inventory
from services.dispatcher.decide.inputs import BusRearmed, BusSeen, GpusRead
from services.dispatcher.decide.phases import Phase
from services.dispatcher.shell.pacing import PROBE_S, TELEMETRY_S, Pacer, poll_ms
from tests.unit.dispatcher.driver import Driver, folder, logged

IDLE_S, TICK_S = 2.0, 0.05


def pacer_on(clock: FakeClock) -> Pacer:
    """A pacer whose beacon runs on ``clock``, its first status sent."""
    pacer = Pacer(StatusBeacon("dispatcher", IDLE_S, clock, dict), IDLE_S, TICK_S)
    assert pacer.beacon.due() is not None  # the first status went out
    return pacer


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
    clock = FakeClock()
    pacer = pacer_on(clock)
    assert pacer.wait_s(d.state, clock.monotonic(), 5.0) == IDLE_S
    clock.advance(1.5)
    assert pacer.wait_s(d.state, clock.monotonic(), 5.0) == pytest.approx(0.5)
    assert pacer.wait_s(d.state, clock.monotonic(), 0.1) == 0.1


@pytest.mark.parametrize("until_gpu_read, expected", [(0.7, 0.7), (-1.0, 0.0), (9.0, IDLE_S)])
def test_a_run_waiting_for_gpus_wakes_the_loop_for_the_next_gpu_read(
        until_gpu_read: float, expected: float) -> None:
    clock = FakeClock()
    pacer = pacer_on(clock)
    state = waiting_gpu_run().state
    state = dataclasses.replace(state, next_full=clock.monotonic() + until_gpu_read)
    assert pacer.wait_s(state, clock.monotonic(), 5.0) == pytest.approx(expected)


def test_a_busy_loop_wakes_every_tick_and_telemetry_interval(d: Driver) -> None:
    d.start("r1")
    clock = FakeClock()
    pacer = pacer_on(clock)
    assert pacer.wait_s(d.state, clock.monotonic(), 5.0) == min(TICK_S, TELEMETRY_S)
    due = dataclasses.replace(d.state.with_run("r1", None), dirty=True)  # a pass due
    assert pacer.wait_s(due, clock.monotonic(), 5.0) == min(TICK_S, TELEMETRY_S)


def test_a_wait_never_wakes_the_poll_early() -> None:
    assert poll_ms(0.0) == 0 and poll_ms(0.02) == 21 and poll_ms(2.0) == 2001


def test_watching_a_run_probes_the_bus_at_once_and_often_then_slows_down_idle(
        d: Driver) -> None:
    d.start("r1")
    clock = FakeClock()
    pacer = pacer_on(clock)
    clock.advance(0.1)
    assert pacer.beacon.due() is None
    d.feed(pacer.update(d.state))
    assert pacer.beacon.due() is not None, "the first probe goes out at once"
    assert pacer.beacon.interval == PROBE_S and d.state.bus.window_s == 3 * PROBE_S
    assert pacer.update(d.state) is None, "told once per change"
    clock.advance(PROBE_S)
    assert pacer.beacon.due() is not None
    d.feed(BusSeen(d.now))
    d.state = d.state.with_run("r1", None)  # no run left to watch
    d.feed(pacer.update(d.state))
    assert pacer.beacon.interval == IDLE_S and d.state.bus.window_s == 3 * IDLE_S
    assert d.state.bus.last_seen == d.now, "going idle keeps what was last seen"
    clock.advance(PROBE_S)
    assert pacer.beacon.due() is not None  # (the one already planned)
    clock.advance(IDLE_S - 0.01)
    assert pacer.beacon.due() is None
    clock.advance(0.01)
    assert pacer.beacon.due() is not None


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


def test_runs_that_only_wait_in_slurm_s_queue_wake_the_loop_for_statuses_and_full_sweeps(
        d: Driver) -> None:
    d.settle(d.submit("r1", launcher="slurm"))
    clock = FakeClock()
    pacer = pacer_on(clock)
    assert pacer.wait_s(d.state, clock.monotonic(), 5.0) == min(TICK_S, TELEMETRY_S)
    d.feed(folder("r1", shim_alive=True, waiting="SLURM: Resources"))   # backlogged
    state = dataclasses.replace(d.state, next_full=clock.monotonic() + 0.7)
    assert pacer.wait_s(state, clock.monotonic(), 5.0) == pytest.approx(0.7)  # its sweep
    state = dataclasses.replace(d.state, next_full=clock.monotonic() + 9.0)
    assert pacer.wait_s(state, clock.monotonic(), 5.0) == IDLE_S   # our next status
    d.feed(pacer.update(d.state))
    assert pacer.beacon.interval == PROBE_S, "watched: the bus is still probed often"
    d.feed(folder("r1", shim_alive=True))   # its job started
    assert pacer.wait_s(d.state, clock.monotonic(), 5.0) == min(TICK_S, TELEMETRY_S)
