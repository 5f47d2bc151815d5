"""Shared fixtures: a temporary TRAINER_HOME, a zmq context that fails on leaks, and a
running stack of real processes (bus broker + registry) on ipc sockets in it."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Iterator

import pytest
import zmq

from bus.badframes import BadFrameLog
from runtime.logs import service_logger
from bus.pubsub import Subscriber
from bus.rpc import RpcClient
from core.settings import Settings
from tests.helpers import ServiceProcess, wait_until


@pytest.fixture
def trainer_home() -> Iterator[str]:
    # Short path under /tmp: ipc socket paths are limited to ~107 bytes.
    home = tempfile.mkdtemp(prefix="th-", dir="/tmp")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def service_env(trainer_home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TRAINER_HOME=trainer_home, PYTHONUNBUFFERED="1", TRAINER_STATUS_INTERVAL="0.2",
               TRAINER_TEST_WORKERS="1")  # tests/workers' test-sleep, test-mark, ...
    return env


@pytest.fixture
def settings(service_env: dict[str, str]) -> Settings:
    return Settings.from_env(service_env)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A context whose sockets must all be closed by the test (else it fails)."""
    context = zmq.Context()
    yield context
    done = threading.Event()
    def term() -> None:
        context.term()
        done.set()
    threading.Thread(target=term, daemon=True).start()
    if not done.wait(5):
        context.destroy(linger=0)
        pytest.fail("a zmq socket was left open by the test")


class Stack:
    """Real bus broker and registry processes, and ways to talk to them."""

    def __init__(self, env: dict[str, str], settings: Settings, ctx: zmq.Context) -> None:
        self.env = env
        self.settings = settings
        self.ctx = ctx
        home = settings.home
        self.bus = ServiceProcess("bus", env, os.path.join(home, "bus.log"))
        self.registry = ServiceProcess("services.registry", env,
                                       os.path.join(home, "registry.log"))
        self.dispatcher = ServiceProcess("services.dispatcher", env,
                                         os.path.join(home, "dispatcher.log"))
        self._clients: list[RpcClient] = []
        self._sockets: list[zmq.Socket] = []

    def client(self, timeout_s: float = 5.0, retries: int = 3) -> RpcClient:
        c = RpcClient(self.ctx, self.settings.registry, "test", timeout_s=timeout_s,
                      retries=retries)
        self._clients.append(c)
        return c

    def subscriber(self, *prefixes: str, rcvhwm: int = 1000, live: bool = True) -> Subscriber:
        """A SUB socket on the broker. With ``live``, returns only once a status message
        has come through, so the subscriptions made before it are known to be active
        (no slow-joiner loss); the test then sees status.* messages too."""
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, rcvhwm)
        sock.connect(self.settings.bus_sub)
        self._sockets.append(sock)
        sub = Subscriber(sock, BadFrameLog(service_logger("test")))
        for p in prefixes:
            sub.subscribe(p)
        if live:
            sub.subscribe("status.")
            wait_until(lambda: sub.recv(100), 20, message="a status message on the bus")
        return sub

    def events(self, sub: Subscriber, count: int, timeout_ms: int = 5000) -> list:
        """The next ``count`` domain-event envelopes on ``sub`` (status messages skipped)."""
        out = []
        while len(out) < count:
            msg = sub.recv(timeout_ms)
            assert msg is not None, f"only {len(out)} of {count} events arrived"
            if msg.topic.startswith("event."):
                out.append(msg.envelope)
        return out

    def socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._sockets.append(sock)
        return sock

    def start_registry(self) -> None:
        self.registry.start()
        probe = self.client(timeout_s=0.5, retries=0)
        def pong() -> bool:
            try:
                probe.call("ping")
                return True
            except Exception:
                assert self.registry.alive(), self.registry.log()
                return False
        wait_until(pong, 20, message="registry to answer ping")

    def start_bus(self) -> None:
        self.bus.start()
        sub = self.subscriber("status.bus", live=False)
        wait_until(lambda: sub.recv(100), 20, message="bus status message")

    def start_dispatcher(self) -> None:
        self.dispatcher.start()
        sub = self.subscriber("status.dispatcher", live=False)
        def up() -> bool:
            assert self.dispatcher.alive(), self.dispatcher.log()
            msg = sub.recv(100)
            return msg is not None and msg.envelope.payload.get("pid") == self.dispatcher.pid
        wait_until(up, 30, message="dispatcher status message")

    def close(self) -> None:
        self.dispatcher.stop()
        for c in self._clients:
            c.close()
        for s in self._sockets:
            s.close(linger=0)
        self.registry.stop()
        self.bus.stop()


@pytest.fixture
def dstack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    """bus + registry + dispatcher with 2 fake GPUs and 4 CPU slots."""
    env = {**service_env, "TRAINER_FAKE_GPUS": "2", "TRAINER_CPU_SLOTS": "4",
           "TRAINER_STATUS_INTERVAL": "0.5"}
    s = Stack(env, Settings.from_env(env), ctx)
    try:
        s.start_bus()
        s.start_registry()
        s.start_dispatcher()
        yield s
        if s.registry.alive():  # after every test: no run's process left, no GPU booked
            from tests.integration.dispatch_helpers import assert_nothing_left
            assert_nothing_left(s)
    finally:
        s.close()


@pytest.fixture
def stack(service_env: dict[str, str], settings: Settings, ctx: zmq.Context) -> Iterator[Stack]:
    s = Stack(service_env, settings, ctx)
    try:
        s.start_bus()
        s.start_registry()
        yield s
    finally:
        s.close()
