"""SDK overhead: CartPole-v1 env steps/s in a training-style loop that reports
through the worker SDK (``run.progress()`` after every step, the heartbeat thread
on at 10 beats/s, ten times the default rate) against the same loop without the SDK,
measured in the same process in alternating pairs; the ratio is the median of the
pairs' ratios.

``python -m bench.bench_sdk [--quick]`` prints the rows. Target: overhead under 5 %
(ours/baseline >= 0.95).
"""

from __future__ import annotations

import os
import signal
import statistics
import sys
import tempfile
import time
from typing import Any, Optional

import numpy as np

TARGET = 0.95
HEARTBEAT_S = 1.0


def _loop(env: Any, steps: int, run: Optional[Any]) -> float:
    """Steps per second of ``steps`` env steps with a fixed linear policy."""
    w = np.array([0.0, 0.0, 1.0, 1.0])
    obs, _ = env.reset(seed=0)
    episode, ret = 0, 0.0
    t0 = time.perf_counter()
    for step in range(steps):
        obs, reward, terminated, truncated, _ = env.step(1 if float(obs @ w) > 0 else 0)
        ret += reward
        if run is not None:
            run.progress(step=step, episode=episode, last_return=ret)
        if terminated or truncated:
            episode, ret = episode + 1, 0.0
            obs, _ = env.reset(seed=episode)
    return steps / (time.perf_counter() - t0)


def run(quick: bool) -> list[dict[str, Any]]:
    import gymnasium as gym

    from worker.gpu import GpuProbe
    from worker.sdk import Run

    steps, repeats = (20_000, 8) if quick else (50_000, 20)
    env = gym.make("CartPole-v1")
    before = signal.getsignal(signal.SIGTERM)
    ours, base = [], []
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        sdk_run = Run("bench", tmp, "", HEARTBEAT_S, gpu=GpuProbe(os.environ.get(
            "CUDA_VISIBLE_DEVICES")))
        try:
            _loop(env, 2_000, None)                      # warm-up
            _loop(env, 2_000, sdk_run)
            for i in range(repeats):   # alternate the order, pair the measurements
                if i % 2:
                    ours.append(_loop(env, steps, sdk_run))
                    base.append(_loop(env, steps, None))
                else:
                    base.append(_loop(env, steps, None))
                    ours.append(_loop(env, steps, sdk_run))
            beats = sdk_run._beats
        finally:
            sdk_run.finish("completed")
            signal.signal(signal.SIGTERM, before)
    env.close()
    o, b = statistics.median(ours), statistics.median(base)
    # the median of the paired ratios: a load change on the machine hits both halves
    ratio = statistics.median(x / y for x, y in zip(ours, base))
    return [{"name": "sdk: CartPole steps/s, progress() every step + heartbeats",
             "ours": round(o), "baseline": round(b), "unit": "steps/s",
             "ratio": round(ratio, 3), "target": f">= {TARGET:.0%} (overhead < 5 %)",
             "ok": ratio >= TARGET, "notes": f"{repeats}x{steps} steps, {beats} beats"}]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
