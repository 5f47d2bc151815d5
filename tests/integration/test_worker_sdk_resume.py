"""The SDK's resume contract on real Runs (a zmq socket each, no bus): run.attempt,
run.resume_checkpoint (reading is not taking), run.take_checkpoint(), and the exit
record of a run given a checkpoint: ``completed`` without taking it becomes ``failed``
with cause checkpoint_ignored and the process's exit status 3; a stop or a failure is
recorded as it is."""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any, Iterator

import pytest

from worker import sdk
from worker.gpu import GpuProbe
from worker import resume
from worker.sdk import CHECKPOINT_IGNORED, EXIT_CHECKPOINT_IGNORED, Resume, Run

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process-wide exit status, SIGTERM handler and argv, given back after."""
    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(resume, "_EXIT_STATUS", [0])
    monkeypatch.setattr(sys, "argv", ["worker"])   # no --config: resume_from is ""
    yield
    signal.signal(signal.SIGTERM, before)
    sdk._EARLY_STOP.clear()


def make(run_dir: Any, resume: Resume) -> Run:
    return Run("r-resume", str(run_dir), "", 60.0, gpu=GpuProbe(""), resume=resume)


def given(tmp_path: Any, attempt: int = 2) -> tuple[str, Resume]:
    path = tmp_path / "ckpt" / "iter-000004.npz"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"x")
    return str(path), Resume(attempt=attempt, env_checkpoint=str(path), resume_from="")


def result(run_dir: Any) -> dict[str, Any]:
    with open(os.path.join(run_dir, sdk.RESULT_FILE), encoding="utf-8") as fh:
        return json.load(fh)


def test_completed_without_taking_the_checkpoint_is_a_failure(
        tmp_path: Any, isolated: None, capsys: Any) -> None:
    path, resume = given(tmp_path)
    run = make(tmp_path, resume)
    assert run.attempt == 2 and run.resume_checkpoint == path   # read, not taken
    run.finish("completed", reason="done early", metrics={"steps": 10})
    record = result(tmp_path)
    assert record["status"] == "failed" and record["cause"] == CHECKPOINT_IGNORED
    assert path in record["reason"] and "TRAINER_RESUME_CHECKPOINT" in record["reason"]
    assert record["reason"].endswith("; the worker said: done early")
    assert record["metrics"] == {"steps": 10} and record["attempt"] == 2
    assert sdk.exit_status() == EXIT_CHECKPOINT_IGNORED == 3
    assert path in capsys.readouterr().err


def test_the_with_block_s_clean_exit_is_held_to_it_too(tmp_path: Any, isolated: None) -> None:
    _, resume = given(tmp_path)
    with make(tmp_path, resume):
        pass
    assert result(tmp_path)["cause"] == CHECKPOINT_IGNORED
    assert sdk.exit_status() == 3


def test_a_taken_checkpoint_completes(tmp_path: Any, isolated: None) -> None:
    path, resume = given(tmp_path, attempt=3)
    with make(tmp_path, resume) as run:
        assert run.take_checkpoint() == path
        assert run.resume_checkpoint == path and run.resume_source == "TRAINER_RESUME_CHECKPOINT"
    record = result(tmp_path)
    assert record["status"] == "completed" and "cause" not in record
    assert record["attempt"] == 3 and sdk.exit_status() == 0


@pytest.mark.parametrize("how", ["finish", "sigterm", "exception"])
def test_a_stop_or_a_failure_before_taking_it_ignores_nothing(
        tmp_path: Any, isolated: None, how: str) -> None:
    _, resume = given(tmp_path)
    if how == "finish":
        make(tmp_path, resume).finish("stopped", reason="asked")
        expected = "stopped"
    elif how == "sigterm":       # a stop before the checkpoint was loaded
        with make(tmp_path, resume) as run:
            os.kill(os.getpid(), signal.SIGTERM)
            assert run.stop_requested
        expected = "stopped"
    else:
        with pytest.raises(RuntimeError):
            with make(tmp_path, resume):
                raise RuntimeError("no GPU")
        expected = "failed"
    record = result(tmp_path)
    assert record["status"] == expected and "cause" not in record
    assert sdk.exit_status() == 0


def test_from_env_reads_the_attempt_and_the_checkpoint(tmp_path: Any, isolated: None) -> None:
    path, _ = given(tmp_path)
    run = Run.from_env({"TRAINER_RUN_ID": "r-env", "TRAINER_RUN_DIR": str(tmp_path),
                        "TRAINER_ATTEMPT": "5", "TRAINER_RESUME_CHECKPOINT": path,
                        "CUDA_VISIBLE_DEVICES": ""})
    assert (run.attempt, run.resume_checkpoint) == (5, path)
    assert run.take_checkpoint() == path
    run.finish("completed")
    assert result(tmp_path)["status"] == "completed"
    with pytest.raises(ValueError, match="TRAINER_ATTEMPT"):
        Run.from_env({"TRAINER_RUN_DIR": str(tmp_path), "TRAINER_ATTEMPT": "second"})


def test_without_a_checkpoint_nothing_changes(tmp_path: Any, isolated: None) -> None:
    run = Run.from_env({"TRAINER_RUN_ID": "r-plain", "TRAINER_RUN_DIR": str(tmp_path),
                        "CUDA_VISIBLE_DEVICES": ""})     # and no --config: no resume_from
    assert (run.attempt, run.resume_checkpoint, run.resume_source) == (1, None, None)
    run.finish("completed", metrics={"return": 1.0})
    record = result(tmp_path)
    assert record["status"] == "completed" and "cause" not in record
    assert record["attempt"] == 1 and sdk.exit_status() == 0
