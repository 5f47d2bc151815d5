"""The shell's log of registry refusals (ported from the dispatcher part of
tests/unit/test_log_throttle.py, which drove the old RefusalLog): a refusal the
decision core marks as retried (not applied: a failed batch, a full disk) is logged at
most every REFUSED_LOG_S per method and code, with the count of those not logged; one
refused for good is logged every time. Plain values, a fake clock."""

from __future__ import annotations

import logging

import pytest

from core.clock import FakeClock
from runtime.logs import ServiceLogger
from services.dispatcher.decide import effects as fx
from services.dispatcher.shell.effectrunner import REFUSED_LOG_S, LogWriter


def refused(method: str, code: str, retried: bool, run_id: str | None = "r1") -> fx.Log:
    """A registry.refused line as the decision core asks for it (replies.on_reply)."""
    return fx.Log("warning", "registry.refused", {"method": method, "run_id": run_id,
                                                  "code": code, "reason": "why",
                                                  "retried": retried})


def test_a_retried_refusal_is_logged_with_the_count_of_those_not_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    clock = FakeClock()
    writer = LogWriter(ServiceLogger("dispatcher-test"), clock)
    for _ in range(4):
        writer.write(refused("finish", "resource_exhausted", True))
    writer.write(refused("finish", "internal", True))                # another code
    writer.write(refused("submit", "invalid_argument", False, None))  # not retried
    writer.write(refused("submit", "invalid_argument", False, None))
    clock.advance(REFUSED_LOG_S)
    writer.write(refused("finish", "resource_exhausted", True))
    lines = [(r.getMessage(), r.fields.get("code"), r.fields.get("not_logged_since"))
             for r in caplog.records]
    assert lines == [("registry.refused", "resource_exhausted", 0),
                     ("registry.refused", "internal", 0),
                     ("registry.refused", "invalid_argument", None),
                     ("registry.refused", "invalid_argument", None),
                     ("registry.refused", "resource_exhausted", 3)]
    assert all(r.fields["method"] in ("finish", "submit") for r in caplog.records)
    assert all("retried" not in r.fields for r in caplog.records)
    assert [r.fields.get("run_id") for r in caplog.records] == ["r1", "r1", None, None, "r1"]
    assert "run_id" not in caplog.records[2].fields  # None fields are left out


def test_other_lines_are_written_as_asked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    writer = LogWriter(ServiceLogger("dispatcher-test"), FakeClock())
    for _ in range(3):
        writer.write(fx.Log("error", "run.processes_left", {"run_id": "r1", "pgid": 7}))
    assert [(r.levelno, r.getMessage(), r.fields) for r in caplog.records] == \
        [(logging.ERROR, "run.processes_left", {"run_id": "r1", "pgid": 7})] * 3
