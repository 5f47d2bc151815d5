"""Runs through SLURM (docs/SLURM.md), on a single-node test cluster in a temporary
folder (tests/system/slurmcluster.py: needs root and Debian's SLURM packages; without
them the rows say so and judge nothing):

1. Submit -> worker start: the ``submit`` RPC of a ``test-mark`` run with
   ``"launcher": "slurm"`` until the first line of the worker's main, vs a bare
   ``sbatch --wrap`` of the exact same command line and environment
   (``launch.prepare``), sbatch -> first line; one at a time, in turns.
   Target: median at most 100 ms above the bare sbatch.
2. N (100; 10 with --quick) trivial runs, 2 at a time (the node's 2 CPUs; one CPU
   per job): first submit -> last RunCompleted, vs the same N commands through bare
   ``sbatch --wrap``, first sbatch -> squeue showing them all finished (polled every
   20 ms). Target: <= 1.1x.

3. The dispatcher tracking N (1,000; 200 with --quick) pending SLURM jobs (their
   partition DOWN: queued, never started): the dispatcher process's CPU (its own and
   its children's, the squeue calls) over a window, vs a bare loop running the same
   squeue command at the same poll interval (the launcher's POLL_S) for as long; both
   call squeue through a wrapper on their PATH that counts the calls.
   Target: under 5 % of a core, and one squeue per poll (at most 1.1 per interval).
"""

from __future__ import annotations

import getpass
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from typing import Any

from bench.common import Lab
from bench.dispatcher import Terminals, bare_command, mark_config, read_mark
from bench.table import Row
from services.dispatcher.shell.slurmcli import ACTIVE, squeue_argv
from services.dispatcher.shell.slurmlauncher import POLL_S

LATENCY_BUDGET_MS = 100.0
MAKESPAN_RATIO = 1.1
PENDING_CPU_BUDGET = 0.05    # of a core
SQUEUE_PER_POLL = 1.1
BARE_LOOP = """import os, subprocess, sys, time
argv, poll, window = sys.argv[3:], float(sys.argv[1]), float(sys.argv[2])
t = os.times(); t0 = time.monotonic(); n = 0
while time.monotonic() - t0 < window:
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=30)
    n += 1
    time.sleep(poll)
e = os.times()
print(sum(e[:4]) - sum(t[:4]), time.monotonic() - t0, n)
"""


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
    runs, count = (4, 10) if quick else (10, 100)
    try:
        counter = _squeue_counter(cluster.dir)
        env = {"SLURM_CONF": cluster.conf, "TRAINER_CPU_SLOTS": "2",
               "TRAINER_STATUS_INTERVAL": "0.5",
               "PATH": os.path.dirname(counter) + os.pathsep + os.environ.get("PATH", "")}
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
                rid = terms.run_to_completion(client, slurm_config("lat", seed), 60, disp)
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
            rows.append(_pending(cluster, lab, client, disp, counter, 200 if quick else 1000,
                                 10.0 if quick else 20.0))
        return rows
    finally:
        cluster.client(["scancel", f"--user={getpass.getuser()}"])   # the pending ones
        cluster.client(["scontrol", "update", "PartitionName=ci", "State=UP"])
        cluster.stop()


def _squeue_counter(folder: str) -> str:
    """A ``squeue`` that counts its calls (a line each in ``squeue.calls`` beside it)
    and runs the real one: first on PATH for the dispatcher and the bare loop."""
    real = shutil.which("squeue")
    if real is None:
        raise RuntimeError("squeue is not on PATH")
    os.makedirs(os.path.join(folder, "bin"), exist_ok=True)
    path = os.path.join(folder, "bin", "squeue")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(f"#!/bin/sh\necho >> {shlex.quote(path)}.calls\n"
                 f"exec {shlex.quote(real)} \"$@\"\n")
    os.chmod(path, 0o755)
    return path


def _calls(counter: str) -> int:
    try:
        with open(counter + ".calls", encoding="utf-8") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def _cpu_s(pid: int) -> float:
    """A process's CPU seconds, its reaped children's included (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _pending(cluster: Any, lab: Lab, client: Any, disp: Any, counter: str, count: int,
             window: float) -> Row:
    cluster.client(["scontrol", "update", "PartitionName=ci", "State=DOWN"])
    for i in range(count):
        client.call("submit", {"config": slurm_config("pending", 5000 + i),
                               "submitted_by": "bench"})
    deadline = time.monotonic() + 60 + count * 0.2
    while len(cluster.client(["squeue", "-h", "-t", "PENDING", "-o", "%i"]).split()) < count:
        if time.monotonic() > deadline or not disp.alive():
            raise RuntimeError(f"{count} jobs not pending in SLURM: {disp.log_tail()}")
        time.sleep(0.2)   # polling SLURM for the jobs the dispatcher submits
    time.sleep(3 * POLL_S)   # its last submissions and their first polls behind it
    cpu0, calls0, t0 = _cpu_s(disp.pid), _calls(counter), time.monotonic()
    time.sleep(window)    # the window measured: the dispatcher left alone
    cpu, calls, span = _cpu_s(disp.pid) - cpu0, _calls(counter) - calls0, \
        time.monotonic() - t0
    done = subprocess.run([sys.executable, "-c", BARE_LOOP, str(POLL_S), str(window),
                           counter, *squeue_argv()[1:]], env=lab.env, capture_output=True,
                          text=True, check=True, timeout=window + 60)
    bare_cpu, bare_span, bare_calls = (float(x) for x in done.stdout.split())
    share, bare_share = cpu / span, bare_cpu / bare_span
    per_poll = calls / (span / POLL_S)
    return Row(f"slurm: the dispatcher tracking {count} pending jobs, CPU", "% core",
               share * 100, bare_share * 100, f"< {PENDING_CPU_BUDGET * 100:g} % of a core, "
               f"<= {SQUEUE_PER_POLL:g} squeue per poll",
               share < PENDING_CPU_BUDGET and per_poll <= SQUEUE_PER_POLL,
               f"over {span:.1f} s, squeue polled every {POLL_S:g} s: {calls} squeue calls "
               f"({per_poll:.2f} per poll); bare: a loop running the same squeue every "
               f"{POLL_S:g} s, its CPU with its squeue children ({bare_calls:.0f} "
               f"calls over {bare_span:.1f} s)")
