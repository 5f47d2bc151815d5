"""A run's recorded result (ported from the dispatcher part of
tests/unit/test_run_result.py): the shell reads result.json's metrics, and a missing,
malformed or huge one never keeps the run from ending; the decision core builds the
bounded result (the last heartbeat's step, the step budget, result.json's numeric
metrics) and logs why result.json gave nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import pytest

from core.commands import FinishRun
from core.rundir import RESULT_FILE
from services.dispatcher.decide.inputs import ExitRecord, Heartbeat, ShimEnded
from services.dispatcher.shell.folders import MAX_RESULT_BYTES, read_result
from tests.unit.dispatcher.driver import Driver, commands, folder, logged

GOOD = json.dumps({"status": "completed",
                   "metrics": {"steps": 40_835, "eval_return_mean": 500.0,
                               "final_evaluation": True}})


@pytest.mark.parametrize("text, problem", [
    (None, "the worker wrote no result.json"),
    ("{not json", "result.json cannot be read: "),
    (json.dumps([1]), "result.json has no metrics map"),
    (json.dumps({"metrics": [1]}), "result.json has no metrics map"),
    ("x" * (MAX_RESULT_BYTES + 1), f"bytes (more than {MAX_RESULT_BYTES})"),
    (b"\xff\xfe{}", "result.json cannot be read: "),
])
def test_a_missing_or_bad_result_json_gives_no_metrics_and_says_why(
        tmp_path: Path, text: Any, problem: str) -> None:
    if isinstance(text, bytes):
        (tmp_path / RESULT_FILE).write_bytes(text)
    elif text is not None:
        (tmp_path / RESULT_FILE).write_text(text)
    metrics, why, _ = read_result(str(tmp_path))
    assert metrics == {} and problem in why


def test_result_json_metrics_are_read(tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).write_text(GOOD)
    assert read_result(str(tmp_path)) == (
        {"steps": 40_835, "eval_return_mean": 500.0, "final_evaluation": True}, "", ("", ""))


def end_with_result_of(run_dir: Path) -> tuple[Any, list]:
    """A run of 30,000 steps last heard at step 28,000 exits 0 with ``run_dir``'s
    result.json: its FinishRun and the effects of its end."""
    d = Driver()
    d.boot()
    d.start("r1", steps=30_000)
    d.feed(Heartbeat("r1", 28_000, d.now))
    metrics, problem, _ = read_result(str(run_dir))
    d.feed(ShimEnded("r1", 0))
    effects = d.feed(folder("r1", exit=ExitRecord(0, None), metrics=metrics,
                            result_problem=problem))
    (finish,) = commands(effects, FinishRun)
    return finish, effects


@pytest.mark.parametrize("text", [None, "{not json", json.dumps([1]),
                                  "x" * (MAX_RESULT_BYTES + 1)])
def test_a_run_without_a_usable_result_json_ends_with_what_was_heard_and_it_is_logged(
        tmp_path: Path, text: Optional[str]) -> None:
    if text is not None:
        (tmp_path / RESULT_FILE).write_text(text)
    finish, effects = end_with_result_of(tmp_path)
    assert finish.outcome == "completed"
    assert finish.result == {"steps": 28_000, "total_steps": 30_000}
    (line,) = logged(effects, "run.result_missing")
    assert line.get("run_id") == "r1" and line.get("reason") == read_result(str(tmp_path))[1]


def test_a_run_ends_with_result_json_metrics_the_larger_steps_and_no_flag(
        tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).write_text(GOOD)
    finish, effects = end_with_result_of(tmp_path)
    assert finish.result == {"steps": 40_835, "total_steps": 30_000,
                             "eval_return_mean": 500.0}  # (a flag is no number)
    assert not logged(effects, "run.result_missing")


def test_an_ignored_checkpoint_recorded_by_the_sdk_is_its_own_cause(tmp_path: Path) -> None:
    (tmp_path / RESULT_FILE).write_text(json.dumps({
        "status": "failed", "cause": "checkpoint_ignored", "attempt": 2,
        "reason": "given /runs/r1/checkpoints/iter-000002.npz, never took it",
        "metrics": {"steps": 10}}))
    metrics, problem, failure = read_result(str(tmp_path))
    assert failure == ("checkpoint_ignored",
                       "given /runs/r1/checkpoints/iter-000002.npz, never took it")
    d = Driver()
    d.boot()
    d.start("r1")
    d.feed(ShimEnded("r1", 3 << 8))
    effects = d.feed(folder("r1", exit=ExitRecord(3, None), metrics=metrics,
                            result_problem=problem, result_cause=failure[0],
                            result_reason=failure[1]))
    (finish,) = commands(effects, FinishRun)
    assert (finish.cause, finish.exit_code) == ("checkpoint_ignored", 3)
    assert "never took it" in finish.message
    assert finish.attempt == 1


def test_exit_code_3_without_the_sdk_cause_is_a_plain_exit_code(tmp_path: Path) -> None:
    d = Driver()
    d.boot()
    d.start("r1")
    d.feed(ShimEnded("r1", 3 << 8))
    effects = d.feed(folder("r1", exit=ExitRecord(3, None)))
    (finish,) = commands(effects, FinishRun)
    assert (finish.cause, finish.exit_code) == ("exit_code", 3)
