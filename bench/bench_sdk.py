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


def _sdk_run(folder: str, tensorboard: bool) -> Any:
    """A Run in ``folder`` with the TensorBoard writer on or off."""
    from worker.gpu import GpuProbe
    from worker.sdk import Run
    from worker.tbwriter import SWITCH_ENV

    before = os.environ.get(SWITCH_ENV)
    os.environ[SWITCH_ENV] = "1" if tensorboard else "0"
    try:
        return Run("bench", folder, "", HEARTBEAT_S,
                   gpu=GpuProbe(os.environ.get("CUDA_VISIBLE_DEVICES")))
    finally:
        if before is None:
            os.environ.pop(SWITCH_ENV)
        else:
            os.environ[SWITCH_ENV] = before


def _call_cost(run: Any, calls: int) -> float:
    """Microseconds per ``log_metrics`` call of three values."""
    t0 = time.perf_counter()
    for i in range(calls):
        run.log_metrics(i, episode_return=200.0 + i, episode_length=200, episode=i)
    return (time.perf_counter() - t0) / calls * 1e6


def run(quick: bool) -> list[dict[str, Any]]:
    import gymnasium as gym

    steps, repeats = (20_000, 8) if quick else (50_000, 20)
    env = gym.make("CartPole-v1")
    before = signal.getsignal(signal.SIGTERM)
    got: dict[str, list[float]] = {"base": [], "ours": [], "tb": [], "no_tb": []}
    cost: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory(prefix="bench-sdk-") as tmp:
        on_dir, off_dir = os.path.join(tmp, "on"), os.path.join(tmp, "off")
        os.makedirs(on_dir)
        os.makedirs(off_dir)
        sdk_run, no_tb = _sdk_run(on_dir, True), _sdk_run(off_dir, False)
        try:
            _loop(env, 2_000, None)                      # warm-up
            _loop(env, 2_000, sdk_run, log=True)
            _loop(env, 2_000, no_tb, log=True)
            loops = [("base", None, False), ("ours", sdk_run, False),
                     ("tb", sdk_run, True), ("no_tb", no_tb, True)]
            for i in range(repeats):   # rotate the order, pair the measurements
                for name, r, log in loops[i % 4:] + loops[:i % 4]:
                    got[name].append(_loop(env, steps, r, log))
            for i in range(10):        # one call's cost, alternating
                for tb in ((True, False) if i % 2 else (False, True)):
                    cost[tb].append(_call_cost(sdk_run if tb else no_tb, 200 if quick
                                               else 1_000))
            beats = sdk_run._beats
            tb_file = sdk_run._tb.path
        finally:
            sdk_run.finish("completed")
            no_tb.finish("completed")
            signal.signal(signal.SIGTERM, before)
        episodes = _episodes(env, steps)
    env.close()
    assert tb_file, "the TensorBoard writer did not open its file"
    b = statistics.median(got["base"])

    def ratio(name: str, against: str = "base") -> float:
        # the median of the paired ratios: a load change on the machine hits both
        return statistics.median(x / y for x, y in zip(got[name], got[against]))

    target = f">= {TARGET:.0%} (overhead < 5 %)"
    on, off = statistics.median(cost[True]), statistics.median(cost[False])
    return [{"name": "sdk: CartPole steps/s, progress() every step + heartbeats",
             "ours": round(statistics.median(got["ours"])), "baseline": round(b),
             "unit": "steps/s", "ratio": round(ratio("ours"), 3), "target": target,
             "ok": ratio("ours") >= TARGET, "notes": f"{repeats}x{steps} steps, {beats} beats"},
            {"name": "sdk + TensorBoard: CartPole steps/s, progress() every step, "
                     "log_metrics each episode",
             "ours": round(statistics.median(got["tb"])), "baseline": round(b),
             "unit": "steps/s", "ratio": round(ratio("tb"), 3), "target": target,
             "ok": ratio("tb") >= TARGET,
             "notes": f"{episodes} episodes per {steps} steps, 3 values each: a jsonl line, "
                      "a bus message, a TensorBoard event"},
            {"name": "the same, TensorBoard writer off (info)",
             "ours": round(statistics.median(got["no_tb"])), "baseline": round(b),
             "unit": "steps/s", "ratio": round(ratio("no_tb"), 3), "target": "info",
             "ok": None, "notes": f"TensorBoard on/off: {ratio('tb', 'no_tb'):.1%}"},
            {"name": "sdk: one log_metrics call (3 values), TensorBoard on vs off",
             "ours": round(on, 1), "baseline": round(off, 1), "unit": "us",
             "ratio": round(on / off, 3), "target": "info", "ok": None,
             "notes": f"the TensorBoard event: {on - off:.1f} us; median of 10 x "
                      f"{200 if quick else 1_000} calls each, alternating"}]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv[1:]):
        print(row)
