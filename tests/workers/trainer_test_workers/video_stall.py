"""test-video-stall: a worker that learns a little, records one real evaluation video
and then stalls, for the GUI's run with a video and a liveness flag.

It logs ``points`` records (default 4) through the SDK, at record k step ``k * 100``
with ``return_mean`` = 20 k and ``eval_return_mean`` = 25 k, ``step_s`` (default
0.25 s) apart, so heartbeats carry the steps advancing before the evaluation (a step
first heard during an evaluation does not start the stalled rule's clock); then plays one CartPole
episode (a pole-balancing rule, at most ``episode_steps`` steps, default 80) recorded
with worker.video's recorder, registered as a ``video`` artifact with the built-in
workers' meta (``step``, ``evaluation``, ``episode``, ``episode_return``, ``frames``,
``duration_s``); then it goes on heartbeating with its step frozen (the SDK's thread
beats) until a stop is requested: what the ``stalled`` rule flags.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def balance(obs: Any) -> int:
    """Push the cart towards where the pole leans (angle plus its velocity)."""
    return int(obs[2] + 0.5 * obs[3] > 0)


def main() -> int:
    from worker.sdk import Run
    from worker.video import env_and_recorder
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    p, seed = config.get("hyperparameters", {}), int(config.get("seed", 0))
    n, step_s = int(p.get("points", 4)), float(p.get("step_s", 0.25))
    with Run.from_env() as run:
        step = 0
        for k in range(1, n + 1):
            step = k * 100
            run.progress(step=step, episode=k)
            run.log_metrics(step, return_mean=20.0 * k)
            run.log_metrics(step, eval_return_mean=25.0 * k, evaluation=k)
            if run.wait_for_stop(step_s):     # the time a step of learning takes
                return 0
        _, recorder = env_and_recorder(
            config.get("env", "CartPole-v1"),
            {"max_episode_steps": int(p.get("episode_steps", 80))}, 1, run.run_dir)
        assert recorder is not None
        with run.evaluating():
            total, _, _, clip = recorder.record(balance, seed, f"eval-{n:05d}")
        recorder.close()
        if clip is not None:
            run.register_artifact(os.path.relpath(clip.path, run.run_dir), "video",
                                  episode=n, evaluation=n, iteration=n, step=step,
                                  frames=clip.frames, duration_s=clip.duration_s,
                                  episode_return=total)
        print(f"stalling at step {step}", file=sys.stderr, flush=True)
        while not run.wait_for_stop(0.05):
            pass                        # the step stays put; the heartbeats go on
    return 0
