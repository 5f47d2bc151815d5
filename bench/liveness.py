"""The liveness rules' benchmarks (docs/SUPERVISION.md).

1. 1,000 runs heartbeating at 1 Hz with every liveness rule judging each beat (no
   warm-up, 3 s windows; the beats say the steps advance at a steady pace and the
   metrics are finite): the dispatcher's CPU against a bare pyzmq SUB + msgpack process
   receiving the same beats (bench/dispatcher_heartbeats.py), under 10 % of a core, and
   0 false flags.
2. Detection latency: ``test-learning`` runs that stall (their step counter frozen while
   the SDK keeps beating at 1 Hz) under a stalled window of 3 s. Measured: the wall time
   of each worker's last step (its ``stall.json``) -> the commit of its RunFlagged (the
   events followed gap-free from the bus). The bound it is judged on, and the baseline:
   the window plus one heartbeat interval (no rule can flag sooner than the window).

``python -m bench liveness [--quick]``.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from bench.common import Lab
from bench.dispatcher import Terminals
from bench.dispatcher_heartbeats import heartbeats
from bench.table import Row

WINDOW_S, INTERVAL_S = 3.0, 1.0
SERVICE_ENV = {"TRAINER_CPU_SLOTS": "8", "TRAINER_STATUS_INTERVAL": "0.5"}


def run(quick: bool) -> list[Row]:
    return heartbeats(quick, rules=True) + detection(quick)


def stall_config(seed: int) -> dict[str, Any]:
    return {"name": f"bench-stall-{seed}", "worker": "test-learning", "seed": seed,
            "steps": 1, "heartbeat_interval_s": INTERVAL_S, "cancel_grace_s": 1.0,
            "hyperparameters": {"mode": "stall", "stall_at_s": 1.0 + 0.13 * seed,
                                "duration_s": 60.0},
            "liveness": {"stalled": {"window_s": WINDOW_S, "warmup_s": 0,
                                     "action": "stop"}}}


def detection(quick: bool) -> list[Row]:
    count = 4 if quick else 8
    latencies: list[float] = []
    with Lab("tb-live-", env=SERVICE_ENV) as lab:
        lab.start_bus()
        lab.start_registry()
        terms = Terminals(lab)
        disp = lab.module("services.dispatcher")
        client = lab.client(lab.settings.registry, timeout_s=10.0, retries=2)
        ids = [client.call("submit", {"config": stall_config(seed)})["run"]["run_id"]
               for seed in range(count)]
        terms.wait(ids, 90, disp)
        for run_id in ids:
            with open(os.path.join(lab.settings.runs_dir, run_id, "stall.json"),
                      encoding="utf-8") as fh:
                last_step_at = json.load(fh)["last_step_at"]
            flagged_at = terms.events[run_id].get("RunFlagged")
            if flagged_at is None:
                raise RuntimeError(f"{run_id} was never flagged: {terms.history[run_id]}")
            latencies.append(flagged_at - last_step_at)
    bound = WINDOW_S + INTERVAL_S
    worst = max(latencies)
    return [Row("liveness: a stall flagged, last step -> RunFlagged (worst)", "s", worst,
                bound, f"<= window + 1 interval ({bound:g} s)", worst <= bound,
                f"{count} stalled runs, window {WINDOW_S:g} s, heartbeats every "
                f"{INTERVAL_S:g} s; each: " + ", ".join(f"{x:.2f}" for x in sorted(latencies))
                + "; the baseline column is the bound itself")]


if __name__ == "__main__":
    t0 = time.monotonic()
    for row in run(quick=True):
        print(row)
    print(f"{time.monotonic() - t0:.1f}s")
