"""Runs through SLURM (docs/SLURM.md), on a single-node test cluster in a temporary
folder (tests/system/slurmcluster.py: needs root and Debian's SLURM packages; without
them the rows say so and judge nothing):

1. Submit -> worker start: the ``submit`` RPC of a ``test-mark`` run with
   ``"launcher": "slurm"`` until the first line of the worker's main, vs a bare
   ``sbatch --wrap`` of the exact same command line and environment
   (``launch.prepare``), sbatch -> first line; one at a time, in turns.
   Target: median at most 100 ms above the bare sbatch.
2. N trivial runs, 2 at a time (the node's 2 CPUs; one CPU per job): first submit ->
   last RunCompleted, vs the same N commands through bare ``sbatch --wrap``, first
   sbatch -> squeue showing them all finished (polled every 20 ms). Target: <= 1.1x.

(The cost of tracking 1,000 pending jobs is not measured yet.)
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
import time
from typing import Any

from bench.common import Lab
from bench.dispatcher import Terminals, bare_command, mark_config, read_mark
from bench.table import Row
from services.dispatcher.shell.slurmcli import ACTIVE

LATENCY_BUDGET_MS = 100.0
MAKESPAN_RATIO = 1.1


def slurm_config(tag: str, seed: int) -> dict[str, Any]:
    return {**mark_config(tag, seed), "launcher": "slurm"}


def _bare_sbatch(lab: Lab, env: dict[str, str], name: str,
                 seed: int) -> tuple[str, float, str]:
    path, argv, wenv = bare_command(lab, name, mark_config("bare", seed))
    t0 = time.time()
    done = subprocess.run(["sbatch", "--parsable", "--output=/dev/null", f"--chdir={path}",
                           "--export=ALL", "--cpus-per-task=1", "--wrap", shlex.join(argv)],
                          env={**env, **wenv}, check=True, capture_output=True, text=True,
                          timeout=30)
    return path, t0, done.stdout.strip().split(";")[0]


def _wait_jobs_done(env: dict[str, str], job_ids: list[str], timeout: float) -> float:
    """When squeue last showed one of the jobs not finished: the bare jobs' end."""
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(job_ids),
                              "-o", "%T"], env=env, capture_output=True, text=True,
                             timeout=30).stdout.split()
        if len(out) == len(job_ids) and not [s for s in out if s in ACTIVE]:
            return time.time()
        if time.monotonic() > deadline:
            raise RuntimeError(f"bare jobs not finished after {timeout:g}s: {out}")
        time.sleep(0.02)   # polling SLURM, as any bare script would


def _wait_mark(path: str, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return read_mark(path)
        except (FileNotFoundError, ValueError):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no mark in {path} after {timeout:g}s") from None
            time.sleep(0.005)   # polling a file another host's job writes


def run(quick: bool = False) -> list[Row]:
    from tests.system import slurmcluster
    why = slurmcluster.missing()
    if why:
        return [Row("slurm: submit -> worker start", "ms", None, None, "-", None,
                    f"skipped: {why}")]
    cluster = slurmcluster.SlurmCluster().start()
    runs, count = (4, 10) if quick else (10, 40)
    try:
        env = {"SLURM_CONF": cluster.conf, "TRAINER_CPU_SLOTS": "2",
               "TRAINER_STATUS_INTERVAL": "0.5"}
        with Lab("tb-slurm-", env=env) as lab:
            lab.start_bus()
            lab.start_registry()
            terms = Terminals(lab)
            disp = lab.module("services.dispatcher")
            client = lab.client(lab.settings.registry, timeout_s=10.0)
            ours: list[float] = []
            bare: list[float] = []

            def one_ours(seed: int) -> float:
                t0 = time.time()
                rid = client.call("submit", {"config": slurm_config("lat", seed),
                                             "submitted_by": "bench"})["run"]["run_id"]
                terms.wait([rid], 60, disp)
                if terms.done[rid][0] != "RunCompleted":
                    raise RuntimeError(f"run {rid} ended {terms.done[rid][0]}")
                return read_mark(os.path.join(lab.settings.runs_dir, rid)) - t0

            def one_bare(seed: int) -> float:
                path, t0, _ = _bare_sbatch(lab, lab.env | env, f"bare-lat-{seed}", seed)
                return _wait_mark(path, 60) - t0

            for i in range(1 + runs):   # the first pair warms the cluster up
                pair = (one_ours, one_bare) if i % 2 == 0 else (one_bare, one_ours)
                got = {fn: fn(i) for fn in pair}
                if i:
                    ours.append(got[one_ours] * 1000)
                    bare.append(got[one_bare] * 1000)
            o50, b50 = statistics.median(ours), statistics.median(bare)
            rows = [Row("slurm: submit -> worker start (test-mark)", "ms", o50, b50,
                        f"<= bare sbatch + {LATENCY_BUDGET_MS:g} ms",
                        o50 <= b50 + LATENCY_BUDGET_MS,
                        f"median of {runs}, in turns; bare: sbatch --wrap of the same "
                        f"command -> its first line; ours min {min(ours):.0f}, "
                        f"max {max(ours):.0f}; bare min {min(bare):.0f}, max {max(bare):.0f}")]

            t0 = time.time()
            rids = [client.call("submit", {"config": slurm_config("span", 1000 + i),
                                           "submitted_by": "bench"})["run"]["run_id"]
                    for i in range(count)]
            terms.wait(rids, 30 + 5 * count, disp)
            failed = sum(terms.done[r][0] != "RunCompleted" for r in rids)
            o_span = max(terms.done[r][1] for r in rids) - t0
            t0 = time.time()
            jobs = [_bare_sbatch(lab, lab.env | env, f"bare-span-{i}", 2000 + i)[2]
                    for i in range(count)]
            b_span = _wait_jobs_done(lab.env | env, jobs, 30 + 5 * count) - t0
            rows.append(Row(f"slurm: {count} test-mark runs, 2 at a time, makespan", "s",
                            o_span, b_span, f"<= {MAKESPAN_RATIO:g}x bare sbatch",
                            o_span <= MAKESPAN_RATIO * b_span and not failed,
                            f"first submit -> last RunCompleted vs first sbatch -> squeue "
                            f"showing every job finished ({o_span / count * 1000:.0f} vs "
                            f"{b_span / count * 1000:.0f} ms/run)"
                            + (f"; {failed} NOT COMPLETED" if failed else "")))
            if not disp.alive():
                raise RuntimeError(f"the dispatcher died: {disp.log_tail()}")
        return rows
    finally:
        cluster.stop()
