"""Test workers for a run's resources (docs/WORKERS.md, "Resources").

- test-resources: records in ``resources.json`` the thread-count variables it was given,
  its CPU affinity, the affinity seen by each of ``threads`` threads (default 2) while
  they spin, and that of a child process; then heartbeats until stopped or ``seconds``
  (default 0: it exits 0 at once).
- test-memory: allocates ``mb`` MiB (default 200) in a bytearray, touching one byte per
  page so that every page is resident, records ``allocated`` in ``memory.json`` and
  holds it for ``hold_s`` seconds (default 30) before it exits 0. Over a smaller
  memory limit it never gets to exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def _params() -> dict:
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("hyperparameters", {})


def _write(name: str, data: dict) -> None:
    path = os.path.join(os.environ["TRAINER_RUN_DIR"], name)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(path + ".tmp", path)   # a reader sees all of it or nothing


def _spin(out: list, index: int, stop: threading.Event, seen: threading.Barrier) -> None:
    out[index] = sorted(os.sched_getaffinity(0))   # this thread's own mask
    seen.wait(30)
    while not stop.is_set():
        sum(range(1000))


def report() -> int:
    from worker.sdk import Run
    p = _params()
    with Run.from_env() as run:
        stop = threading.Event()
        seen: list = [None] * int(p.get("threads", 2))
        all_seen = threading.Barrier(len(seen) + 1)   # each thread has read its mask
        threads = [threading.Thread(target=_spin, args=(seen, i, stop, all_seen), daemon=True)
                   for i in range(len(seen))]
        for t in threads:
            t.start()
        child = subprocess.run(
            [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
            capture_output=True, text=True, check=True).stdout.strip()
        all_seen.wait(30)
        _write("resources.json", {
            "env": {v: os.environ.get(v) for v in THREAD_VARS},
            "affinity": sorted(os.sched_getaffinity(0)), "threads": seen,
            "child": json.loads(child), "cpu_count": os.cpu_count(), "pid": os.getpid()})
        stop.set()
        run.progress(step=0)
        run.wait_for_stop(float(p.get("seconds", 0)))  # (the SDK's thread heartbeats)
    return 0


def allocate() -> int:
    p = _params()
    size = int(p.get("mb", 200)) * 1024 * 1024
    block = bytearray(size)            # zero pages: not resident until touched
    for offset in range(0, size, 4096):
        block[offset] = 1
    _write("memory.json", {"allocated": size, "pid": os.getpid()})
    # Held until the limit's kill, a SIGTERM, or hold_s.
    signal.sigtimedwait([signal.SIGTERM], float(p.get("hold_s", 30)))
    return 0
