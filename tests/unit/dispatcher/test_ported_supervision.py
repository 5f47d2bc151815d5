"""Supervision as decisions (ported from the supervision part of
tests/unit/test_supervision.py, which called the old ``check`` and ``BusHealth``):
SIGKILL after the grace is sent once; start-up gets a longer grace before the first
heartbeat; the bus's outage and its end are each told once."""

from __future__ import annotations

from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import BusSeen, Heartbeat
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.supervise import Sig
from tests.unit.dispatcher.driver import Driver, logged, of

SLOW_START = {"heartbeat_timeout_s": 5.0, "startup_grace_s": 10.0, "cancel_grace_s": 2.0}


def signals(effects: list) -> list[Sig]:
    return [e.sig for e in of(effects, fx.Signal)]


def seen_and_tick(d: Driver, dt: float) -> list:
    """The bus proven working just now, ``dt`` later."""
    d.feed(BusSeen(d.now + dt))
    return d.tick(dt)


def started(d: Driver) -> None:
    """The bus works (its coming back would give every watched run a fresh window);
    r1 starts."""
    assert logged(seen_and_tick(d, 0.0), "bus.reachable")
    d.start("r1", **SLOW_START)


def test_sigkill_after_the_grace_is_sent_once(d: Driver) -> None:
    started(d)
    d.feed(Heartbeat("r1", 1, d.now + 1.0))
    assert signals(seen_and_tick(d, 5.9)) == []          # not overdue yet
    assert signals(seen_and_tick(d, 0.6)) == [Sig.TERM]  # 6.5: overdue, the bus works
    assert signals(seen_and_tick(d, 1.5)) == []          # within the 2 s grace
    assert signals(seen_and_tick(d, 0.6)) == [Sig.KILL]
    for _ in range(5):
        assert signals(seen_and_tick(d, 3.0)) == []      # SIGKILL is sent once
    assert d.phase("r1") is Phase.KILLING  # its end comes with its folder's next read


def test_start_up_gets_a_longer_grace_before_the_first_heartbeat(d: Driver) -> None:
    started(d)
    assert signals(seen_and_tick(d, 14.0)) == []  # 5 + 10 s allowed before a beat
    assert signals(seen_and_tick(d, 1.5)) == [Sig.TERM]
    (record,) = of(d.log, fx.RecordKill)
    assert record.cause == "heartbeat_timeout"


def test_after_the_first_heartbeat_only_the_heartbeat_timeout_is_allowed(d: Driver) -> None:
    started(d)
    d.feed(Heartbeat("r1", 1, d.now))
    assert signals(seen_and_tick(d, 5.5)) == [Sig.TERM]


def test_the_bus_outage_and_its_end_are_each_told_once(d: Driver) -> None:
    d.feed(BusSeen(d.now + 0.1))
    assert logged(d.tick(0.2), "bus.reachable")            # the first sight
    assert not logged(d.tick(0.1), "bus.reachable")
    lost = d.tick(5.0)                                      # no status back for 1.5 s
    assert logged(lost, "bus.unreachable") and not logged(d.tick(1.0), "bus.unreachable")
    assert not d.state.bus.healthy(d.now)
    d.feed(BusSeen(d.now + 1.0))
    assert logged(d.tick(1.1), "bus.reachable")
    assert not logged(d.tick(0.1), "bus.reachable")
    assert len(logged(d.log, "bus.reachable")) == 2 and len(logged(d.log, "bus.unreachable")) == 1
