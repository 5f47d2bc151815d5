"""The dispatcher's pace: how long its loop may sleep and how often its status (the
bus probe) goes out, idle and while it watches runs. Plain values, a fake clock."""

from __future__ import annotations

import pytest

from runtime.status import StatusBeacon
from core.clock import FakeClock
from services.dispatcher.pacing import TELEMETRY_S, Pacer
from services.dispatcher.supervision import BusHealth

IDLE_S, PROBE_S, TICK_S = 2.0, 0.5, 0.05


def pacer(clock: FakeClock) -> Pacer:
    beacon = StatusBeacon("dispatcher", IDLE_S, clock, dict)
    assert beacon.due() is not None  # the first status went out
    return Pacer(beacon, BusHealth(3 * IDLE_S, clock.monotonic()), PROBE_S, IDLE_S, TICK_S)


def test_an_idle_loop_sleeps_until_its_next_status() -> None:
    clock = FakeClock()
    p = pacer(clock)
    assert p.wait_s(5.0, busy=False, until_gpu_read=None) == pytest.approx(IDLE_S)
    clock.advance(1.5)
    assert p.wait_s(5.0, busy=False, until_gpu_read=None) == pytest.approx(0.5)
    assert p.wait_s(0.1, busy=False, until_gpu_read=None) == pytest.approx(0.1)


@pytest.mark.parametrize("until_gpu_read,expected", [(0.7, 0.7), (-1.0, 0.0), (9.0, IDLE_S)])
def test_a_run_waiting_for_gpus_wakes_the_loop_for_the_next_gpu_read(
        until_gpu_read: float, expected: float) -> None:
    p = pacer(FakeClock())
    assert p.wait_s(5.0, busy=False, until_gpu_read=until_gpu_read) == pytest.approx(expected)


def test_a_busy_loop_wakes_every_tick_and_telemetry_interval() -> None:
    p = pacer(FakeClock())
    assert p.wait_s(5.0, busy=True, until_gpu_read=None) == min(TICK_S, TELEMETRY_S)


def test_watching_a_run_probes_the_bus_at_once_and_often_then_slows_down_idle() -> None:
    clock = FakeClock()
    p = pacer(clock)
    clock.advance(0.1)
    assert p.beacon.due() is None
    p.update(watching=True)
    assert p.beacon.due() is not None, "the first probe goes out at once"
    assert p.beacon.interval == PROBE_S and p.bus.window_s == 3 * PROBE_S
    clock.advance(PROBE_S)
    assert p.beacon.due() is not None
    p.update(watching=False)
    assert p.beacon.interval == IDLE_S and p.bus.window_s == 3 * IDLE_S
    clock.advance(PROBE_S)
    assert p.beacon.due() is not None  # (the one already planned)
    clock.advance(IDLE_S - 0.01)
    assert p.beacon.due() is None
    clock.advance(0.01)
    assert p.beacon.due() is not None


def test_probing_again_after_an_idle_spell_is_no_outage_nor_recovery() -> None:
    clock = FakeClock()
    p = pacer(clock)
    p.bus.seen(clock.monotonic())
    assert p.bus.recovered(clock.monotonic())  # the first sight at start-up (logged)
    clock.advance(IDLE_S)                           # idle: statuses every IDLE_S
    p.bus.seen(clock.monotonic())
    p.update(watching=True)                         # the window shrinks to 3 x PROBE_S
    assert not p.bus.recovered(clock.monotonic()) and not p.bus.lost
    p.bus.seen(clock.monotonic() + 0.01)            # our probe came back
    clock.advance(0.01)
    assert not p.bus.recovered(clock.monotonic()), "not a recovery: nothing was lost"
    assert p.bus.healthy(clock.monotonic())
    clock.advance(3 * PROBE_S + 0.1)                # now silence is an outage ...
    assert not p.bus.recovered(clock.monotonic()) and p.bus.lost
    p.bus.seen(clock.monotonic())
    assert p.bus.recovered(clock.monotonic())       # ... and its end a recovery
