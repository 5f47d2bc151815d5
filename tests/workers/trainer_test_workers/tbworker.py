"""test-tensorboard: a worker that writes its own TensorBoard logs, as stable-baselines3
does: a tensorboardX ``SummaryWriter`` on ``<run folder>/tensorboard/PPO_1`` (its working
directory is the run folder), one event per scalar. At record k of n (k = 1..n, n =
``points``, default 5), step ``k * 100``: ``rollout/ep_rew_mean`` = ``10 * (level * k / n
+ seed / 100)`` and ``train/loss`` = ``1 / k``. So a run's final ``rollout/ep_rew_mean``
is ``10 * (level + seed / 100)``. Through the SDK it logs only ``sdk_score`` (= k) and
its progress: those go to metrics.jsonl (and the SDK's own event file), never twice.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    from tensorboardX import SummaryWriter

    from worker.sdk import Run
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        config = json.load(fh)
    p, seed = config.get("hyperparameters", {}), int(config.get("seed", 0))
    level, n = float(p.get("level", 1.0)), int(p.get("points", 5))
    writer = SummaryWriter("tensorboard/PPO_1")
    with Run.from_env() as run:
        for k in range(1, n + 1):
            now = time.time()
            writer.add_scalar("rollout/ep_rew_mean", 10 * (level * k / n + seed / 100),
                              k * 100, walltime=now)
            writer.add_scalar("train/loss", 1 / k, k * 100, walltime=now)
            run.progress(step=k * 100)
            run.log_metrics(k * 100, sdk_score=k)
        writer.close()
    return 0
