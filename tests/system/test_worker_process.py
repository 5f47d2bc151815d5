"""The built-in workers run as the dispatcher runs them (``python -m worker.runner
NAME --run-id ID --config PATH``, TRAINER_* in the environment), without a bus:
SIGTERM mid-training, a bad config, resuming from a stopped run's checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.helpers import REPO, wait_until
from worker import checkpoint

pytestmark = pytest.mark.timeout(60)
GRACE_S = 10.0


def start(run_dir: Any, worker: str, **config: Any) -> subprocess.Popen[bytes]:
    os.makedirs(run_dir, exist_ok=True)
    path = os.path.join(run_dir, "config.json")
    with open(path, "w") as fh:
        json.dump({"worker": worker, **config}, fh)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    env.update(TRAINER_RUN_ID=os.path.basename(run_dir), TRAINER_RUN_DIR=str(run_dir),
               TRAINER_BUS_PUB="", TRAINER_HOME=os.path.dirname(os.path.dirname(run_dir)),
               TRAINER_HEARTBEAT_INTERVAL="0.2", PYTHONUNBUFFERED="1")
    with open(os.path.join(run_dir, "stderr.log"), "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "worker.runner", worker, "--run-id",
                                 os.path.basename(run_dir), "--config", path], env=env,
                                cwd=REPO, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)


def read(run_dir: Any, name: str) -> Any:
    with open(os.path.join(run_dir, name)) as fh:
        return [json.loads(line) for line in fh] if name.endswith(".jsonl") else json.load(fh)


def lines(run_dir: Any, name: str) -> int:
    try:
        with open(os.path.join(run_dir, name)) as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def stop(proc: subprocess.Popen[bytes]) -> int:
    t0 = time.monotonic()
    os.killpg(proc.pid, signal.SIGTERM)     # as the dispatcher does: the whole group
    try:
        code = proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"the worker ignored SIGTERM for {GRACE_S}s")
    assert time.monotonic() - t0 < GRACE_S
    return code


@pytest.mark.parametrize("worker,env", [("cartpole", "CartPole-v1"),
                                        ("qlearning", "FrozenLake-v1")])
def test_sigterm_mid_training_checkpoints_and_exits_0(tmp_path: Any, worker: str,
                                                      env: str) -> None:
    run_dir = tmp_path / "runs" / f"r-{worker}"
    proc = start(run_dir, worker, env=env, seed=1, steps=10**9, checkpoint_every=1000)
    try:
        wait_until(lambda: lines(run_dir, "metrics.jsonl") >= 3 or proc.poll() is not None,
                   30, message="a few iterations of training")
        assert proc.poll() is None, (run_dir / "stderr.log").read_text()
        assert stop(proc) == 0, (run_dir / "stderr.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = read(run_dir, "result.json")
    assert result["status"] == "stopped" and result["metrics"]["iterations"] >= 1
    ckpts = [a for a in read(run_dir, "artifacts.jsonl") if a["kind"] == "checkpoint"]
    assert len(ckpts) == 1 and ckpts[0]["meta"]["reason"] == "stop"
    arrays, meta = checkpoint.load(str(run_dir / ckpts[0]["path"]))
    assert meta["iteration"] == result["metrics"]["iterations"] and arrays


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path: Any) -> None:
    first = tmp_path / "runs" / "r-first"
    proc = start(first, "cartpole", seed=2, steps=10**9)
    try:
        wait_until(lambda: lines(first, "metrics.jsonl") >= 4 or proc.poll() is not None,
                   30, message="some training")
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ckpt = [a for a in read(first, "artifacts.jsonl") if a["kind"] == "checkpoint"][0]
    done_iterations = read(first, "result.json")["metrics"]["iterations"]
    second = tmp_path / "runs" / "r-second"
    proc = start(second, "cartpole", seed=2, steps=1, resume_from=f"r-first/{ckpt['path']}",
                 hyperparameters={"final_eval_episodes": 3})
    assert proc.wait(timeout=30) == 0, (second / "stderr.log").read_text()
    result = read(second, "result.json")
    assert result["status"] == "completed"
    assert result["metrics"]["iterations"] == done_iterations     # budget already spent


def test_a_bad_config_exits_2_naming_the_field(tmp_path: Any) -> None:
    cases = [({"hyperparameters": {"populaton": 10}}, "hyperparameters.populaton"),
             ({"env": "NoSuchEnv-v0"}, "env"),
             ({"resume_from": "r-nope/checkpoints/iter-000001.npz"}, "resume_from"),
             ({"seed": -5}, "seed")]
    procs = [(start(tmp_path / "runs" / f"r{i}", "cartpole", **data), field, tmp_path /
              "runs" / f"r{i}") for i, (data, field) in enumerate(cases)]
    for proc, field, run_dir in procs:
        assert proc.wait(timeout=30) == 2, (run_dir / "stderr.log").read_text()
        assert f"invalid config: {field}: " in (run_dir / "stderr.log").read_text()
        result = read(run_dir, "result.json")
        assert result["status"] == "failed" and f"{field}: " in result["reason"]
