"""The parts of the GPU check (scripts/gpu_check.py) that are not checks: its report
lines; the real services, started as supervisor.conf starts them (``python -m
MODULE`` with one TRAINER_HOME, logs in ``$TRAINER_HOME/logs/``, in the order bus,
registry, dispatcher); waits on conditions with deadlines; registry calls; NVML reads.

Reuses tests/helpers.py (``ServiceProcess``, ``wait_until``): the repository root
must be on sys.path (gpu_check.py puts it there)."""

from __future__ import annotations

import os
import re
import signal
from typing import Any, Callable, Optional

import zmq

from bus.badframes import BadFrameLog
from runtime.logs import service_logger
from bus.pubsub import Subscriber
from bus.rpc import RpcClient
from core.errors import OrchestratorError
from core.rundir import WORKER_FILE
from core.settings import Settings
from services.dispatcher.shell.gpuread import Inventory
from services.dispatcher.spawner import read_json
from services.dispatcher.procs import group_alive
from tests.helpers import ServiceProcess, wait_until

SERVICES = (("bus", "bus"), ("registry", "services.registry"),
            ("dispatcher", "services.dispatcher"))
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")
SOURCE = "gpu-check"
MIB = 2**20


class Report:
    def __init__(self) -> None:
        self.checks: list[dict[str, str]] = []

    def add(self, status: str, name: str, detail: str) -> bool:
        print(f"{status:<4}  {name}: {detail}", flush=True)
        self.checks.append({"status": status, "name": name, "detail": detail})
        return status != "FAIL"

    def check(self, name: str, ok: bool, detail: str) -> bool:
        return self.add("PASS" if ok else "FAIL", name, detail)

    @property
    def failed(self) -> int:
        return sum(c["status"] == "FAIL" for c in self.checks)


def print_inventory(inv: Inventory) -> None:
    print(f"pynvml inventory (what the dispatcher reads): source={inv.source.value}, "
          f"{len(inv.gpus)} GPU(s){', ' + inv.error if inv.error else ''}")
    for g in inv.gpus:
        print(f"  #{g.index} {g.uuid} {g.name} {g.memory_free // MIB:,}/"
              f"{g.memory_total // MIB:,} MiB free, foreign pids {list(g.foreign_pids)}")


def norm(uuid: Optional[str]) -> str:
    """The 8-4-4-4-12 hex part of a GPU UUID in any spelling ("GPU-...", torch's bare
    form), lower case."""
    text = (uuid or "").lower()
    found = re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
    return found.group(0) if found else text


def interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class StartFailed(Exception):
    pass


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])
    except FileNotFoundError:
        return f"({path} does not exist)"


class Services:
    """bus, registry and dispatcher of one TRAINER_HOME, and a way to talk to them.
    TRAINER_FAKE_GPUS is removed from their environment: the dispatcher reads NVML."""

    def __init__(self, home: str) -> None:
        env = {k: v for k, v in os.environ.items() if k != "TRAINER_FAKE_GPUS"}
        env.update(TRAINER_HOME=home, PYTHONUNBUFFERED="1", TRAINER_STATUS_INTERVAL="0.5",
                   TRAINER_TEST_WORKERS="1")  # the GPU check runs test-gpu-hold
        self.env = env
        self.settings = Settings.from_env(env)
        self.logs = os.path.join(home, "logs")
        os.makedirs(self.logs, mode=0o700, exist_ok=True)
        self.procs = {name: ServiceProcess(module, env, os.path.join(self.logs, f"{name}.log"))
                      for name, module in SERVICES}
        self.ctx = zmq.Context()
        self.client = RpcClient(self.ctx, self.settings.registry, SOURCE, timeout_s=3.0,
                                retries=3)
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.settings.bus_sub)
        self.bus = Subscriber(sock, BadFrameLog(service_logger(SOURCE)))
        self.bus.subscribe("status.")
        self.bus.subscribe("hb.")
        self.status: dict[str, dict[str, Any]] = {}
        self.heartbeats: dict[str, dict[str, Any]] = {}   # run_id -> latest heartbeat

    # --- the bus ---------------------------------------------------------------------
    def drain(self, timeout_ms: int = 100) -> None:
        """Read what the bus has: the latest status of each service, heartbeat of each run."""
        msg = self.bus.recv(timeout_ms)
        while msg is not None:
            payload = msg.envelope.payload
            if msg.topic.startswith("status."):
                self.status[msg.topic[len("status."):]] = payload
            elif msg.topic.startswith("hb."):
                self.heartbeats[msg.topic[len("hb."):]] = payload
            msg = self.bus.recv(0)

    def _status_of(self, name: str) -> Optional[dict[str, Any]]:
        self.drain()
        status = self.status.get(name)
        if status is not None and status.get("pid") == self.procs[name].pid:
            return status
        return None

    # --- start and stop --------------------------------------------------------------
    def _wait_up(self, name: str, ready: Callable[[], Any], timeout: float) -> Any:
        proc = self.procs[name]
        def up() -> Any:
            if not proc.alive():
                raise StartFailed(f"{name} exited with {proc.proc.returncode if proc.proc else '?'}"
                                  f"; its log {proc.log_path}:\n{tail(proc.log_path)}")
            return ready()
        try:
            return wait_until(up, timeout, interval=0.1, message=f"{name} to be up")
        except AssertionError as exc:
            raise StartFailed(f"{exc}; its log {proc.log_path}:\n{tail(proc.log_path)}") from None

    def _pong(self) -> bool:
        try:
            self.client.call("ping", timeout_s=0.5, retries=0)
            return True
        except OrchestratorError:
            return False

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the three services in order, each once the one before is up; returns
        the dispatcher's status (its GPU inventory is in ``counters``)."""
        self.procs["bus"].start()
        self._wait_up("bus", lambda: self._status_of("bus"), timeout)
        self.procs["registry"].start()
        self._wait_up("registry", self._pong, timeout)
        self.procs["dispatcher"].start()
        return self._wait_up("dispatcher", lambda: self._status_of("dispatcher"), timeout)

    def stop(self) -> dict[str, Optional[int]]:
        """SIGTERM each service (dispatcher first), SIGKILL after 20 s; exit codes."""
        codes = {name: self.procs[name].stop(timeout=20.0) for name, _ in reversed(SERVICES)}
        self.client.close()
        self.bus.sock.close(linger=0)
        self.ctx.term()
        return codes

    # --- the registry ----------------------------------------------------------------
    def call(self, method: str, args: Optional[dict[str, Any]] = None) -> Any:
        return self.client.call(method, args or {})

    def run(self, run_id: str) -> dict[str, Any]:
        return self.call("get_run", {"run_id": run_id})["run"]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        out = self.call("events_since", {"after_seq": 0, "limit": 1000})["events"]
        return [e for e in out if e.get("payload", {}).get("run_id") == run_id]

    def wait_run(self, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float,
                 what: str) -> dict[str, Any]:
        """The run once ``done(run)``; AssertionError at the deadline."""
        def check() -> Optional[dict[str, Any]]:
            self.drain(0)
            run = self.run(run_id)
            return run if done(run) else None
        return wait_until(check, timeout, interval=0.2, message=f"run {run_id} {what}")

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.settings.runs_dir, run_id)

    def worker_group_alive(self, run_id: str) -> bool:
        worker = read_json(os.path.join(self.run_dir(run_id), WORKER_FILE))
        return worker is not None and group_alive(int(worker["pgid"]))

    def end_run(self, run_id: str, grace: float) -> str:
        """Leave nothing of the run behind (on any exit path): cancel it through the
        registry if it is not over, wait; SIGKILL its worker's process group (which
        this check started) only if it outlives that."""
        try:
            if self.run(run_id)["status"] not in TERMINAL:
                self.call("request_cancel", {"run_id": run_id, "requested_by": SOURCE,
                                             "reason": "gpu check ending"})
            status = self.wait_run(run_id, lambda r: r["status"] in TERMINAL, grace,
                                   "to end")["status"]
        except (OrchestratorError, AssertionError) as exc:
            status = f"unknown ({exc})"
        worker = read_json(os.path.join(self.run_dir(run_id), WORKER_FILE))
        if worker is not None and group_alive(int(worker["pgid"])):
            os.killpg(int(worker["pgid"]), signal.SIGKILL)
            status += f"; its process group {worker['pgid']} was killed"
        return status


class Nvml:
    """Memory and compute processes of one GPU by UUID, through pynvml."""

    def __init__(self) -> None:
        import pynvml
        self.nvml = pynvml
        pynvml.nvmlInit()

    def driver(self) -> str:
        version = self.nvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)

    def used(self, uuid: str) -> int:
        handle = self.nvml.nvmlDeviceGetHandleByUUID(uuid)
        return int(self.nvml.nvmlDeviceGetMemoryInfo(handle).used)

    def processes(self, uuid: str) -> Optional[list[dict[str, Any]]]:
        """Compute processes on the GPU (pid, used bytes), or None if not reported."""
        handle = self.nvml.nvmlDeviceGetHandleByUUID(uuid)
        try:
            procs = self.nvml.nvmlDeviceGetComputeRunningProcesses(handle)
        except self.nvml.NVMLError:
            return None
        return [{"pid": int(p.pid), "used": p.usedGpuMemory} for p in procs]

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass
