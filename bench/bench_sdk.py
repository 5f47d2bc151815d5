"""SDK overhead: CartPole-v1 env steps/s in a training-style loop that reports
through the worker SDK (``run.progress()`` after every step, the heartbeat thread
on) against the same loop without the SDK, measured in the same process in
alternating rounds; each ratio is the median of the rounds' ratios.

Two rows: progress only; and progress plus ``run.log_metrics`` at every episode's end
(return, length, episode: a line of metrics.jsonl, a bus message and a TensorBoard
event, worker/tbwriter.py, so TensorBoard writing is on), each against the raw loop of
the same round. A third row, for information, is the cost of one ``log_metrics`` call
with and without the TensorBoard writer.

``python -m bench.bench_sdk [--quick]`` prints the rows. Target: overhead under 5 %
(ours/baseline >= 0.95) for both loop rows.
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


def _loop(env: Any, steps: int, run: Optional[Any], log: bool = False) -> float:
    """Steps per second of ``steps`` env steps with a fixed linear policy (with ``log``,
    ``log_metrics`` at each episode's end)."""
    w = np.array([0.0, 0.0, 1.0, 1.0])
    obs, _ = env.reset(seed=0)
    episode, ret, start = 0, 0.0, 0
    t0 = time.perf_counter()
    for step in range(steps):
        obs, reward, terminated, truncated, _ = env.step(1 if float(obs @ w) > 0 else 0)
        ret += reward
        if run is not None:
            run.progress(step=step, episode=episode, last_return=ret)
        if terminated or truncated:
            if log:
                run.log_metrics(step, episode_return=ret, episode_length=step - start,
                                episode=episode)
            episode, ret, start = episode + 1, 0.0, step
            obs, _ = env.reset(seed=episode)
    return steps / (time.perf_counter() - t0)


def _episodes(env: Any, steps: int) -> int:
    w = np.array([0.0, 0.0, 1.0, 1.0])
    obs, _ = env.reset(seed=0)
    episodes = 0
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(1 if float(obs @ w) > 0 else 0)
        if terminated or truncated:
            episodes += 1
            obs, _ = env.reset(seed=episodes)
    return episodes


def _call_cost(tmp: str, tensorboard: bool, calls: int) -> float:
    """Microseconds per ``log_metrics`` call (three values), TensorBoard on or off."""
    from worker.sdk import Run
    from worker.tbwriter import SWITCH_ENV

    before = os.environ.get(SWITCH_ENV)
    os.environ[SWITCH_ENV] = "1" if tensorboard else "0"
    folder = tempfile.mkdtemp(dir=tmp)
    try:
        run = Run("bench", folder, "", HEARTBEAT_S)
    finally:
        if before is None:
            os.environ.pop(SWITCH_ENV)
        else:
            os.environ[SWITCH_ENV] = before
    try:
        run.log_metrics(0, episode_return=1.0, episode_length=1, episode=0)
        t0 = time.perf_counter()
        for i in range(calls):
            run.log_metrics(i, episode_return=200.0 + i, episode_length=200, episode=i)
        return (time.perf_counter() - t0) / calls * 1e6
    finally:
        run.finish("completed")


def run(quick: bool) -> list[dict[str, Any]]:
    import gymnasium as gym

    from worker.gpu import GpuProbe
    from worker.sdk import Run

    steps, repeats = (20_000, 8) if quick else (50_000, 20)
    env = gym.make("CartPole-v1")
    before = signal.getsignal(signal.SIGTERM)
    ours, logged, base = [], [], []
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        sdk_run = Run("bench", tmp, "", HEARTBEAT_S, gpu=GpuProbe(os.environ.get(
            "CUDA_VISIBLE_DEVICES")))
        try:
            _loop(env, 2_000, None)                      # warm-up
            _loop(env, 2_000, sdk_run, log=True)
            for i in range(repeats):   # rotate the order, pair the measurements
                order = [("base", None, False), ("ours", sdk_run, False),
                         ("logged", sdk_run, True)]
                order = order[i % 3:] + order[:i % 3]
                got = {name: _loop(env, steps, r, log) for name, r, log in order}
                base.append(got["base"])
                ours.append(got["ours"])
                logged.append(got["logged"])
            beats = sdk_run._beats
            tb_file = sdk_run._tb.path
        finally:
            sdk_run.finish("completed")
            signal.signal(signal.SIGTERM, before)
        episodes = _episodes(env, steps)
        calls = 2_000 if quick else 10_000
        cost_on, cost_off = _call_cost(tmp, True, calls), _call_cost(tmp, False, calls)
    env.close()
    b = statistics.median(base)
    # the median of the paired ratios: a load change on the machine hits both halves
    ratio = statistics.median(x / y for x, y in zip(ours, base))
    ratio_tb = statistics.median(x / y for x, y in zip(logged, base))
    assert tb_file, "the TensorBoard writer did not open its file"
    return [{"name": "sdk: CartPole steps/s, progress() every step + heartbeats",
             "ours": round(statistics.median(ours)), "baseline": round(b),
             "unit": "steps/s", "ratio": round(ratio, 3),
             "target": f">= {TARGET:.0%} (overhead < 5 %)", "ok": ratio >= TARGET,
             "notes": f"{repeats}x{steps} steps, {beats} beats"},
            {"name": "sdk + TensorBoard: CartPole steps/s, progress() every step, "
                     "log_metrics each episode",
             "ours": round(statistics.median(logged)), "baseline": round(b),
             "unit": "steps/s", "ratio": round(ratio_tb, 3),
             "target": f">= {TARGET:.0%} (overhead < 5 %)", "ok": ratio_tb >= TARGET,
             "notes": f"{episodes} episodes per {steps} steps (3 values each: jsonl, bus, "
                      "TensorBoard event)"},
            {"name": "sdk: one log_metrics call (3 values), TensorBoard on vs off",
             "ours": round(cost_on, 1), "baseline": round(cost_off, 1), "unit": "us",
             "ratio": round(cost_on / cost_off, 3), "target": "info", "ok": None,
             "notes": f"{calls} calls each"}]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
