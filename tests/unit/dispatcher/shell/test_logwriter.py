"""effectrunner.LogWriter: a Log effect is one structured line, its None fields
dropped; a registry refusal that is retried (every pass, say) is logged at most once
every REFUSED_LOG_S per (method, code), the line saying how many were not logged."""

from __future__ import annotations

from typing import Any

from core.clock import FakeClock
from services.dispatcher.decide import effects as fx
from services.dispatcher.shell.effectrunner import REFUSED_LOG_S, LogWriter
from tests.unit.dispatcher.shell.conftest import RecordingLogger


def _refused(method: str = "claim_gpus", code: str = "failed_precondition",
             retried: Any = True, **more: Any) -> fx.Log:
    return fx.Log("warning", "registry.refused",
                  {"method": method, "code": code, "retried": retried, "reason": "no", **more})


def test_a_log_effect_is_written_at_its_level_with_its_fields(
        writer: LogWriter, logger: RecordingLogger) -> None:
    for level in ("info", "warning", "error"):
        writer.write(fx.Log(level, f"some.{level}", {"run_id": "r1", "n": 2}))
    assert logger.lines == [(level, f"some.{level}", {"run_id": "r1", "n": 2})
                            for level in ("info", "warning", "error")]


def test_none_fields_are_dropped(writer: LogWriter, logger: RecordingLogger) -> None:
    writer.write(fx.Log("info", "run.started", {"run_id": "r1", "pid": None, "host": ""}))
    assert logger.lines == [("info", "run.started", {"run_id": "r1", "host": ""})]


def test_a_retried_refusal_is_logged_once_per_interval_and_counts_the_rest(
        writer: LogWriter, logger: RecordingLogger, clock: FakeClock) -> None:
    writer.write(_refused())
    clock.advance(1.0)
    writer.write(_refused())
    clock.advance(REFUSED_LOG_S - 1.5)     # still inside the interval
    writer.write(_refused())
    assert logger.events("registry.refused") == [
        {"method": "claim_gpus", "code": "failed_precondition", "reason": "no",
         "not_logged_since": 0}]
    clock.advance(0.5)                     # REFUSED_LOG_S since the line
    writer.write(_refused())
    assert [f["not_logged_since"] for f in logger.events("registry.refused")] == [0, 2]
    clock.advance(REFUSED_LOG_S)
    writer.write(_refused())
    assert [f["not_logged_since"] for f in logger.events("registry.refused")] == [0, 2, 0]
    assert all("retried" not in f for f in logger.events("registry.refused"))


def test_each_method_and_code_has_its_own_interval(
        writer: LogWriter, logger: RecordingLogger, clock: FakeClock) -> None:
    writer.write(_refused("claim_gpus", "failed_precondition"))
    writer.write(_refused("claim_gpus", "resource_busy"))
    writer.write(_refused("finish_run", "failed_precondition"))
    writer.write(_refused("claim_gpus", "failed_precondition"))   # held
    assert [(f["method"], f["code"]) for f in logger.events("registry.refused")] == [
        ("claim_gpus", "failed_precondition"), ("claim_gpus", "resource_busy"),
        ("finish_run", "failed_precondition")]


def test_a_refusal_not_retried_is_always_logged_and_not_counted(
        writer: LogWriter, logger: RecordingLogger, clock: FakeClock) -> None:
    writer.write(_refused())                               # starts the interval
    for retried in (False, None):
        writer.write(_refused(retried=retried))
        writer.write(_refused(retried=retried))
    writer.write(fx.Log("warning", "registry.refused", {"method": "claim_gpus",
                                                        "code": "failed_precondition"}))
    lines = logger.events("registry.refused")
    assert len(lines) == 6
    assert all("retried" not in f and "not_logged_since" not in f for f in lines[1:])
    clock.advance(REFUSED_LOG_S)
    writer.write(_refused())
    assert logger.events("registry.refused")[-1]["not_logged_since"] == 0


def test_retried_on_another_event_is_no_throttle_and_not_written(
        writer: LogWriter, logger: RecordingLogger) -> None:
    for _ in range(3):
        writer.write(fx.Log("warning", "run.retry", {"run_id": "r1", "retried": True}))
    assert logger.lines == [("warning", "run.retry", {"run_id": "r1"})] * 3
