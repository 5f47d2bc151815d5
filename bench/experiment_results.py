"""An experiment's results read from its cells' metrics files (issue 17).

``python -m bench experiment_results``: 100 runs (10 config points x 10 seeds) of 1,000
metrics records each (the SDK's record shape: three training metrics every record, the
evaluation metric every tenth) are written to a temporary runs folder, then timed:

- ``sweep show``: `runtime.experimentresults.experiment_results` of the evaluation
  metric, with a cold cache (a fresh `FileCache`; the OS page cache is warm, as it is for
  files just written by workers); target < 1 s. The same call with a warm cache is
  reported for information.
- ``sweep plot``: ``experiment_results(curves=True)`` and ``plot_curves(profile=True)``
  into a PNG, cold cache; target < 3 s.

The raw baseline, measured in the same run: a plain ``json.loads`` of every line of the
same 100 files (what a reader that parses everything pays). Timings are the median of
3 interleaved repeats (1 with ``--quick``).
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from typing import Any, Callable

from bench.table import Row, median
from core.rundir import METRICS_FILE
from runtime.experimentresults import CellRef, FileCache, experiment_results

POINTS, SEEDS, RECORDS = 10, 10, 1000
METRIC = "eval_return_mean"
SHOW_TARGET_S, PLOT_TARGET_S = 1.0, 3.0


def write_runs(runs_dir: str) -> tuple[list[dict[str, Any]], list[CellRef], int]:
    """The experiment's files; returns its points, cells and the bytes written."""
    rng = random.Random(17)
    points = [{"hyperparameters.noise_std": round(0.1 * (p + 1), 2)} for p in range(POINTS)]
    cells, total = [], 0
    for p in range(POINTS):
        for s in range(SEEDS):
            run_id = f"r{p:06x}{s:06x}"
            os.makedirs(os.path.join(runs_dir, run_id))
            lines = []
            for i in range(RECORDS):
                step = i * 1000
                values: dict[str, float] = {
                    "rollout/ep_rew_mean": (p + 1) * i / RECORDS * 100 + rng.gauss(0, 5),
                    "train/loss": 1.0 / (1 + i) + rng.random() * 1e-3,
                    "time/fps": 1500 + rng.random() * 100}
                if i % 10 == 9:
                    values[METRIC] = (p + 1) * i / RECORDS * 100 + rng.gauss(0, 10)
                lines.append(json.dumps({"run_id": run_id, "step": step,
                                         "ts": 1.7e9 + i, "values": values}))
            data = "\n".join(lines) + "\n"
            total += len(data)
            with open(os.path.join(runs_dir, run_id, METRICS_FILE), "w",
                      encoding="utf-8") as fh:
                fh.write(data)
            cells.append(CellRef(p, s, run_id, "COMPLETED" if s < SEEDS - 1 else "RUNNING"))
    return points, cells, total


def raw(runs_dir: str, cells: list[CellRef]) -> float:
    t0 = time.perf_counter()
    for cell in cells:
        with open(os.path.join(runs_dir, cell.run_id, METRICS_FILE), "rb") as fh:
            for line in fh:
                json.loads(line)
    return time.perf_counter() - t0


def timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def run(quick: bool = False) -> list[Row]:
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory(prefix="tb-results-", dir="/tmp") as tmp:
        runs_dir = os.path.join(tmp, "runs")
        points, cells, size = write_runs(runs_dir)
        t0 = time.perf_counter()
        from trainer.experiments.plot import plot_curves   # matplotlib's import, timed
        import_s = time.perf_counter() - t0
        png = os.path.join(tmp, "sweep.png")
        raws, shows, warms, plots = [], [], [], []
        for _ in range(repeats):      # interleaved, so that all see the same machine
            raws.append(raw(runs_dir, cells))
            cache = FileCache()
            shows.append(timed(lambda: experiment_results(runs_dir, points, cells, METRIC,
                                                          cache=cache)))
            warms.append(timed(lambda: experiment_results(runs_dir, points, cells, METRIC,
                                                          cache=cache)))
            plot_cache = FileCache()
            plots.append(timed(lambda: plot_curves(
                experiment_results(runs_dir, points, cells, METRIC, curves=True,
                                   cache=plot_cache), png, profile=True)))
        png_kb = os.path.getsize(png) / 1024
    b = median(raws)
    show, warm, plot = median(shows), median(warms), median(plots)
    files = f"{len(cells)} runs x {RECORDS:,} records ({size / 1e6:.1f} MB)"
    return [
        Row("sweep show: experiment_results (cold cache)", "s", show, b,
            f"< {SHOW_TARGET_S:g} s", show < SHOW_TARGET_S,
            f"{files}; tail reads; median of {repeats}"),
        Row("sweep show again (warm cache, info)", "s", warm, b, "-", None,
            "files unchanged: (size, mtime) hits"),
        Row("sweep plot: curves=True + plot_curves(profile)", "s", plot, b,
            f"< {PLOT_TARGET_S:g} s", plot < PLOT_TARGET_S,
            f"whole files parsed, 200-step grid, 2,000 bootstrap reps; PNG {png_kb:.0f} kB;"
            f" matplotlib import {import_s:.2f} s (not counted)"),
    ]


if __name__ == "__main__":
    from bench.table import render
    print(render(run()))
