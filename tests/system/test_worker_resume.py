"""Attempts and resuming, with real worker processes started as the dispatcher starts
them (``python -m worker.runner NAME --run-id ID --config PATH``, TRAINER_* in the
environment, no bus): a built-in worker SIGKILLed mid-training and started again as
attempt 2 from its latest checkpoint (TRAINER_RESUME_CHECKPOINT) ends exactly as the
uninterrupted run; a worker that ignores the checkpoint it is given exits 3 with cause
``checkpoint_ignored``; without a checkpoint nothing changes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from tests.helpers import REPO, wait_until
from worker import checkpoint
from worker.sdk import CHECKPOINT_IGNORED, EXIT_CHECKPOINT_IGNORED

pytestmark = pytest.mark.timeout(60)
TIMING = ("wall_s", "steps_per_s")   # this process's, not the run's


def start(run_dir: Any, worker: str, environ: dict[str, str] | None = None,
          **config: Any) -> subprocess.Popen[bytes]:
    """The worker in ``run_dir`` (under <home>/runs/), with ``environ`` added."""
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.json")
    with open(path, "w") as fh:
        json.dump({"worker": worker, **config}, fh)
    full = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    full.update(TRAINER_RUN_ID=os.path.basename(run_dir), TRAINER_RUN_DIR=str(run_dir),
                TRAINER_BUS_PUB="", TRAINER_HOME=os.path.dirname(os.path.dirname(run_dir)),
                TRAINER_HEARTBEAT_INTERVAL="0.2", TRAINER_TEST_WORKERS="1",
                PYTHONUNBUFFERED="1", **(environ or {}))
    with open(os.path.join(run_dir, "stderr.log"), "ab") as err:
        return subprocess.Popen([sys.executable, "-m", "worker.runner", worker, "--run-id",
                                 os.path.basename(run_dir), "--config", path], env=full,
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def read(run_dir: Any, name: str) -> Any:
    with open(os.path.join(run_dir, name)) as fh:
        return [json.loads(line) for line in fh] if name.endswith(".jsonl") else json.load(fh)


def checkpoints(run_dir: Any) -> list[dict[str, Any]]:
    try:
        return [a for a in read(run_dir, "artifacts.jsonl") if a["kind"] == "checkpoint"]
    except FileNotFoundError:
        return []


def finish(proc: subprocess.Popen[bytes], run_dir: Any, timeout: float = 40) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError(f"the worker ran past {timeout}s: "
                             f"{(run_dir / 'stderr.log').read_text()}")


def stream(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """metrics.jsonl without the wall clock."""
    return [(r["step"], r["values"]) for r in records]


CASES = {
    "cartpole": dict(env="CartPole-v1", seed=4, steps=30_000, checkpoint_every=1,
                     hyperparameters={"population": 16, "eval_episodes": 5,
                                      "final_eval_episodes": 10}),
    "qlearning": dict(env="FrozenLake-v1", seed=4, steps=20_000, checkpoint_every=1,
                      hyperparameters={"episodes_per_iteration": 50, "eval_every": 2,
                                       "eval_episodes": 50, "final_eval_episodes": 200}),
}


@pytest.mark.parametrize("worker", sorted(CASES))
def test_a_killed_run_resumed_as_attempt_2_ends_as_the_uninterrupted_one(
        tmp_path: Any, worker: str) -> None:
    conf = CASES[worker]
    whole_dir, run_dir = tmp_path / "runs" / "r-whole", tmp_path / "runs" / "r-retried"
    whole = start(whole_dir, worker, **conf)             # the uninterrupted run, alongside
    first = start(run_dir, worker, {"TRAINER_ATTEMPT": "1"}, **conf)
    try:
        wait_until(lambda: checkpoints(run_dir) or first.poll() is not None, 30,
                   message="the first periodic checkpoint")
        os.killpg(first.pid, signal.SIGKILL)             # mid-training: no stop, no result
        assert first.wait(timeout=10) == -signal.SIGKILL, \
            "the first attempt ended before it could be killed: give it a larger budget"
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.wait()
    assert not (run_dir / "result.json").exists()
    latest = checkpoints(run_dir)[-1]                    # what the dispatcher hands on
    _, meta = checkpoint.load(str(run_dir / latest["path"]))
    assert meta["reason"] == "periodic" and meta["attempt"] == 1
    resumed_at = meta["iteration"]
    assert finish(whole, whole_dir) == 0, (whole_dir / "stderr.log").read_text()
    assert 1 <= resumed_at < read(whole_dir, "result.json")["metrics"]["iterations"]
    killed_lines = len(read(run_dir, "metrics.jsonl"))

    second = start(run_dir, worker, {"TRAINER_ATTEMPT": "2", "TRAINER_RESUME_CHECKPOINT":
                                     str(run_dir / latest["path"])}, **conf)
    assert finish(second, run_dir) == 0, (run_dir / "stderr.log").read_text()

    result, expected = read(run_dir, "result.json"), read(whole_dir, "result.json")
    assert result["status"] == "completed" and result["attempt"] == 2
    assert "cause" not in result
    same = {k: v for k, v in expected["metrics"].items() if k not in TIMING}
    assert {k: v for k, v in result["metrics"].items() if k not in TIMING} == same
    assert result["metrics"]["steps"] > meta["step"]     # it trained on, from the file
    # Its metrics continue the uninterrupted run's exactly: from the evaluation due
    # after the checkpointed iteration (or the next iteration) to the final evaluation.
    whole_metrics = stream(read(whole_dir, "metrics.jsonl"))
    at = next(i for i, (_, v) in enumerate(whole_metrics)
              if v.get("iteration") == resumed_at and "evaluation" not in v)
    assert stream(read(run_dir, "metrics.jsonl")[killed_lines:]) == whole_metrics[at + 1:]
    arrays, final_meta = checkpoint.load(str(run_dir / checkpoints(run_dir)[-1]["path"]))
    whole_arrays, whole_meta = checkpoint.load(
        str(whole_dir / checkpoints(whole_dir)[-1]["path"]))
    assert final_meta["attempt"] == 2 and final_meta["iteration"] == whole_meta["iteration"]
    assert final_meta["rng"] == whole_meta["rng"] and arrays.keys() == whole_arrays.keys()
    assert all(np.array_equal(arrays[k], whole_arrays[k]) for k in arrays)


def a_checkpoint(home: Any) -> str:
    """A real checkpoint file in another run's folder under ``home``/runs."""
    path = os.path.join(home, "runs", "r-earlier", "checkpoints", "iter-000001.npz")
    checkpoint.save(path, {"q": np.zeros((16, 4))},
                    {"algorithm": "q-table", "iteration": 1, "step": 10, "episode": 1})
    return path


@pytest.mark.parametrize("given", ["env", "resume_from"])
def test_a_worker_that_ignores_its_checkpoint_exits_3(tmp_path: Any, given: str) -> None:
    path = a_checkpoint(tmp_path)
    run_dir = tmp_path / "runs" / "r-ignores"
    if given == "env":
        proc = start(run_dir, "test-ignore-checkpoint",
                     {"TRAINER_ATTEMPT": "2", "TRAINER_RESUME_CHECKPOINT": path})
    else:
        proc = start(run_dir, "test-ignore-checkpoint",
                     resume_from="r-earlier/checkpoints/iter-000001.npz")
    assert finish(proc, run_dir) == EXIT_CHECKPOINT_IGNORED == 3, \
        (run_dir / "stderr.log").read_text()
    result = read(run_dir, "result.json")
    assert result["status"] == "failed" and result["cause"] == CHECKPOINT_IGNORED
    assert path in result["reason"] and "take_checkpoint" in result["reason"]
    source = "TRAINER_RESUME_CHECKPOINT" if given == "env" else "resume_from"
    assert f"({source})" in result["reason"]
    assert result["metrics"] == {"steps": 1}             # what it reported is kept
    assert path in (run_dir / "stderr.log").read_text()  # where the dispatcher looks
    seen = read(run_dir, "seen.json")                     # it read the path: not a take
    assert seen["attempt"] == (2 if given == "env" else 1) and seen["resume"] == path


@pytest.mark.parametrize("worker", ["test-ignore-checkpoint", "test-sleep"])
def test_without_a_checkpoint_nothing_changes(tmp_path: Any, worker: str) -> None:
    run_dir = tmp_path / "runs" / "r-plain"
    proc = start(run_dir, worker, hyperparameters={"seconds": 0.05})
    assert finish(proc, run_dir) == 0, (run_dir / "stderr.log").read_text()
    result = read(run_dir, "result.json")
    assert result["status"] == "completed" and "cause" not in result
    assert result["attempt"] == 1 and result["reason"] == ""
    assert {k: read(run_dir, "seen.json")[k] for k in ("attempt", "resume")} == \
        {"attempt": 1, "resume": None}


def test_a_worker_that_takes_its_checkpoint_completes(tmp_path: Any) -> None:
    """test-sleep, stateless, takes what it is given: a retry of it completes."""
    path = a_checkpoint(tmp_path)
    run_dir = tmp_path / "runs" / "r-takes"
    proc = start(run_dir, "test-sleep", {"TRAINER_ATTEMPT": "3",
                                         "TRAINER_RESUME_CHECKPOINT": path},
                 hyperparameters={"seconds": 0.05})
    assert finish(proc, run_dir) == 0, (run_dir / "stderr.log").read_text()
    result = read(run_dir, "result.json")
    assert result["status"] == "completed" and result["attempt"] == 3
    assert read(run_dir, "seen.json")["resume"] == path


def test_a_built_in_worker_refuses_a_checkpoint_it_cannot_resume(tmp_path: Any) -> None:
    """A missing file, and one another algorithm wrote: exit 2, TRAINER_RESUME_CHECKPOINT
    named, as a bad resume_from is."""
    path = a_checkpoint(tmp_path)                         # a q-table, not a CEM policy
    cases = [(os.path.join(str(tmp_path), "runs", "r-gone", "iter-000009.npz"),
              "no checkpoint file at"), (path, "holds a 'q-table' state")]
    procs = [(start(tmp_path / "runs" / f"r{i}", "cartpole", {
        "TRAINER_ATTEMPT": "2", "TRAINER_RESUME_CHECKPOINT": ckpt}, seed=1, steps=100),
        why, tmp_path / "runs" / f"r{i}") for i, (ckpt, why) in enumerate(cases)]
    for proc, why, run_dir in procs:
        assert finish(proc, run_dir) == 2, (run_dir / "stderr.log").read_text()
        err = (run_dir / "stderr.log").read_text()
        assert "cannot resume: TRAINER_RESUME_CHECKPOINT: " in err and why in err, err
        result = read(run_dir, "result.json")
        assert result["status"] == "failed" and "cause" not in result
        assert why in result["reason"]
