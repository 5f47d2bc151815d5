"""runtime/throttle.py: a line at most every interval, the events in between counted and
reported by the next line. Plain values, a fake clock."""

from __future__ import annotations

import logging

import pytest

from core.clock import FakeClock
from core.errors import Internal, StorageFull, ValidationError
from runtime.logs import ServiceLogger
from runtime.throttle import LogThrottle
from services.dispatcher.refusals import RefusalLog


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


def test_the_dispatcher_logs_a_retried_refusal_with_the_count_of_those_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    """services/dispatcher/refusals.py on the throttle: per method and code, the line
    and its fields as before (``not_logged_since``); a refusal that is not retried
    (bad input) is logged every time."""
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    refusals = RefusalLog(ServiceLogger("dispatcher-test"), clock)
    full = StorageFull("the registry's disk is full")
    for _ in range(4):
        refusals("finish", {"run_id": "r1"}, full)
    refusals("finish", {"run_id": "r1"}, Internal("the batch failed"))   # another code
    refusals("submit", {}, ValidationError("config.seed", "must be an integer"))
    refusals("submit", {}, ValidationError("config.seed", "must be an integer"))
    clock.advance(10.0)
    refusals("finish", {"run_id": "r1"}, full)
    lines = [(r.getMessage(), r.fields.get("code"), r.fields.get("not_logged_since"))
             for r in caplog.records]
    assert lines == [("registry.refused", "resource_exhausted", 0),
                     ("registry.refused", "internal", 0),
                     ("registry.refused", "invalid_argument", None),
                     ("registry.refused", "invalid_argument", None),
                     ("registry.refused", "resource_exhausted", 3)]
    assert all(r.fields["method"] in ("finish", "submit") for r in caplog.records)
