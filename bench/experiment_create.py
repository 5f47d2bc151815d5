"""Creating an experiment: one CreateExperiment call of 1,000 cells (10 config points x
100 seeds) against the baseline a researcher has without it, 1,000 SubmitRun calls of
the same configs from one client, one after the other (the shell loop), through the same
gateway and registry in the same run. Target: at least 5x faster.

Each round uses configs no earlier round made (a tag names the round), so every call
creates its runs; the two are alternated and the median of the rounds is reported.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.bench_gateway import _gateway
from bench.common import Lab

POINTS, SEEDS = 10, 100
TARGET = 5.0


def spec(tag: str) -> dict[str, Any]:
    return {"name": f"bench-{tag}",
            "template": {"worker": "cartpole", "env": "CartPole-v1", "steps": 200_000,
                         "tags": ["bench", tag]},
            "axes": {"hyperparameters.noise_std": [0.05 * (i + 1) for i in range(POINTS)]},
            "seeds": SEEDS}


def configs(tag: str) -> list[dict[str, Any]]:
    from core.sweepspec import parse_spec
    return [cell.config for cell in parse_spec(spec(tag)).cells()]


def run(quick: bool = False) -> list[dict[str, Any]]:
    rounds = 1 if quick else 3
    from trainer.client import Client
    with Lab("tb-exp-", env={"TRAINER_STATUS_INTERVAL": "0.5"}) as lab:
        lab.start_bus()
        lab.start_registry()
        addr, token = _gateway(lab)
        ours: list[float] = []
        base: list[float] = []
        with Client(addr, token, timeout=120) as c:
            c.create_experiment(spec("warm"))  # first calls: imports, caches
            for config in configs("warm-submit")[:50]:
                c.submit(config)
            for r in range(rounds):
                order = ("ours", "base") if r % 2 == 0 else ("base", "ours")
                for which in order:
                    tag = f"{which}{r}"
                    t0 = time.perf_counter()
                    if which == "ours":
                        got = c.create_experiment(spec(tag))
                        assert got.created_runs == POINTS * SEEDS, got.created_runs
                        ours.append(time.perf_counter() - t0)
                    else:
                        todo = configs(tag)
                        t0 = time.perf_counter()
                        for config in todo:
                            assert c.submit(config).created
                        base.append(time.perf_counter() - t0)
    mine, theirs = statistics.median(ours), statistics.median(base)
    speedup = theirs / mine
    return [{"name": f"CreateExperiment, {POINTS * SEEDS} cells in one call", "unit": "s",
             "ours": mine, "baseline": theirs,
             "target": f"<= {1 / TARGET:.0%} of the baseline's time ({TARGET:g}x faster)",
             "ok": speedup >= TARGET,
             "notes": f"median of {rounds}; baseline: the same configs as {POINTS * SEEDS} "
                      "SubmitRun calls, one after the other, each a new run "
                      f"({speedup:.1f}x)"}]
