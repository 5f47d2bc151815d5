"""Shared plumbing: a temporary TRAINER_HOME, child processes that are always
stopped (SIGTERM, wait, SIGKILL), and readiness checks that wait on an answer,
never on a sleep."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import IO, Any, Optional

import zmq

from bus.rpc import RpcClient
from core.settings import Settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: the child gets SIGTERM if the benchmark dies without cleaning up."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Child:
    """A child process with line-based JSON control on stdin/stdout (optional)."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: str,
                 control: bool = False) -> None:
        self.argv = argv
        self.log_path = log_path
        log = open(log_path, "ab")
        try:
            # bufsize=0: line reads never read ahead, so the stdout fd can be polled.
            self.proc = subprocess.Popen(
                argv, env=env, cwd=REPO, stderr=log, bufsize=0,
                stdout=subprocess.PIPE if control else log,
                stdin=subprocess.PIPE if control else subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        finally:
            log.close()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, obj: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(obj) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.argv[2:]} exited (rc={self.proc.poll()}): "
                               f"{self.log_tail()}")
        return json.loads(line)

    @property
    def stdout_fd(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def log_tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError), open(self.log_path, "rb") as fh:
            return fh.read()[-n:].decode("utf-8", "replace")
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)


class Lab:
    """A temporary TRAINER_HOME and every child started in it; close() stops them."""

    def __init__(self, prefix: str = "tb-", home: Optional[str] = None,
                 env: Optional[dict[str, str]] = None) -> None:
        # Short path under /tmp: ipc socket paths are limited to ~107 bytes.
        self.owns_home = home is None
        self.home = home or tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.env = dict(os.environ)
        self.env.update(TRAINER_HOME=self.home, PYTHONUNBUFFERED="1")
        for key in [k for k in self.env if k.startswith("TRAINER_") and k != "TRAINER_HOME"]:
            del self.env[key]  # the services' defaults, whatever the caller's shell says
        self.env["TRAINER_TEST_WORKERS"] = "1"  # the benches run tests/workers' test-mark
        self.env.update(env or {})
        # Experiments: BENCH_TRAINER_X=v in the caller's shell sets TRAINER_X for the services.
        self.env.update({k[len("BENCH_"):]: v for k, v in os.environ.items()
                         if k.startswith("BENCH_TRAINER_")})
        self.settings = Settings.from_env(self.env)
        self.ctx = zmq.Context()
        self.children: list[Child] = []
        self.sockets: list[Any] = []

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def path(self, name: str) -> str:
        return os.path.join(self.home, name)

    def ipc(self, name: str) -> str:
        os.makedirs(self.path("sock"), mode=0o700, exist_ok=True)
        return f"ipc://{self.path('sock')}/{name}"

    def spawn(self, argv: list[str], log_name: str, control: bool = False) -> Child:
        child = Child(argv, self.env, self.path(log_name), control)
        self.children.append(child)
        return child

    def module(self, module: str, *args: str, control: bool = False) -> Child:
        name = module.rsplit(".", 1)[-1] if module != "bus" else "bus"
        return self.spawn([PY, "-m", module, *args], f"{name}-{len(self.children)}.log",
                          control)

    def socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self.sockets.append(sock)
        return sock

    def client(self, endpoint: str, timeout_s: float = 10.0, retries: int = 0) -> RpcClient:
        c = RpcClient(self.ctx, endpoint, "bench", timeout_s=timeout_s, retries=retries)
        self.sockets.append(c)
        return c

    def start_bus(self) -> Child:
        """The broker; returns once its status message came through it."""
        child = self.module("bus")
        sub = self.socket(zmq.SUB)
        sub.connect(self.settings.bus_sub)
        sub.setsockopt(zmq.SUBSCRIBE, b"status.bus")
        deadline = time.monotonic() + 30
        while not sub.poll(200):
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the broker did not come up: {child.log_tail()}")
        return child

    def start_registry(self, timeout: float = 120.0) -> tuple[Child, float]:
        """The registry; returns (child, seconds until it answered ping)."""
        t0 = time.perf_counter()
        child = self.module("services.registry")
        wait_ping(self.client(self.settings.registry, timeout_s=0.25), child, timeout)
        return child, time.perf_counter() - t0

    def close(self) -> None:
        errors = []
        for s in self.sockets:
            with contextlib.suppress(Exception):
                s.close() if isinstance(s, RpcClient) else s.close(linger=0)
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                errors.append(exc)
        self.ctx.destroy(linger=0)
        if self.owns_home:
            shutil.rmtree(self.home, ignore_errors=True)
        if errors:
            raise errors[0]


def wait_ping(client: RpcClient, child: Child, timeout: float) -> Any:
    """Call ping until it answers (each attempt waits on the reply, not on a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.call("ping", retries=0)
        except Exception:
            if not child.alive():
                raise RuntimeError(f"{child.argv[2:]} exited: {child.log_tail()}") from None
            if time.monotonic() > deadline:
                raise


class StatusWatch:
    """The latest ServiceStatus counters of one service, from the bus."""

    def __init__(self, lab: Lab, service: str) -> None:
        from bus.codec import decode_message
        self.decode = decode_message
        self.sock = lab.socket(zmq.SUB)
        self.sock.connect(lab.settings.bus_sub)
        self.sock.setsockopt(zmq.SUBSCRIBE, f"status.{service}".encode())

    def after(self, wall_time: float, timeout: float = 10.0) -> dict[str, Any]:
        """Counters from a status message made after ``wall_time`` (time.time())."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise RuntimeError("no status message on the bus")
            _, env = self.decode(self.sock.recv_multipart())
            if env.ts > wall_time:
                return dict(env.payload.get("counters", {}))


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def control_loop(handle: Any, stdin: IO[str] = sys.stdin) -> None:
    """The child side of Child's control: one JSON command per line in, one reply out."""
    for line in stdin:
        if not line.strip():
            continue
        reply = handle(json.loads(line))
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
