"""The dispatcher's benchmark 1b: an attempt's end -> the next attempt's worker start.

A ``test-mark`` run with ``exit_first`` and a retry policy naming that exit code: its
first attempt writes ``time.time()`` to ``exit-mark`` and ends at once (``os._exit``)
with the code; the registry records AttemptEnded (run -> PENDING), the dispatcher claims
and starts attempt 2, whose first line of main writes ``mark``; the run completes.
Measured: exit-mark -> mark, one run at a time.

The baseline, alternating with ours in the same run: a bare supervisor loop. A plain
parent Popens the same first command (``launch.prepare``, attempt 1), waits for its
exit (a pidfd, then waitpid; the shim blocks in wait4) and at once Popens the same
command as attempt 2 (TRAINER_ATTEMPT=2), exit-mark -> mark again. Warm-up excluded;
target: median at most 15 ms above the bare loop, as for a first start
(bench/dispatcher.py, benchmark 1).

The note splits ours into phases: the worker's end -> the shim's exit.json ``ended_at``
(attempt-1/), -> AttemptEnded's commit, -> attempt 2's GpusClaimed, -> its shim's
worker.json ``started_at`` -> the mark.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import time
from typing import Any

from bench.common import Child, Lab
from bench.dispatcher import (LATENCY_BUDGET_MS, Terminals, bare_command, bare_start,
                              mark_config, quantile, read_mark)
from bench.table import Row
from core.rundir import EXIT_FILE, WORKER_FILE

EXIT_CODE = 5  # retried (retry.exit_codes), not 2 or 3


def retry_config(tag: str, seed: int) -> dict[str, Any]:
    return {**mark_config(tag, seed), "hyperparameters": {"exit_first": EXIT_CODE},
            "retry": {"max_attempts": 2, "exit_codes": [EXIT_CODE], "from_scratch": True}}


def read_exit_mark(run_dir: str) -> float:
    with open(os.path.join(run_dir, "exit-mark"), encoding="ascii") as fh:
        return float(fh.read())


def wait_exit(proc: "subprocess.Popen[bytes]", timeout: float) -> int:
    """The exit status as soon as the process ends: a pidfd, then waitpid. Not
    Popen.wait(timeout), which polls with sleeps of up to 50 ms."""
    fd = os.pidfd_open(proc.pid)
    try:
        if not select.select([fd], [], [], timeout)[0]:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"a bare test-mark did not exit within {timeout:g} s")
    finally:
        os.close(fd)
    return proc.wait()


def _phases(path: str, history: list[tuple[str, float]], exit_mark: float,
            mark: float) -> dict[str, float] | None:
    """Ours in ms, phase by phase (None when a record is missing)."""
    from services.dispatcher.spawner import read_json
    ended = (read_json(os.path.join(path, "attempt-1", EXIT_FILE)) or {}).get("ended_at")
    started = (read_json(os.path.join(path, WORKER_FILE)) or {}).get("started_at")
    attempt_ended = next((ts for t, ts in history if t == "AttemptEnded"), None)
    claims = [ts for t, ts in history if t == "GpusClaimed"]
    if ended is None or started is None or attempt_ended is None or len(claims) != 2:
        return None
    steps = (("exit->shim saw it", ended - exit_mark),
             ("->AttemptEnded", attempt_ended - ended),
             ("->GpusClaimed 2", claims[1] - attempt_ended),
             ("->shim 2", started - claims[1]),
             ("->main", mark - started))
    return {name: value * 1000 for name, value in steps}


def retry_latency(lab: Lab, terms: Terminals, disp: Child, runs: int) -> list[Row]:
    client = lab.client(lab.settings.registry, timeout_s=10.0)
    ours: list[float] = []
    bare: list[float] = []
    warm = 2
    phases: dict[str, list[float]] = {}

    def one_ours(seed: int) -> float:
        rid = terms.run_to_completion(client, retry_config("retry", seed), 30, disp)
        path = os.path.join(lab.settings.runs_dir, rid)
        exit_mark, mark = read_exit_mark(path), read_mark(path)
        got = _phases(path, terms.history.get(rid, []), exit_mark, mark)
        if seed >= warm and got:
            for name, value in got.items():
                phases.setdefault(name, []).append(value)
        return mark - exit_mark

    def one_bare(seed: int) -> float:
        config = retry_config("bare-retry", seed)
        first = bare_command(lab, f"bare-rt-{seed}", config)
        second = bare_command(lab, f"bare-rt-{seed}", config, attempt=2)
        _, proc = bare_start(*first)
        if wait_exit(proc, 30) != EXIT_CODE:  # then the next one at once
            raise RuntimeError(f"bare test-mark attempt 1 exited {proc.returncode}")
        _, proc = bare_start(*second)
        if proc.wait(timeout=30) != 0:
            raise RuntimeError(f"bare test-mark attempt 2 exited {proc.returncode}")
        return read_mark(first[0]) - read_exit_mark(first[0])

    t0 = time.perf_counter()
    for i in range(warm + runs):
        pair = (one_ours, one_bare) if i % 2 == 0 else (one_bare, one_ours)
        got = {fn: fn(i) for fn in pair}
        if i >= warm:
            ours.append(got[one_ours] * 1000)
            bare.append(got[one_bare] * 1000)
    took = time.perf_counter() - t0
    o50, b50 = statistics.median(ours), statistics.median(bare)
    o90, b90 = quantile(ours, 0.9), quantile(bare, 0.9)
    steps = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in phases.items())
    note = (f"{runs} runs each, one at a time, alternating ({took:.0f} s); attempt 1's "
            f"exit (exit-mark, then os._exit with a retry.exit_codes code) -> first line "
            f"of attempt 2's main vs a bare parent: pidfd + waitpid, Popen the same "
            f"command at once -> same; ours, medians in ms: {steps}")
    return [
        Row("dispatcher: attempt end -> next attempt's worker start, p50", "ms", o50, b50,
            f"<= bare + {LATENCY_BUDGET_MS:g} ms", o50 - b50 <= LATENCY_BUDGET_MS,
            f"{o50 - b50:+.1f} ms; {note}"),
        Row("dispatcher: attempt end -> next attempt's worker start, p90", "ms", o90, b90,
            "-", None,
            f"{o90 - b90:+.1f} ms; max ours {max(ours):.1f} / bare {max(bare):.1f} ms"),
    ]
