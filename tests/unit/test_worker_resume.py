"""The SDK's resume contract without a Run (which opens a socket): the attempt number,
which checkpoint an attempt must resume from (TRAINER_RESUME_CHECKPOINT over the
config's resume_from), that reading it is not taking it, and how worker.runner turns
an ignored checkpoint into exit code 3."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

from core.errors import ValidationError
from worker import runner
from worker import resume
from worker.sdk import RESUME_ENV, Resume, parse_attempt


def test_the_attempt_is_1_unless_told_and_must_be_a_whole_number() -> None:
    assert parse_attempt(None) == parse_attempt("") == parse_attempt(" ") == 1
    assert parse_attempt("2") == 2 and parse_attempt(" 7 ") == 7
    for bad in ("0", "-1", "x", "1.5", "2e3"):
        with pytest.raises(ValueError, match="TRAINER_ATTEMPT must be a whole number"):
            parse_attempt(bad)
    with pytest.raises(ValueError):
        Resume(attempt=0)
    assert Resume.from_env({"TRAINER_ATTEMPT": "4"}, "/x/runs/r1").attempt == 4


def test_without_a_checkpoint_there_is_nothing_to_take_or_ignore() -> None:
    r = Resume(resume_from="")
    assert (r.attempt, r.source, r.checkpoint, r.ignored()) == (1, None, None, None)
    assert r.take() is None and r.ignored() is None


def test_the_env_checkpoint_is_read_without_being_taken(tmp_path: Any) -> None:
    path = tmp_path / "iter-000003.npz"
    path.write_bytes(b"x")
    r = Resume(attempt=2, env_checkpoint=str(path), resume_from="")
    assert r.source == RESUME_ENV and r.checkpoint == str(path)
    assert r.checkpoint == str(path) and not r.taken       # reading twice takes nothing
    assert r.ignored() == (str(path), RESUME_ENV)
    assert r.take() == str(path) and r.taken and r.ignored() is None


def test_the_env_checkpoint_wins_over_resume_from(tmp_path: Any) -> None:
    (tmp_path / "r-old").mkdir()
    (tmp_path / "r-old" / "c.npz").write_bytes(b"x")
    newer = tmp_path / "r-this" / "c.npz"
    newer.parent.mkdir()
    newer.write_bytes(b"x")
    r = Resume(env_checkpoint=str(newer), resume_from="r-old/c.npz", runs_dir=str(tmp_path))
    assert r.take() == str(newer)
    r = Resume(resume_from="r-old/c.npz", runs_dir=str(tmp_path))
    assert r.source == "resume_from"
    assert r.checkpoint == os.path.realpath(tmp_path / "r-old" / "c.npz")
    assert r.ignored() == (r.checkpoint, "resume_from")


def test_a_checkpoint_that_is_not_there_names_its_source(tmp_path: Any) -> None:
    cases = [(Resume(env_checkpoint=str(tmp_path / "gone.npz")), RESUME_ENV, "no checkpoint"),
             (Resume(env_checkpoint="runs/r1/c.npz"), RESUME_ENV, "absolute path"),
             (Resume(resume_from="r1/gone.npz", runs_dir=str(tmp_path)), "resume_from",
              "no checkpoint"),
             (Resume(resume_from="../../etc/passwd", runs_dir=str(tmp_path)), "resume_from",
              "must be an absolute path or")]
    for r, field, why in cases:
        with pytest.raises(ValidationError, match=why) as info:
            r.take()
        assert info.value.field == field and not r.taken
        # never taken, so still ignored: named by the text that gave it
        assert r.ignored() is not None and r.ignored()[1] == field


def test_resume_from_is_read_from_the_config_on_first_use(tmp_path: Any,
                                                          monkeypatch: Any) -> None:
    (tmp_path / "runs" / "r-old").mkdir(parents=True)
    (tmp_path / "runs" / "r-old" / "c.npz").write_bytes(b"x")
    config = tmp_path / "config.json"
    monkeypatch.setattr(sys, "argv", ["w", "--run-id", "r2", "--config", str(config)])
    r = Resume.from_env({"TRAINER_HOME": str(tmp_path)}, str(tmp_path / "runs" / "r2"))
    config.write_text(json.dumps({"resume_from": "r-old/c.npz"}))   # after: read lazily
    assert r.source == "resume_from"
    assert r.checkpoint == os.path.realpath(tmp_path / "runs" / "r-old" / "c.npz")
    # without TRAINER_HOME, resume_from is under the folder that holds the run's
    r = Resume.from_env({}, str(tmp_path / "runs" / "r2"))
    assert r.checkpoint == os.path.realpath(tmp_path / "runs" / "r-old" / "c.npz")


def test_an_unreadable_config_makes_ignored_say_nothing(tmp_path: Any,
                                                        monkeypatch: Any) -> None:
    config = tmp_path / "config.json"
    config.write_text('{"seed": -3}')
    monkeypatch.setattr(sys, "argv", ["w", "--config", str(config)])
    r = Resume.from_env({}, str(tmp_path / "r1"))
    assert r.ignored() is None                  # never raises (finish calls it)
    with pytest.raises(ValidationError, match="seed"):
        r.take()


class _Entry:
    def __init__(self, target: Any) -> None:
        self.target = target

    def load(self) -> Any:
        return self.target


@pytest.mark.parametrize("exit_status,worker_does,code", [
    (0, lambda: 0, 0), (0, lambda: None, 0), (3, lambda: 0, 3), (3, lambda: None, 3),
    (3, lambda: sys.exit(0), 3), (3, lambda: 2, 2), (0, lambda: 5, 5)])
def test_the_runner_exits_3_after_an_ignored_checkpoint(
        monkeypatch: Any, exit_status: int, worker_does: Any, code: int) -> None:
    monkeypatch.setattr(sys, "argv", sys.argv)       # main() sets both: put them back
    monkeypatch.setenv("TRAINER_RUN_ID", "r1")
    monkeypatch.setattr(runner, "find", lambda name, test_workers: _Entry(worker_does))
    monkeypatch.setattr(resume, "_EXIT_STATUS", [exit_status])
    assert runner.main(["w", "--run-id", "r1", "--config", "c.json"]) == code


def test_the_runner_keeps_a_failing_sys_exit_and_a_worker_without_the_sdk(
        monkeypatch: Any) -> None:
    def fails() -> None:
        sys.exit(4)
    monkeypatch.setattr(sys, "argv", sys.argv)
    monkeypatch.setattr(resume, "_EXIT_STATUS", [3])
    monkeypatch.setattr(runner, "find", lambda name, test_workers: _Entry(fails))
    with pytest.raises(SystemExit) as info:
        runner.main(["w"])
    assert info.value.code == 4
    monkeypatch.setattr(runner, "find", lambda name, test_workers: _Entry(lambda: 0))
    monkeypatch.delitem(sys.modules, "worker.sdk")      # it never imported the SDK
    assert runner.main(["w"]) == 0
