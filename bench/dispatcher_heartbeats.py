"""Benchmark 3 of bench/dispatcher.py: 1,000 runs heartbeating at 1 Hz.

A dispatcher built like ``services.dispatcher``'s ``build()`` (real bus, registry,
sockets and loop) holds 1,000 started runs whose process group is that of one real
``sleep`` (a false timeout would signal it); a publisher sends ``hb.<run_id>`` for
every run once a second, spread evenly. The dispatcher process's CPU (utime+stime of
/proc/<pid>/stat, all threads) over the window vs a bare pyzmq SUB + msgpack.unpackb
process receiving the same messages. Targets: < 10 % of one core, 0 false timeouts.

Child roles (run by the benchmark itself):
    python -m bench.dispatcher_heartbeats hbdisp COUNT PGID    the dispatcher
    python -m bench.dispatcher_heartbeats hbsub                its raw baseline
    python -m bench.dispatcher_heartbeats hbpub COUNT SECONDS  the heartbeat publisher
Set BENCH_DISPATCHER_PROFILE=PATH to write a cProfile of the hbdisp loop to PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from typing import Any, Optional

import zmq

from bench.common import Child, Lab, _die_with_parent
from bench.dispatcher import cpu_seconds
from bench.table import Row
from core.rundir import STDERR_FILE, STDOUT_FILE

SERVICE_ENV = {"TRAINER_CPU_SLOTS": "2", "TRAINER_STATUS_INTERVAL": "0.5"}
CPU_TARGET_PCT = 10.0
HB_TIMEOUT_S = 5.0


# --- 3: 1,000 heartbeating runs ------------------------------------------------------

def run_ids(count: int) -> list[str]:
    return [f"hb{i:010d}" for i in range(count)]


def recv_line(child: Child, timeout: float) -> Any:
    ready, _, _ = select.select([child.stdout_fd], [], [], timeout)
    if not ready:
        raise RuntimeError(f"{child.argv[2:]} said nothing for {timeout:g}s: "
                           f"{child.log_tail(800)}")
    return child.recv()


def heartbeats(quick: bool, rules: bool = False) -> list[Row]:
    """``rules``: every liveness rule on with no warm-up and short windows (the
    publisher's beats say the metrics are finite and the steps advance at a steady
    pace), so that each beat is judged by every rule."""
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
            disp = lab.module("bench.dispatcher_heartbeats", "hbdisp", str(count),
                              str(sleeper.pid), str(int(rules)), control=True)
            raw = lab.module("bench.dispatcher_heartbeats", "hbsub", control=True)
            ready = recv_line(disp, 120)
            recv_line(raw, 60)
            pub = lab.module("bench.dispatcher_heartbeats", "hbpub", str(count), str(seconds),
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
    what = "with every liveness rule judging" if rules else "at 1 Hz"
    if rules:
        rows.append(Row(f"dispatcher: {count:,} healthy runs judged by the liveness rules, "
                        "false flags", "", d_stats["flags"], None, "0",
                        d_stats["flags"] == 0, f"stalled/slowed windows {RULES_WINDOW_S:g}s, "
                        f"no warm-up; {d_stats['judged']} runs judged at the end"))
    rows.append(Row(f"dispatcher: {count:,} runs heartbeating {what}, CPU", "% core", ours,
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


RULES_WINDOW_S = 3.0


def hbdisp_main(count: str, pgid: str, rules: str = "0") -> None:
    """A dispatcher built by services.dispatcher's build(), plus ``count`` RUNNING runs
    (watch armed: heartbeat_timeout_s 5, startup_grace_s 0) whose process group is
    ``pgid``, each run folder locked as its shim would hold it (one flock per folder,
    held by this process); runs its loop as run_service does until SIGTERM, then
    prints its stats."""
    import dataclasses
    import fcntl

    from core.runconfig import RunConfig
    from core.rundir import RUN_LOCK, WORKER_FILE
    from core.settings import Settings
    from runtime import logs
    from services.dispatcher import launch
    from services.dispatcher.__main__ import build
    from services.dispatcher.decide.phases import Phase
    from services.dispatcher.decide.state import RunRecord
    from services.dispatcher.decide.supervise import Watch
    t_setup = time.perf_counter()
    settings = Settings.from_env(os.environ)
    logs.configure(settings.log_level)
    log = logs.service_logger("dispatcher")
    ctx = zmq.Context()
    loop = build(settings, ctx, log)
    flags = _flags()
    tight = {"stalled": {"window_s": RULES_WINDOW_S, "warmup_s": 0},
             "slowed": {"window_s": RULES_WINDOW_S, "warmup_s": 0},
             "diverged": {"warmup_s": 0}} if rules == "1" else {}
    config = RunConfig.from_map({"worker": "test-mark", "heartbeat_interval_s": 1.0,
                                 "heartbeat_timeout_s": HB_TIMEOUT_S, "startup_grace_s": 0.0,
                                 "cancel_grace_s": 1.0, "liveness": tight})
    runs, locks = {}, []
    ids = run_ids(int(count))
    for run_id in ids:
        path = launch.run_dir(settings, run_id)
        os.makedirs(path, exist_ok=True)
        for name in (STDOUT_FILE, STDERR_FILE):
            open(os.path.join(path, name), "ab").close()
        with open(os.path.join(path, WORKER_FILE), "w", encoding="utf-8") as fh:
            json.dump({"pid": int(pgid), "pgid": int(pgid), "start_time": None,
                       "started_at": loop.clock.now(), RUN_LOCK: True}, fh)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)   # as its shim holds it while it owns the run
        locks.append(fd)
    # Watched from now, after the folders are written (1,000 of them take seconds on a
    # loaded machine: longer than the heartbeat timeout).
    now = loop.clock.monotonic()
    for run_id in ids:
        runs[run_id] = RunRecord(run_id, Phase.RUNNING, config, started_recorded=True,
                                 pgid=int(pgid), pid=int(pgid), watch=Watch.of(config, now))
    loop.state = dataclasses.replace(loop.state, runs=runs,
                                     next_deadline=now + HB_TIMEOUT_S)
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
            loop.step(0.2)
            steps += 1
    finally:
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
        end = loop.clock.monotonic()
        ages = [end - r.watch.last_beat if r.watch and r.watch.last_beat is not None
                else float("inf") for r in loop.state.runs.values()]
        judged = sum(r.liveness is not None for r in loop.state.runs.values())
        _say({"kills": loop.state.stats.kills, "flags": loop.state.stats.flags,
              "judged": judged, "steps": steps,
              "wall": time.monotonic() - t0, "max_beat_age": max(ages) if ages else 0.0})
        loop.close()
        for fd in locks:
            os.close(fd)
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
        beat = k // n + 1   # a steady pace: 1,000 steps a second, metrics finite
        pub.publish(topics[i], hb, {"run_id": ids[i], "beat": beat, "step": beat * 1000,
                                    "metrics_finite": True, "phase": ""})
        if k + 1 == warm_at:
            _say({"window": True})
    _say({"sent": total, "elapsed": time.perf_counter() - t0})
    sock.close(linger=1000)
    ctx.destroy(linger=0)



if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"hbdisp": hbdisp_main, "hbsub": hbsub_main, "hbpub": hbpub_main}[role](*rest)
