"""Real bus broker, registry and dispatcher processes (``python -m ...``) on ipc sockets
in a temporary TRAINER_HOME, and ways to talk to them (the ``stack`` and ``dstack``
fixtures of tests/system/conftest.py build one)."""

from __future__ import annotations

import os

import zmq

from bus import curvekeys
from bus.badframes import BadFrameLog
from bus.codec import Envelope, MessageType, decode, encode
from runtime.logs import service_logger
from bus.pubsub import Subscriber
from bus.rpc import RpcClient
from core.settings import Settings
from tests.helpers import ServiceProcess, wait_until


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
        curvekeys.connect(sock, self.settings.bus_sub, curvekeys.service_keys(
            self.settings.home, self.settings.bus_curve))   # the services' key, if CURVE
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


def submit_many(stack: Stack, n: int, first_seed: int, blob: int = 0) -> None:
    """``n`` submits of distinct configs straight to the registry, pipelined."""
    d = stack.socket(zmq.DEALER)
    d.connect(stack.settings.registry)
    sent = got = 0
    hyper = {"blob": "x" * blob} if blob else {}
    try:
        while got < n:
            while sent < n and sent - got < 128:
                seed = first_seed + sent
                d.send(encode(Envelope(
                    type=MessageType.REQUEST.value, source="test", ts=0.0, id=f"w-{seed}",
                    payload={"method": "submit", "args": {"config": {
                        "seed": seed, "hyperparameters": hyper}}})))
                sent += 1
            assert d.poll(10_000), f"no reply after {got} of {n} submits"
            assert decode(d.recv()).payload["ok"] is True
            got += 1
    finally:
        d.close(linger=0)
