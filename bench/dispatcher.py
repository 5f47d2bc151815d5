"""The dispatcher: start latency, throughput of short runs, and the cost of supervising
many heartbeating runs; each against a raw baseline measured in the same run.

1. Submit -> worker start: the ``submit`` RPC to the registry until the first line of
   the worker's main (the ``test-mark`` test worker records ``time.time()``), one run
   at a time, vs a bare ``subprocess.Popen`` of the exact command line and environment
   the dispatcher uses (``services.dispatcher.launch.prepare``), Popen -> first line.
   Target: median at most 15 ms above the bare spawn.
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

Child roles (run by the benchmark itself):
    python -m bench.dispatcher hbdisp COUNT PGID      the dispatcher of benchmark 3
    python -m bench.dispatcher hbsub                  its raw baseline
    python -m bench.dispatcher hbpub COUNT SECONDS    the heartbeat publisher
Set BENCH_DISPATCHER_PROFILE=PATH to write a cProfile of the hbdisp loop to PATH. The
notes of 1 and 2 split our time into phases (event commit times, the shim's
worker.json/exit.json, the worker's mark) and give the services' CPU per run.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import statistics
import subprocess
import sys
import time
from typing import Any, Optional

import zmq

from bench.common import Child, Lab, _die_with_parent
from bench.table import Row

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
        from bus.logs import service_logger
        from bus.pubsub import Subscriber
        sock = lab.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.connect(lab.settings.bus_sub)
        client = lab.client(lab.settings.registry, timeout_s=10.0, retries=2)
        self.follower = EventFollower(Subscriber(sock, BadFrameLog(service_logger("bench"))),
                                      registry_fetch(client))
        self.done: dict[str, tuple[str, float]] = {}   # run -> (event type, commit ts)
        self.events: dict[str, dict[str, float]] = {}  # run -> event type -> commit ts

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
                if env.type in TERMINAL:
                    self.done[run_id] = (env.type, env.ts)
            missing = [r for r in missing if r not in self.done]


def read_mark(run_dir: str) -> float:
    with open(os.path.join(run_dir, "mark"), encoding="ascii") as fh:
        return float(fh.read())


def bare_command(lab: Lab, name: str, config: dict[str, Any]) -> tuple[str, list[str],
                                                                        dict[str, str]]:
    """The dispatcher's own recipe (launch.prepare: run directory, config.json, argv,
    environment), with the environment the dispatcher process has (the Lab's)."""
    from core.runconfig import RunConfig
    from services.dispatcher import launch
    run = {"run_id": name, "config": RunConfig.from_map(config).to_map()}
    path, argv, env = launch.prepare(lab.settings, run, [])
    base = {k: v for k, v in lab.env.items() if not k.startswith("TRAINER_")}
    ours = {k: v for k, v in env.items()
            if k.startswith("TRAINER_") or k in ("CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED")}
    return path, argv, {**base, **ours}


def bare_start(path: str, argv: list[str],
               env: dict[str, str]) -> tuple[float, subprocess.Popen]:
    """Popen as the shim does it (own process group, cwd = run dir, logs to files)."""
    with open(os.path.join(path, "stdout.log"), "ab") as out, \
            open(os.path.join(path, "stderr.log"), "ab") as err:
        t0 = time.time()
        proc = subprocess.Popen(argv, env=env, cwd=path, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, process_group=0, close_fds=True)
    return t0, proc


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
        from services.dispatcher.spawner import WORKER_FILE, read_json
        t0 = time.time()
        rid = client.call("submit", {"config": mark_config("lat", seed),
                                     "submitted_by": "bench"})["run"]["run_id"]
        terms.wait([rid], 30, disp)
        if terms.done[rid][0] != "RunCompleted":
            raise RuntimeError(f"run {rid} ended {terms.done[rid][0]}")
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
                   services: dict[str, Child]) -> tuple[float, int, dict[str, float]]:
    """(makespan, runs not COMPLETED, phases in ms (medians) and CPU ms per run)."""
    from services.dispatcher.spawner import EXIT_FILE, WORKER_FILE, read_json
    client = lab.client(lab.settings.registry, timeout_s=10.0)
    cpu0 = {name: cpu_seconds(c.pid) for name, c in services.items()}
    t_first = time.time()
    ids = [client.call("submit", {"config": mark_config(f"ms{rep}", i),
                                  "submitted_by": "bench"})["run"]["run_id"]
           for i in range(count)]
    terms.wait(ids, 30 + count, disp)
    span = max(terms.done[r][1] for r in ids) - t_first
    info = {f"{name} CPU": (cpu_seconds(c.pid) - cpu0[name]) * 1000 / count
            for name, c in services.items()}
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
    runs = 10 if quick else 50
    count, repeats = (40, 1) if quick else (200, 3)
    rows: list[Row] = []
    with Lab("tb-dsp-", env=SERVICE_ENV) as lab:
        bus = lab.start_bus()
        registry, _ = lab.start_registry()
        terms = Terminals(lab)
        disp = lab.module("services.dispatcher")
        rows += _latency(lab, terms, disp, runs)
        services = {"dispatcher": disp, "registry": registry, "bus": bus}
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
                    f"median of {repeats}; first submit -> last RunCompleted vs plain "
                    f"Popen 2 at a time ({o / count * 1000:.1f} vs {b / count * 1000:.1f} "
                    f"ms/run); medians per run, ms: {phases}, bare Popen->main "
                    f"{statistics.median(bare_start_ms):.1f}; CPU ms per run: {cpu}"
                    + (f"; {failed} NOT COMPLETED" if failed else "")))
    return rows


# --- 3: 1,000 heartbeating runs ------------------------------------------------------

def run_ids(count: int) -> list[str]:
    return [f"hb{i:010d}" for i in range(count)]


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def recv_line(child: Child, timeout: float) -> Any:
    ready, _, _ = select.select([child.stdout_fd], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{child.argv[2:]} said nothing for {timeout:g}s: "
                           f"{child.log_tail(800)}")
    return child.recv()


def _heartbeats(quick: bool) -> list[Row]:
    count = 1000
    seconds = 6 if quick else 15
    rows: list[Row] = []
    sleeper: Optional[subprocess.Popen] = None
    with Lab("tb-dhb-", env=SERVICE_ENV) as lab:
        try:
            lab.start_bus()
            lab.start_registry()
            sleeper = subprocess.Popen(["sleep", "3600"], process_group=0,
                                       preexec_fn=_die_with_parent,
                                       stdin=subprocess.DEVNULL)
            disp = lab.module("bench.dispatcher", "hbdisp", str(count), str(sleeper.pid),
                              control=True)
            raw = lab.module("bench.dispatcher", "hbsub", control=True)
            ready = recv_line(disp, 120)
            recv_line(raw, 60)
            pub = lab.module("bench.dispatcher", "hbpub", str(count), str(seconds),
                             control=True)
            recv_line(pub, 60)                       # the bus carries its probe: sending
            recv_line(pub, 30)                       # one second in: the window opens
            t0 = time.monotonic()
            c0 = {c.pid: cpu_seconds(c.pid) for c in (disp, raw, pub)}
            sent = recv_line(pub, seconds + 60)      # done
            wall = time.monotonic() - t0
            cpu = {c.pid: (cpu_seconds(c.pid) - c0[c.pid]) / wall * 100
                   for c in (disp, raw, pub)}
            for c in (disp, raw):
                c.proc.send_signal(signal.SIGTERM)
            d_stats = recv_line(disp, 30)
            r_stats = recv_line(raw, 30)
            sleeper_alive = sleeper.poll() is None
        finally:
            if sleeper is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(sleeper.pid, signal.SIGKILL)
                sleeper.wait()
    kills = int(d_stats["kills"])
    ok = kills == 0 and sleeper_alive
    ours, base = cpu[disp.pid], cpu[raw.pid]
    steps_per_s = d_stats["steps"] / d_stats["wall"]
    rows.append(Row(f"dispatcher: {count:,} runs heartbeating at 1 Hz, CPU", "% core", ours,
                    base, f"< {CPU_TARGET_PCT:g} % of one core", ours < CPU_TARGET_PCT,
                    f"{wall:.1f}s window; {sent['sent']} beats sent, bare SUB got "
                    f"{r_stats['received']}; dispatcher {steps_per_s:.0f} loop steps/s, "
                    f"oldest beat {d_stats['max_beat_age']:.2f}s old at the end; publisher "
                    f"{cpu[pub.pid]:.0f} % core; setup {ready['setup_s']:.1f}s"))
    alive = "alive" if sleeper_alive else "DEAD (it was signalled)"
    rows.append(Row(f"dispatcher: {count:,} runs heartbeating, false timeouts", "", kills,
                    None, "0", ok, f"heartbeat_timeout_s {HB_TIMEOUT_S:g}, startup_grace_s "
                    f"0; the process group they point at is {alive}"))
    return rows


# --- children of benchmark 3 -----------------------------------------------------------

def _flags() -> dict[str, bool]:
    flags = {"stop": False}

    def stop(_signum: int, _frame: object) -> None:
        flags["stop"] = True
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    return flags


def _say(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def hbdisp_main(count: str, pgid: str) -> None:
    """A dispatcher built by services.dispatcher's build(), plus ``count`` started runs
    (watch armed: heartbeat_timeout_s 5, startup_grace_s 0) whose process group is
    ``pgid``; runs its loop as run_service does until SIGTERM, then prints its stats."""
    from bus import logs
    from core.settings import Settings
    from services.dispatcher import launch
    from services.dispatcher.__main__ import build
    from services.dispatcher.active import ActiveRun
    from services.dispatcher.logfollow import RunLogs
    t_setup = time.perf_counter()
    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level)
    log = logs.service_logger("dispatcher")
    ctx = zmq.Context()
    svc = build(settings, ctx, log)
    flags = _flags()
    config = {"worker": "test-mark", "heartbeat_interval_s": 1.0,
              "heartbeat_timeout_s": HB_TIMEOUT_S, "startup_grace_s": 0.0,
              "cancel_grace_s": 1.0}
    now = svc.clock.monotonic()
    for run_id in run_ids(int(count)):
        path = launch.run_dir(settings, run_id)
        os.makedirs(path, exist_ok=True)
        for name in ("stdout.log", "stderr.log"):
            open(os.path.join(path, name), "ab").close()
        run = ActiveRun(run_id, path, dict(config), [], 1,
                        RunLogs(run_id, path, settings.log_rate), recorded_started=True,
                        pgid=int(pgid))
        run.watch = run.new_watch(now)
        svc.active[run_id] = run
    profile_path = os.environ.get("BENCH_DISPATCHER_PROFILE")
    profiler = None
    if profile_path:
        import cProfile
        profiler = cProfile.Profile()
    _say({"ready": True, "setup_s": time.perf_counter() - t_setup})
    steps, t0 = 0, time.monotonic()
    try:
        if profiler is not None:
            profiler.enable()
        while not flags["stop"]:
            svc.step(0.2)
            steps += 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        end = svc.clock.monotonic()
        ages = [end - r.watch.last_beat if r.watch and r.watch.last_beat is not None
                else float("inf") for r in svc.active.values()]
        _say({"kills": svc.stats["kills"], "steps": steps, "wall": time.monotonic() - t0,
              "max_beat_age": max(ages) if ages else 0.0})
        svc.close()
        ctx.destroy(linger=0)


def hbsub_main() -> None:
    """The raw baseline: a bare SUB on ``hb.`` decoding each message with msgpack."""
    import msgpack

    from core.settings import Settings
    settings = Settings.from_env(os.environ)
    flags = _flags()
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 100_000)
    sub.setsockopt(zmq.RCVTIMEO, 200)
    sub.connect(settings.bus_sub)
    sub.setsockopt(zmq.SUBSCRIBE, b"hb.")
    _say({"ready": True})
    received = 0
    unpackb = msgpack.unpackb
    while not flags["stop"]:
        try:
            frames = sub.recv_multipart()
        except zmq.Again:
            continue
        unpackb(frames[1], raw=False)
        received += 1
    _say({"received": received})
    sub.close(linger=0)
    ctx.destroy(linger=0)


def hbpub_main(count: str, seconds: str) -> None:
    """Heartbeats for ``count`` runs at 1 Hz each, evenly spread, for ``seconds``.
    Prints a line once the bus carries its messages, one a second into the sending
    (the measured window opens) and one at the end."""
    from bus.codec import MessageType
    from bus.pubsub import Publisher
    from core.settings import Settings
    settings = Settings.from_env(os.environ)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(settings.bus_pub)
    probe = ctx.socket(zmq.SUB)
    probe.setsockopt(zmq.LINGER, 0)
    probe.connect(settings.bus_sub)
    probe.setsockopt(zmq.SUBSCRIBE, b"hb.probe")
    pub = Publisher(sock, "bench-hb")
    hb = MessageType.HEARTBEAT.value
    deadline = time.monotonic() + 30
    while True:   # until our own probe comes back through the broker
        pub.publish("hb.probe", hb, {"run_id": "probe", "beat": 0, "step": 0})
        if probe.poll(50):
            break
        if time.monotonic() > deadline:
            raise RuntimeError("the bus never carried the probe")
    probe.close(linger=0)
    _say({"sending": True})
    ids = run_ids(int(count))
    topics = [f"hb.{r}" for r in ids]
    n, total = len(ids), len(ids) * int(seconds)
    rate = float(n)
    t0 = time.perf_counter()
    warm_at = n   # one second of beats
    for k in range(total):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        if delay > 0.0005:
            time.sleep(delay)   # pacing, not synchronisation
        i = k % n
        pub.publish(topics[i], hb, {"run_id": ids[i], "beat": k // n + 1, "step": k // n})
        if k + 1 == warm_at:
            _say({"window": True})
    _say({"sent": total, "elapsed": time.perf_counter() - t0})
    sock.close(linger=1000)
    ctx.destroy(linger=0)


# --- the benchmark -------------------------------------------------------------------

def run(quick: bool = False) -> list[Row]:
    return _services(quick) + _heartbeats(quick)


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"hbdisp": hbdisp_main, "hbsub": hbsub_main, "hbpub": hbpub_main}[role](*rest)
