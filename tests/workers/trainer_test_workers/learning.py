"""test-learning: a worker that is alive and, on purpose, not learning in one chosen
way, for the liveness rules (docs/SUPERVISION.md). Hyperparameters:

- ``mode``: ``healthy`` (steps at ``rate`` steps/s), ``stall`` (steps until
  ``stall_at_s`` seconds in, then frozen while the SDK keeps heartbeating; steps again
  after ``resume_after_s`` more seconds when given), ``nan`` (logs a finite ``loss``,
  then NaN from ``nan_at_s`` on; finite again after ``recover_after_s`` when given),
  ``slow`` (``rate`` steps/s, then ``slow_rate`` from ``slow_at_s``), ``eval`` (healthy,
  with an evaluation of ``eval_s`` seconds declared with ``run.evaluating()`` every
  ``eval_every_s``: no step meanwhile);
- ``duration_s``: it finishes ``completed`` after this long (default 30), or on a stop;
- in ``stall`` mode, ``stall.json`` in the run folder holds ``last_step_at``, the wall
  time of its last step before the stall (for the detection latency's benchmark);
- a checkpoint asked for (``run.checkpoint_requested``: SIGUSR2) is written to
  ``checkpoints/requested-<n>.json`` and registered as a ``checkpoint`` artifact.
"""

from __future__ import annotations

import json
import math
import os
import time


def main() -> int:
    from worker.sdk import Run, load_config
    p = load_config().hyperparameters
    mode, rate = p.get("mode", "healthy"), float(p.get("rate", 200.0))
    duration, tick = float(p.get("duration_s", 30.0)), 0.02
    with Run.from_env() as run:
        t0 = time.monotonic()
        step, done = 0, 0.0   # steps, and the fraction of a step carried over
        saved, last_step_at, told = 0, time.time(), False
        next_eval = float(p.get("eval_every_s", 1e9))
        while not run.wait_for_stop(tick):
            now = time.monotonic() - t0
            if now >= duration:
                break
            if run.checkpoint_requested:
                run.checkpoint_done()
                saved += 1
                rel = os.path.join("checkpoints", f"requested-{saved}.json")
                os.makedirs(os.path.join(run.run_dir, "checkpoints"), exist_ok=True)
                with open(os.path.join(run.run_dir, rel), "w", encoding="utf-8") as fh:
                    json.dump({"step": step}, fh)
                run.register_artifact(rel, "checkpoint", step=step, reason="requested")
            if mode == "eval" and now >= next_eval:
                with run.evaluating():
                    run.wait_for_stop(float(p.get("eval_s", 1.0)))
                next_eval = time.monotonic() - t0 + float(p.get("eval_every_s", 1e9))
                continue
            done += _rate(mode, p, now, rate) * tick
            if int(done):
                last_step_at = time.time()
            elif mode == "stall" and not told and now >= float(p.get("stall_at_s", 1.0)):
                told = True
                with open(os.path.join(run.run_dir, "stall.json"), "w", encoding="utf-8") as fh:
                    json.dump({"last_step_at": last_step_at}, fh)
            step += int(done)
            done -= int(done)
            run.progress(step=step)
            if mode == "nan":
                bad = now >= float(p.get("nan_at_s", 1.0)) and now < float(
                    p.get("nan_at_s", 1.0)) + float(p.get("recover_after_s", 1e9))
                run.log_metrics(step, loss=math.nan if bad else 1.0 / (1 + step),
                                return_mean=float(step))
    return 0


def _rate(mode: str, p: dict, now: float, rate: float) -> float:
    if mode == "stall":
        at, back = float(p.get("stall_at_s", 1.0)), float(p.get("resume_after_s", 1e9))
        return 0.0 if at <= now < at + back else rate
    if mode == "slow" and now >= float(p.get("slow_at_s", 1.0)):
        return float(p.get("slow_rate", rate / 20))
    return rate
