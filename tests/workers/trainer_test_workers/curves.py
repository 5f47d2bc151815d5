"""test-curves: a worker with known learning curves, for the experiments' statistics.

It logs ``points`` records (default 5) through the SDK: at record k of n (k = 1..n),
step ``k * 100``, ``score`` = ``level * k / n + seed / 100`` and, as stable-baselines3
names its return, ``rollout/ep_rew_mean`` = 10 times that. So a run's final ``score`` is
``level + seed / 100`` (``level``: its hyperparameter, default 1). A seed listed in
``fail_seeds`` exits 1 on its first attempt (TRAINER_ATTEMPT 1), before it logs anything;
its rerun completes. With ``hold`` it waits for a stop request (a cancel) after logging.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from worker.sdk import Run
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    p, seed = config.get("hyperparameters", {}), int(config.get("seed", 0))
    if seed in p.get("fail_seeds", []) and os.environ.get("TRAINER_ATTEMPT", "1") == "1":
        print(f"seed {seed} fails its first attempt", file=sys.stderr, flush=True)
        return 1
    level, n = float(p.get("level", 1.0)), int(p.get("points", 5))
    with Run.from_env() as run:
        for k in range(1, n + 1):
            score = level * k / n + seed / 100
            run.progress(step=k * 100)
            run.log_metrics(k * 100, score=score, **{"rollout/ep_rew_mean": 10 * score})
        if p.get("hold"):
            while not run.wait_for_stop(0.05):
                pass
    return 0
