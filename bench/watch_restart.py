"""How soon a retrying watch gets events again after a gateway restart, for a grpc-js
client (bench/js/watch_restart.js, written from docs/API.md) with grpc-js's default
channel options and with the reconnect options docs/API.md recommends, beside
``trainer.client.Client.watch`` (the Python client) in the same run.

``python -m bench restart`` (or ``.venv/bin/python -m bench.watch_restart [N]``): starts
the stack with ``trainer up`` in a temporary TRAINER_HOME (the dispatcher stopped, so
the submitted runs stay PENDING and cost nothing), submits a run to the registry every
50 ms over the bus (events keep being committed while the gateway is down), starts the
three watchers, then N times kills the gateway (SIGTERM and SIGKILL in turn; supervisord
starts a new one at once) and measures, per watcher, the time from the new gateway's
``gateway.listening`` log line to the first event it receives. The watchers resume with
since_seq, so the events committed meanwhile reach them as soon as they are back: the
lag is their reconnect time. Skipped (one row, with the reason) when node or its gRPC
modules are missing: ``cd bench/js && npm install`` (needs the network once), or point
BENCH_NODE_MODULES at a node_modules folder holding @grpc/grpc-js and @grpc/proto-loader.
"""

from __future__ import annotations

import calendar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

import zmq

from bench.common import PY, REPO, RpcClient
from core.settings import Settings

JS = os.path.join(REPO, "bench", "js", "watch_restart.js")
TARGET_S = 2.0
RESTARTS, QUICK_RESTARTS = 9, 3
KINDS = ("SIGTERM", "SIGKILL", "down 5 s")
OUTAGE_S = 5.0
SUBMIT_EVERY_S = 0.05
FLOW_TIMEOUT_S = 30.0
STARTSECS = 1.5          # supervisor.conf's startsecs=1: a gateway killed sooner is FATAL
# What docs/API.md ("Reconnecting") recommends to a grpc-js client.
DOCS_OPTIONS = {"grpc.initial_reconnect_backoff_ms": 100, "grpc.max_reconnect_backoff_ms": 500}

PY_WATCHER = """
import json, sys, time
from trainer.client import Client
with Client(sys.argv[1], sys.argv[2]) as c:
    for msg in c.watch():
        if msg.events:
            print(json.dumps({"t": time.time() * 1000, "seq": msg.seq,
                              "events": len(msg.events)}), flush=True)
"""


def node_modules() -> Optional[str]:
    """A node_modules folder holding @grpc/grpc-js and @grpc/proto-loader, or None."""
    for folder in (os.environ.get("BENCH_NODE_MODULES", ""),
                   os.path.join(REPO, "bench", "js", "node_modules")):
        if folder and all(os.path.isfile(os.path.join(folder, "@grpc", m, "package.json"))
                          for m in ("grpc-js", "proto-loader")):
            return folder
    return None


def skip_reason() -> str:
    if not shutil.which("node"):
        return "skipped: node is not installed"
    if node_modules() is None:
        return ("skipped: no @grpc/grpc-js and @grpc/proto-loader (npm install in bench/js, "
                "or BENCH_NODE_MODULES)")
    return ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_time(line: str) -> float:
    """The epoch seconds of a service log line's ``ts`` (2026-01-02T03:04:05.678Z)."""
    ts = json.loads(line)["ts"]
    return calendar.timegm(time.strptime(ts[:19], "%Y-%m-%dT%H:%M:%S")) + int(ts[20:23]) / 1e3


class Watcher:
    """A watcher process whose JSON lines (``t`` in epoch ms) are read in a thread."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.events: list[float] = []   # epoch seconds of each message with events
        self.errors: list[str] = []
        self.proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                item = json.loads(line)
            except ValueError:
                self.errors.append(line.strip())
                continue
            if "events" in item:
                self.events.append(item["t"] / 1e3)
            else:
                self.errors.append(f"{item.get('code')} {item.get('details')}")

    def first_after(self, t: float) -> Optional[float]:
        return next((e for e in list(self.events) if e > t), None)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)
        if self.proc.stdout:
            self.proc.stdout.close()


class StackUp:
    """``trainer up`` in a temporary TRAINER_HOME, ``trainer down`` and removal at close."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="tb-restart-", dir="/tmp")
        self.addr = f"127.0.0.1:{_free_port()}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
        self.env.update(TRAINER_HOME=self.home, TRAINER_GATEWAY_ADDR=self.addr,
                        PYTHONUNBUFFERED="1")
        self.trainer("up")
        self.supervisorctl("stop", "dispatcher")
        with open(os.path.join(self.home, "gateway.token"), encoding="utf-8") as fh:
            self.token = fh.read().strip()
        self.gateway_log = os.path.join(self.home, "logs", "gateway.log")

    def trainer(self, *args: str) -> None:
        proc = subprocess.run([PY, "-m", "trainer.cli.main", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"trainer {' '.join(args)} exited {proc.returncode}: "
                               f"{proc.stdout[-500:]} {proc.stderr[-500:]}")

    def supervisorctl(self, *args: str) -> str:
        return subprocess.run([PY, "-m", "supervisor.supervisorctl", "-c",
                               os.path.join(REPO, "supervisor.conf"), *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False).stdout

    def gateway_pid(self) -> int:
        return int(self.supervisorctl("pid", "gateway").strip())

    def listening_lines(self) -> list[str]:
        with open(self.gateway_log, encoding="utf-8", errors="replace") as fh:
            return [line for line in fh if '"gateway.listening"' in line]

    def close(self) -> None:
        try:
            self.trainer("down")
        finally:
            shutil.rmtree(self.home, ignore_errors=True)


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.01)  # polling a log file and the watchers' lists


def _submitter(settings: Settings, stop: threading.Event) -> None:
    """A run every SUBMIT_EVERY_S through the registry (not the gateway)."""
    ctx = zmq.Context()
    client = RpcClient(ctx, settings.registry, "bench", timeout_s=5.0, retries=2)
    try:
        n = 0
        while not stop.wait(SUBMIT_EVERY_S):  # the pace of the event stream
            n += 1
            client.call("submit", {"config": {"seed": 100_000 + n, "tags": ["restart"]}})
    finally:
        client.close()
        ctx.term()


def measure(restarts: int, log: Any = sys.stderr) -> dict[str, Any]:
    modules = node_modules()
    stack = StackUp()
    stop = threading.Event()
    watchers: list[Watcher] = []
    submitter = threading.Thread(target=_submitter,
                                 args=(Settings.from_env(stack.env), stop), daemon=True)
    try:
        submitter.start()
        node_env = {**stack.env, "NODE_PATH": modules or ""}
        watchers = [
            Watcher("grpc-js defaults", ["node", JS, stack.addr, stack.token, "{}"], node_env),
            Watcher("grpc-js docs options", ["node", JS, stack.addr, stack.token,
                                             json.dumps(DOCS_OPTIONS)], node_env),
            Watcher("grpc-js docs options + waitForReady",
                    ["node", JS, stack.addr, stack.token, json.dumps(DOCS_OPTIONS), "wait"],
                    node_env),
            Watcher("python Client.watch", [PY, "-c", PY_WATCHER, stack.addr, stack.token],
                    stack.env),
        ]
        _wait(lambda: all(w.events for w in watchers), 60, "every watcher's first event")
        lags: dict[str, list[Optional[float]]] = {w.name: [] for w in watchers}
        downtimes = []
        for i in range(restarts):
            how = KINDS[i % len(KINDS)]
            seen = len(stack.listening_lines())
            pid = stack.gateway_pid()
            t_kill = time.time()
            if how == "down 5 s":  # an outage: stopped, started again 5 s later
                stack.supervisorctl("stop", "gateway")
                time.sleep(OUTAGE_S)  # the outage being simulated, not a synchronisation
                stack.supervisorctl("start", "gateway")
            else:  # supervisord starts a new gateway at once
                os.kill(pid, signal.SIGTERM if how == "SIGTERM" else signal.SIGKILL)
            line = _wait(lambda: stack.listening_lines()[seen:], 30, "a new gateway")[0]
            t_listen = _log_time(line)
            downtimes.append(t_listen - t_kill)
            deadline = time.monotonic() + FLOW_TIMEOUT_S
            while time.monotonic() < deadline and not all(w.first_after(t_listen)
                                                          for w in watchers):
                time.sleep(0.01)  # polling the watchers' lists
            parts = []
            for w in watchers:
                first = w.first_after(t_listen)
                lags[w.name].append(None if first is None else first - t_listen)
                parts.append(f"{w.name} {'-' if first is None else f'{first - t_listen:.2f}'}")
            print(f"restart {i + 1} ({how}): down {t_listen - t_kill:.2f} s, listening -> "
                  f"first event: " + ", ".join(parts), file=log, flush=True)
            _wait(lambda: time.time() - t_listen > STARTSECS
                  and "RUNNING" in stack.supervisorctl("status", "gateway"), 30,
                  "the gateway to count as started")
        return {"lags": lags, "down": downtimes,
                "errors": {w.name: w.errors[-3:] for w in watchers}}
    finally:
        stop.set()
        submitter.join(10)
        for w in watchers:
            w.stop()
        stack.close()


def _summary(values: list[Optional[float]]) -> tuple[Optional[float], str]:
    """The worst lag (None: a watcher never came back) and a one-line summary."""
    if not values or any(v is None for v in values):
        return None, f"{sum(v is None for v in values)} of {len(values)} never flowed again"
    ordered = sorted(v for v in values if v is not None)
    return ordered[-1], (f"median {ordered[len(ordered) // 2]:.2f} s, max {ordered[-1]:.2f} s "
                         f"over {len(ordered)} restarts")


def run(quick: bool = False) -> list[dict[str, Any]]:
    reason = skip_reason()
    if reason:
        return [{"name": "watch after gateway restart (grpc-js)", "unit": "s", "ours": None,
                 "baseline": None, "target": f"<= {TARGET_S:.0f} s", "ok": None,
                 "notes": reason}]
    result = measure(QUICK_RESTARTS if quick else RESTARTS)
    py_max, py_text = _summary(result["lags"]["python Client.watch"])
    rows = []
    for name, judged in (("grpc-js docs options", True), ("grpc-js defaults", False)):
        worst, text = _summary(result["lags"][name])
        options = json.dumps(DOCS_OPTIONS) if judged else "none (grpc-js defaults)"
        rows.append({
            "name": f"watch after gateway restart: {name}", "unit": "s", "ours": worst,
            "baseline": py_max, "target": f"<= {TARGET_S:.0f} s" if judged else "-",
            "ok": (worst is not None and worst <= TARGET_S) if judged else None,
            "notes": f"new gateway listening -> first event ({', '.join(KINDS)} in turn): "
                     f"{text}; baseline: python Client.watch, {py_text}; channel options "
                     f"{options}; gateway down {max(result['down']):.2f} s at most".replace(
                         "|", "/")})
    return rows


if __name__ == "__main__":
    if skip_reason():
        sys.exit(skip_reason())
    out = measure(int(sys.argv[1]) if len(sys.argv) > 1 else RESTARTS)
    for name, values in out["lags"].items():
        print(f"{name}: {_summary(values)[1]}")
