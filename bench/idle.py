"""The whole stack idle: CPU and memory of supervisord and every service (and the fork
server) over a quiet window, with no run, beside a bare process that blocks in
``zmq.Poller.poll`` in the same run (the raw floor of an idle Python daemon) and
task-spooler's published figures (0 % CPU, 0.8 MB).

``python -m bench idle`` starts the stack with ``trainer up`` in a temporary
TRAINER_HOME, waits until GetHealth says every service is up, lets it settle, then
reads each process's CPU time from /proc at the start and the end of the window.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

from bench.common import PY, REPO

WINDOW_S = 60.0
QUICK_WINDOW_S = 15.0
SETTLE_S = 5.0
TARGET_CPU_PCT = 0.5
TARGET_RSS_MB = 200.0
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")

BARE = """
import sys, zmq
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
sub.connect(sys.argv[1])
poller = zmq.Poller()
poller.register(sub, zmq.POLLIN)
print("ready", flush=True)
while True:
    poller.poll(1000)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(name))
    return tree


def descendants(root: int) -> list[int]:
    """root and every process below it."""
    tree, out, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += tree.get(pid, [])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (not its children), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
        return int(fh.read().split()[1]) * _PAGE


def process_name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "?"
    if "-m" in argv and argv.index("-m") + 1 < len(argv):
        return argv[argv.index("-m") + 1].rsplit(".", 1)[-1]
    return os.path.basename(argv[1] if len(argv) > 1 and argv[0].endswith("python")
                            else argv[0]) if argv else "?"


def sample(pids: list[int], window_s: float) -> dict[int, dict[str, Any]]:
    """CPU % of one core over the window, and RSS at its end, for each pid."""
    start = {}
    for pid in pids:
        try:
            start[pid] = cpu_seconds(pid)
        except OSError:
            pass
    t0 = time.monotonic()
    time.sleep(window_s)  # the quiet window itself: what is measured is doing nothing
    elapsed = time.monotonic() - t0
    out = {}
    for pid, before in start.items():
        try:
            out[pid] = {"name": process_name(pid),
                        "cpu_pct": 100.0 * (cpu_seconds(pid) - before) / elapsed,
                        "rss_mb": rss_bytes(pid) / 1e6}
        except OSError:
            continue
    return out


def _trainer(env: dict[str, str], *args: str, timeout: float = 120) -> None:
    proc = subprocess.run([PY, "-m", "trainer.cli.main", *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"trainer {' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stdout[-500:]} {proc.stderr[-500:]}")


def measure_stack(window_s: float) -> tuple[dict[int, dict[str, Any]], float]:
    home = tempfile.mkdtemp(prefix="tb-idle-", dir="/tmp")
    env = {**os.environ, "TRAINER_HOME": home,
           "TRAINER_GATEWAY_ADDR": f"127.0.0.1:{_free_port()}"}
    _trainer(env, "up")
    try:
        with open(os.path.join(home, "supervisord.pid"), encoding="ascii") as fh:
            root = int(fh.read().strip())
        time.sleep(SETTLE_S)  # start-up work (imports, first GPU read) is not idle
        t0 = time.monotonic()
        stats = sample(descendants(root), window_s)
        return stats, time.monotonic() - t0
    finally:
        _trainer(env, "down")
        subprocess.run(["rm", "-rf", home], check=False)


def measure_bare(window_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tb-bare-", dir="/tmp") as tmp:
        proc = subprocess.Popen([PY, "-c", BARE, f"ipc://{tmp}/nothing"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            proc.stdout.readline()
            time.sleep(SETTLE_S)
            return sample([proc.pid], window_s)[proc.pid]
        finally:
            proc.kill()
            proc.wait()


def run(quick: bool = False) -> list[dict[str, Any]]:
    window = QUICK_WINDOW_S if quick else WINDOW_S
    stats, _ = measure_stack(window)
    bare = measure_bare(window)
    cpu = sum(s["cpu_pct"] for s in stats.values())
    rss = sum(s["rss_mb"] for s in stats.values())
    per = ", ".join(f"{s['name']} {s['cpu_pct']:.2f}" for s in
                    sorted(stats.values(), key=lambda s: -s["cpu_pct"]))
    return [
        {"name": f"idle stack, {len(stats)} processes, {window:.0f}s: CPU", "unit": "% core",
         "ours": cpu, "baseline": bare["cpu_pct"], "target": f"< {TARGET_CPU_PCT} % core",
         "ok": cpu < TARGET_CPU_PCT,
         "notes": f"baseline: one bare pyzmq process blocked in poll; task-spooler "
                  f"(published) 0 %; per process: {per}"},
        {"name": "idle stack: RSS, all processes", "unit": "MB", "ours": rss,
         "baseline": bare["rss_mb"], "target": f"< {TARGET_RSS_MB:.0f} MB",
         "ok": rss < TARGET_RSS_MB,
         "notes": "sum of RSS (shared pages counted in each); task-spooler (published) "
                  "0.8 MB; " + ", ".join(f"{s['name']} {s['rss_mb']:.0f}"
                                         for s in stats.values())},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
