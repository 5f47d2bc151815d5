"""The cartpole worker under the real dispatcher: a submitted run trains, records a
video, checkpoints and completes; a cancelled one checkpoints and leaves in its
grace with exit code 0."""

from __future__ import annotations

import json
import os

import pytest

from bus.codec import MessageType
from tests.system.stack import Stack
from tests.helpers import wait_until
from tests.system.dispatch_helpers import (TERMINAL, assert_nothing_left, run_dir,
                                                submit, wait_status)

pytestmark = pytest.mark.timeout(90)


def _result(stack: Stack, run_id: str) -> dict:
    with open(os.path.join(run_dir(stack, run_id), "result.json")) as fh:
        return json.load(fh)


def test_a_cartpole_run_completes_with_video_and_checkpoint(dstack: Stack) -> None:
    hb = dstack.subscriber("hb.", "metric.")
    run_id = submit(dstack, "cartpole", seed=1, steps=20_000, video_every=3,
                    checkpoint_every=2, params={"final_eval_episodes": 10})
    beat = wait_until(lambda: (m := hb.recv(200)) is not None and
                      m.envelope.type == MessageType.HEARTBEAT.value and
                      m.envelope.payload["run_id"] == run_id and m, 30,
                      message="a heartbeat from the worker")
    assert {"step", "episode", "last_return", "mean_return", "gpu_mem_bytes"} <= set(
        beat.envelope.payload)
    run = wait_status(dstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "COMPLETED" and run["exit_code"] == 0, run
    result = _result(dstack, run_id)
    assert result["status"] == "completed"
    assert result["metrics"]["eval_return_mean"] >= 400 > result["metrics"][
        "first_eval_return_mean"]
    arts = dstack.client().call("list_artifacts", {"run_id": run_id})["artifacts"]
    kinds = {a["kind"] for a in arts}
    assert kinds == {"video", "checkpoint", "code"}, arts
    videos = [a for a in arts if a["kind"] == "video"]
    assert "videos/eval-final.mp4" in {a["path"] for a in videos}
    for a in videos:
        assert a["size"] > 1000 and a["meta"]["frames"] > 1 and a["meta"]["duration_s"] > 0
        assert os.path.getsize(os.path.join(run_dir(dstack, run_id), a["path"])) == a["size"]
    assert_nothing_left(dstack)


def test_a_cancelled_cartpole_run_checkpoints_within_its_grace(dstack: Stack) -> None:
    run_id = submit(dstack, "cartpole", seed=2, steps=10**9, cancel_grace_s=10.0)
    metrics = os.path.join(run_dir(dstack, run_id), "metrics.jsonl")
    wait_until(lambda: os.path.exists(metrics) and os.path.getsize(metrics) > 0, 30,
               message="the first iteration's metrics")
    dstack.client().call("request_cancel", {"run_id": run_id, "requested_by": "test",
                                            "reason": "enough"})
    run = wait_status(dstack, run_id, TERMINAL, timeout=20)
    assert run["status"] == "CANCELLED" and run["exit_code"] == 0, run
    assert _result(dstack, run_id)["status"] == "stopped"
    arts = dstack.client().call("list_artifacts", {"run_id": run_id})["artifacts"]
    assert [a["meta"]["reason"] for a in arts if a["kind"] == "checkpoint"] == ["stop"]
    assert_nothing_left(dstack)
