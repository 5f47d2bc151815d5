"""The dispatcher: start latency, throughput of short runs, and the cost of supervising
many heartbeating runs; each against a raw baseline measured in the same run.

1. Submit -> worker start: the ``submit`` RPC to the registry until the first line of
   the worker's main (the ``test-mark`` test worker records ``time.time()``), one run
   at a time, vs a bare ``subprocess.Popen`` of the exact command line and environment
   the dispatcher uses (``services.dispatcher.launch.prepare``), Popen -> first line.
   Target: median at most 15 ms above the bare spawn.
   1b (bench/dispatcher_retry.py): an attempt's end -> the next attempt's first line of
   main (a retried exit code), vs a bare parent that waits for the exit and Popens the
   same command at once. Same target.
2. 200 trivial runs (``test-mark``), at most 2 at a time (TRAINER_CPU_SLOTS=2): from the
   first submit to the last RunCompleted (its commit time), all submitted at once,
   vs the same 200 commands run 2 at a time with plain subprocess. Target: <= 1.2x.
3. 1,000 runs heartbeating at 1 Hz: a dispatcher built like ``services.dispatcher``'s
   ``build()`` (real bus, registry, sockets and loop) holding 1,000 started runs whose
   process group is that of one real ``sleep`` (a false timeout would signal it);
   a publisher sends ``hb.<run_id>`` for every run once a second, spread evenly. The
   dispatcher process's CPU (utime+stime of /proc/<pid>/stat, all threads) over the
   window vs a bare pyzmq SUB + msgpack.unpackb process receiving the same messages.
   Targets: < 10 % of one core, 0 false timeouts.

All services run as real processes in a temporary TRAINER_HOME (TRAINER_CPU_SLOTS=2,
TRAINER_STATUS_INTERVAL=0.5); completion is followed through bus.catchup.EventFollower.

Benchmark 3 and its child roles live in bench/dispatcher_heartbeats.py. The
notes of 1, 1b and 2 split our time into phases (event commit times, the shim's
worker.json/exit.json, the worker's mark) and give the services' CPU per run.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import time
from typing import Any

import zmq

from bench.common import Child, Lab
from bench.table import Row
from core.rundir import STDERR_FILE, STDOUT_FILE, WORKER_FILE

SERVICE_ENV = {"TRAINER_CPU_SLOTS": "2", "TRAINER_STATUS_INTERVAL": "0.5"}
TERMINAL = {"RunCompleted", "RunFailed", "RunCancelled"}
LATENCY_BUDGET_MS = 15.0
MAKESPAN_RATIO = 1.2
CPU_TARGET_PCT = 10.0
HB_TIMEOUT_S = 5.0


def mark_config(tag: str, seed: int) -> dict[str, Any]:
    return {"name": f"bench-{tag}-{seed}", "worker": "test-mark", "env": "CartPole-v1",
            "seed": seed, "steps": 1, "resources": {"gpus": 0, "cpu_slots": 1},
            "tags": ["bench"]}


# --- the parent's helpers ------------------------------------------------------------

class Terminals:
    """The runs' events (commit times; the terminal one apart), followed gap-free from
    the bus with EventFollower."""

    def __init__(self, lab: Lab) -> None:
        from bus.badframes import BadFrameLog
        from bus.catchup import EventFollower, registry_fetch
        from runtime.logs import service_logger
        from bus.pubsub import Subscriber
        sock = lab.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.connect(lab.settings.bus_sub)
        client = lab.client(lab.settings.registry, timeout_s=10.0, retries=2)
        self.follower = EventFollower(Subscriber(sock, BadFrameLog(service_logger("bench"))),
                                      registry_fetch(client))
        self.done: dict[str, tuple[str, float]] = {}   # run -> (event type, commit ts)
        self.events: dict[str, dict[str, float]] = {}  # run -> event type -> commit ts
        self.history: dict[str, list[tuple[str, float]]] = {}  # run -> every (type, ts)

    def wait(self, run_ids: list[str], timeout: float, why: Child) -> None:
        deadline = time.monotonic() + timeout
        missing = [r for r in run_ids if r not in self.done]
        while missing:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{len(missing)} run(s) not finished after {timeout:g}s "
                                   f"(e.g. {missing[0]}): {why.log_tail(800)}")
            for env in self.follower.poll(min(left, 0.5)):
                run_id = str(env.payload.get("run_id"))
                self.events.setdefault(run_id, {}).setdefault(env.type, env.ts)
                self.history.setdefault(run_id, []).append((env.type, env.ts))
                if env.type in TERMINAL:
                    self.done[run_id] = (env.type, env.ts)
            missing = [r for r in missing if r not in self.done]

    def run_to_completion(self, client: Any, config: dict[str, Any], timeout: float,
                          why: Child) -> str:
        """Submit ``config``, wait for its end, and return its run id; a run that did
        not complete is an error (a benchmark measures only completed runs)."""
        rid = client.call("submit", {"config": config,
                                     "submitted_by": "bench"})["run"]["run_id"]
        self.wait([rid], timeout, why)
        if self.done[rid][0] != "RunCompleted":
            raise RuntimeError(f"run {rid} ended {self.done[rid][0]}")
        return rid


def read_mark(run_dir: str) -> float:
    with open(os.path.join(run_dir, "mark"), encoding="ascii") as fh:
        return float(fh.read())


def bare_command(lab: Lab, name: str, config: dict[str, Any],
                 attempt: int = 1) -> tuple[str, list[str], dict[str, str]]:
    """The dispatcher's own recipe (launch.prepare: run directory, config.json, argv,
    environment), with the environment the dispatcher process has (the Lab's)."""
    from core.runconfig import RunConfig
    from services.dispatcher import launch
    run = {"run_id": name, "config": RunConfig.from_map(config).to_map()}
    path, argv, env = launch.prepare(lab.settings, run, [], attempt=attempt)
    base = {k: v for k, v in lab.env.items() if not k.startswith("TRAINER_")}
    ours = {k: v for k, v in env.items()
            if k.startswith("TRAINER_") or k in ("CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED")}
    return path, argv, {**base, **ours}


def bare_start(path: str, argv: list[str],
               env: dict[str, str]) -> tuple[float, subprocess.Popen]:
    """Popen as the shim does it (own process group, cwd = run dir, logs to files)."""
    with open(os.path.join(path, STDOUT_FILE), "ab") as out, \
            open(os.path.join(path, STDERR_FILE), "ab") as err:
        t0 = time.time()
        proc = subprocess.Popen(argv, env=env, cwd=path, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, process_group=0, close_fds=True)
    return t0, proc


def _fork_server(dispatcher: int) -> int:
    """The dispatcher's shim fork server (its CPU is the dispatcher's work too)."""
    from services.dispatcher.forkserver import fork_server_of
    pid = fork_server_of(dispatcher)
    if pid is None:
        raise RuntimeError("the dispatcher has no fork server")
    return pid


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU of the reaped children of ``pid`` and of their reaped children."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=100, method="inclusive")[int(q * 100) - 1]


# --- 1 and 2: the real services --------------------------------------------------------

def _latency(lab: Lab, terms: Terminals, disp: Child, runs: int) -> list[Row]:
    client = lab.client(lab.settings.registry, timeout_s=10.0)
    ours: list[float] = []
    bare: list[float] = []
    warm = 2
    phases: dict[str, list[float]] = {}

    def one_ours(seed: int) -> float:
        from services.dispatcher.spawner import read_json
        t0 = time.time()
        rid = terms.run_to_completion(client, mark_config("lat", seed), 30, disp)
        path = os.path.join(lab.settings.runs_dir, rid)
        mark, ev = read_mark(path), terms.events[rid]
        shim = (read_json(os.path.join(path, WORKER_FILE)) or {}).get("started_at")
        if seed >= warm and shim and "GpusClaimed" in ev and "RunSubmitted" in ev:
            for name, value in (("submit->RunSubmitted", ev["RunSubmitted"] - t0),
                                ("->GpusClaimed", ev["GpusClaimed"] - ev["RunSubmitted"]),
                                ("->shim", shim - ev["GpusClaimed"]),
                                ("->main", mark - shim)):
                phases.setdefault(name, []).append(value * 1000)
        return mark - t0

    def one_bare(seed: int) -> float:
        path, argv, env = bare_command(lab, f"bare-lat-{seed}", mark_config("bare", seed))
        t0, proc = bare_start(path, argv, env)
        if proc.wait(timeout=30) != 0:
            raise RuntimeError(f"bare test-mark exited {proc.returncode}")
        return read_mark(path) - t0

    for i in range(warm + runs):
        pair = (one_ours, one_bare) if i % 2 == 0 else (one_bare, one_ours)
        got = {fn: fn(i) for fn in pair}
        if i >= warm:
            ours.append(got[one_ours] * 1000)
            bare.append(got[one_bare] * 1000)
    o50, b50 = statistics.median(ours), statistics.median(bare)
    o90, b90 = quantile(ours, 0.9), quantile(bare, 0.9)
    steps = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in phases.items())
    note = (f"{runs} runs each, one at a time, alternating; submit RPC -> first line of "
            f"test-mark's main vs Popen -> same; ours, medians in ms: {steps}")
    return [
        Row("dispatcher: submit -> worker start, p50", "ms", o50, b50,
            f"<= bare + {LATENCY_BUDGET_MS:g} ms", o50 - b50 <= LATENCY_BUDGET_MS,
            f"{o50 - b50:+.1f} ms; {note}"),
        Row("dispatcher: submit -> worker start, p90", "ms", o90, b90, "-", None,
            f"{o90 - b90:+.1f} ms; max ours {max(ours):.1f} / bare {max(bare):.1f} ms"),
    ]


def _makespan_bare(lab: Lab, count: int, rep: int) -> tuple[float, list[float]]:
    """(makespan, each run's Popen -> first line of main)."""
    cmds = [bare_command(lab, f"bare-ms{rep}-{i}", mark_config(f"bare-ms{rep}", i))
            for i in range(count)]
    running: dict[int, tuple[subprocess.Popen, int]] = {}   # pidfd -> (proc, index)
    started: dict[int, float] = {}
    nxt = 0
    t_first = time.time()
    try:
        while nxt < count or running:
            while nxt < count and len(running) < 2:
                started[nxt], proc = bare_start(*cmds[nxt])
                running[os.pidfd_open(proc.pid)] = (proc, nxt)
                nxt += 1
            ready, _, _ = select.select(list(running), [], [], 30)
            if not ready:
                raise RuntimeError("a bare test-mark did not exit within 30 s")
            for fd in ready:
                proc, index = running.pop(fd)
                os.close(fd)
                if proc.wait() != 0:
                    raise RuntimeError(f"bare test-mark {index} exited {proc.returncode}")
        span = time.time() - t_first
    finally:
        for fd, (proc, _) in running.items():
            os.close(fd)
            proc.kill()
            proc.wait()
    return span, [read_mark(cmds[i][0]) - started[i] for i in range(count)]


def _makespan_ours(lab: Lab, terms: Terminals, disp: Child, count: int, rep: int,
                   services: dict[str, int]) -> tuple[float, int, dict[str, float]]:
    """(makespan, runs not COMPLETED, phases in ms (medians) and CPU ms per run)."""
    from core.rundir import EXIT_FILE
    from services.dispatcher.spawner import read_json
    client = lab.client(lab.settings.registry, timeout_s=10.0)
    cpu0 = {name: cpu_seconds(pid) for name, pid in services.items()}
    forks = services.get("forkserver")
    shims0 = children_cpu_seconds(forks) if forks else 0.0
    t_first = time.time()
    ids = [client.call("submit", {"config": mark_config(f"ms{rep}", i),
                                  "submitted_by": "bench"})["run"]["run_id"]
           for i in range(count)]
    terms.wait(ids, 30 + count, disp)
    span = max(terms.done[r][1] for r in ids) - t_first
    info = {f"{name} CPU": (cpu_seconds(pid) - cpu0[name]) * 1000 / count
            for name, pid in services.items()}
    if forks:  # the shims: the fork server's children, less the workers they reaped
        workers = 0.0
        for r in ids:
            record = read_json(os.path.join(lab.settings.runs_dir, r, EXIT_FILE)) or {}
            workers += float(record.get("utime_s", 0)) + float(record.get("stime_s", 0))
        info["shims CPU"] = (children_cpu_seconds(forks) - shims0 - workers) * 1000 / count
    failed = sum(1 for r in ids if terms.done[r][0] != "RunCompleted")
    if failed:
        return span, failed, info
    phases: dict[str, list[float]] = {}
    claims, dones = [], []
    for r in ids:
        path = os.path.join(lab.settings.runs_dir, r)
        worker, exit_ = read_json(os.path.join(path, WORKER_FILE)), \
            read_json(os.path.join(path, EXIT_FILE))
        ev = terms.events[r]
        if worker is None or exit_ is None or "GpusClaimed" not in ev:
            continue
        mark = read_mark(path)
        for name, value in (("claim->shim", worker["started_at"] - ev["GpusClaimed"]),
                            ("shim->main", mark - worker["started_at"]),
                            ("exit->RunCompleted", ev["RunCompleted"] - exit_["ended_at"])):
            phases.setdefault(name, []).append(value * 1000)
        claims.append(ev["GpusClaimed"])
        dones.append(ev["RunCompleted"])
    claims.sort()
    dones.sort()
    # a slot is freed by a completion: the k-th claim (k >= 2) follows the (k-2)-th one
    phases["RunCompleted->next claim"] = [(claims[k] - dones[k - 2]) * 1000
                                          for k in range(2, len(claims))
                                          if claims[k] >= dones[k - 2]]
    info.update({name: statistics.median(v) for name, v in phases.items() if v})
    return span, 0, info


def _services(quick: bool) -> list[Row]:
    from bench.dispatcher_retry import retry_latency
    runs = 10 if quick else 50
    count, repeats = (40, 1) if quick else (200, 3)
    rows: list[Row] = []
    with Lab("tb-dsp-", env=SERVICE_ENV) as lab:
        bus = lab.start_bus()
        registry, _ = lab.start_registry()
        terms = Terminals(lab)
        disp = lab.module("services.dispatcher")
        rows += _latency(lab, terms, disp, runs)
        rows += retry_latency(lab, terms, disp, runs)
        services = {"dispatcher": disp.pid, "forkserver": _fork_server(disp.pid),
                    "registry": registry.pid, "bus": bus.pid}
        ours, bare, failed = [], [], 0
        infos: list[dict[str, float]] = []
        bare_start_ms: list[float] = []
        for rep in range(repeats):
            for which in (("bare", "ours") if rep % 2 == 0 else ("ours", "bare")):
                if which == "bare":
                    span, starts = _makespan_bare(lab, count, rep)
                    bare.append(span)
                    bare_start_ms += [x * 1000 for x in starts]
                else:
                    span, bad, info = _makespan_ours(lab, terms, disp, count, rep, services)
                    ours.append(span)
                    failed += bad
                    infos.append(info)
        for child in (registry, disp):
            if not child.alive():
                raise RuntimeError(f"{child.argv[2:]} died: {child.log_tail()}")
    o, b = statistics.median(ours), statistics.median(bare)
    keys = [k for k in infos[0] if all(k in i for i in infos)]
    info = {k: statistics.median(i[k] for i in infos) for k in keys}
    cpu = ", ".join(f"{k.split()[0]} {v:.1f}" for k, v in info.items() if k.endswith("CPU"))
    phases = ", ".join(f"{k} {v:.1f}" for k, v in info.items() if not k.endswith("CPU"))
    rows.append(Row(f"dispatcher: {count} test-mark runs, 2 at a time, makespan", "s", o, b,
                    f"<= {MAKESPAN_RATIO:g}x plain subprocess",
                    o <= MAKESPAN_RATIO * b and not failed,
                    f"median of {repeats} (each pair: "
                    f"{', '.join(f'{x / y:.2f}x' for x, y in zip(ours, bare))}); "
                    f"first submit -> last RunCompleted vs plain "
                    f"Popen 2 at a time ({o / count * 1000:.1f} vs {b / count * 1000:.1f} "
                    f"ms/run); medians per run, ms: {phases}, bare Popen->main "
                    f"{statistics.median(bare_start_ms):.1f}; CPU ms per run: {cpu}"
                    + (f"; {failed} NOT COMPLETED" if failed else "")))
    return rows


# --- the benchmark -------------------------------------------------------------------

def run(quick: bool = False) -> list[Row]:
    from bench.dispatcher_heartbeats import heartbeats
    return _services(quick) + heartbeats(quick)
