"""The SDK against a real bus broker: heartbeats with progress, metrics and artifact
reports reach an ordinary subscriber."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any, Iterator

import pytest

from bus.codec import MessageType
from tests.system.stack import Stack
from worker import sdk

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def _next(sub: Any, mtype: str, deadline_s: float = 10.0) -> Any:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        msg = sub.recv(200)
        if msg is not None and msg.envelope.type == mtype:
            return msg
    raise AssertionError(f"no {mtype} message within {deadline_s}s")


def test_heartbeats_metrics_and_artifacts_reach_a_subscriber(
        stack: Stack, tmp_path: Any, restore_sigterm: None) -> None:
    sub = stack.subscriber("hb.r-bus", "metric.r-bus", "artifact.r-bus")
    run = sdk.Run("r-bus", str(tmp_path), stack.settings.bus_pub, heartbeat_interval=0.05,
                  ctx=stack.ctx)
    try:
        # steps/s counts from the first report (steps before it may be a resumed
        # checkpoint's): two reports give it a rate.
        run.progress(step=1, episode=0)
        run.progress(step=123, episode=4, last_return=21.0, mean_return=17.5, iteration=2)
        # Heartbeats repeat, so the first one through proves the path is live.
        beat = _next(sub, MessageType.HEARTBEAT.value)
        first = beat.envelope.payload["beat"]
        beat = _next(sub, MessageType.HEARTBEAT.value)
        p = beat.envelope.payload
        assert beat.topic == "hb.r-bus" and beat.envelope.source == "worker:r-bus"
        assert p["beat"] > first and p["run_id"] == "r-bus"
        assert (p["step"], p["episode"], p["last_return"], p["mean_return"],
                p["iteration"]) == (123, 4, 21.0, 17.5, 2)
        assert "gpu_mem_bytes" in p and p["rss_bytes"] > 0 and p["steps_per_s"] > 0

        run.log_metrics(7, return_mean=17.5, elite_threshold=30.0)
        m = _next(sub, MessageType.METRICS.value)
        assert m.topic == "metric.r-bus"
        assert m.envelope.payload["step"] == 7
        assert m.envelope.payload["values"] == {"return_mean": 17.5, "elite_threshold": 30.0}

        (tmp_path / "videos").mkdir()
        (tmp_path / "videos" / "eval-00001.mp4").write_bytes(b"\0" * 64)
        run.register_artifact("videos/eval-00001.mp4", "video", episode=3, duration_s=0.4)
        a = _next(sub, MessageType.ARTIFACT_REPORTED.value)
        assert a.topic == "artifact.r-bus"
        assert {k: a.envelope.payload[k] for k in ("kind", "path", "size", "meta")} == {
            "kind": "video", "path": "videos/eval-00001.mp4", "size": 64,
            "meta": {"episode": 3, "duration_s": 0.4}}
    finally:
        run.finish("completed", metrics={"eval_return_mean": 500.0})
    with open(os.path.join(tmp_path, sdk.METRICS_FILE)) as fh:
        assert json.loads(fh.readline())["step"] == 7
    # finished: no heartbeat after the exit record (the socket is closed)
    assert run._sock.closed and not run._thread.is_alive()
