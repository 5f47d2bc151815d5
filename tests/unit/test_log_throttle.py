"""runtime/throttle.py: a line at most every interval, the events in between counted and
reported by the next line. Plain values, a fake clock. (The dispatcher's refusals on
it: tests/unit/dispatcher/test_ported_refusal_log.py.)"""

from __future__ import annotations

from core.clock import FakeClock
from runtime.throttle import LogThrottle


def test_the_first_event_logs_the_next_ones_within_the_interval_are_counted() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.admit() == 0                       # the first event: a line
    clock.advance(1.0)
    assert [throttle.admit() for _ in range(3)] == [None, None, None]
    clock.advance(8.9)                                 # 9.9 s after the line: still quiet
    assert throttle.admit() is None
    clock.advance(0.1)                                 # 10 s after it: the next line...
    assert throttle.admit() == 4                       # ... says 4 were not logged
    assert throttle.admit() is None                    # and a new interval starts
    clock.advance(10.0)
    assert throttle.admit() == 1


def test_a_quiet_spell_longer_than_the_interval_logs_at_once_with_nothing_held() -> None:
    clock = FakeClock()
    throttle = LogThrottle(10.0, clock)
    assert throttle.admit() == 0
    clock.advance(60.0)
    assert throttle.admit() == 0


def test_each_key_has_its_own_interval_and_count() -> None:
    clock = FakeClock()
    throttle = LogThrottle(5.0, clock)
    assert throttle.admit(("finish", "internal")) == 0
    assert throttle.admit(("finish", "resource_exhausted")) == 0   # another cause: a line
    assert throttle.admit(("finish", "internal")) is None
    assert throttle.admit(("finish", "internal")) is None
    clock.advance(5.0)
    assert throttle.admit(("finish", "resource_exhausted")) == 0
    assert throttle.admit(("finish", "internal")) == 2
