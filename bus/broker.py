"""The bus broker: a stateless XSUB/XPUB proxy with counters.

Publishers connect to the XSUB side, subscribers to the XPUB side. Subscriptions
flow from XPUB to XSUB, messages the other way. The forwarding is libzmq's own
``zmq_proxy_steerable`` running in a thread (C speed, the GIL released); the broker's
loop asks it for its STATISTICS (frames and bytes in and out of each side) and
publishes them as its status, through its own XSUB side like any publisher. The
broker never decodes a message (it cannot be killed by a bad one) and keeps no
state worth losing: after a restart ZeroMQ reconnects both sides and subscriptions
are sent again.
"""

from __future__ import annotations

import struct
import threading
from typing import Any, Callable, Protocol

import zmq

from bus.codec import Envelope, encode

_STAT_NAMES = ("frames_in", "bytes_in", "subscription_frames_out", "subscription_bytes_out",
               "subscription_frames_in", "subscription_bytes_in", "frames_out", "bytes_out")
CONTROL = "inproc://broker-control"


class Beacon(Protocol):
    """When the broker's status is due, and the message (runtime.status.StatusBeacon), built by
    ``python -m bus`` around the broker's counters: the bus library does not import the
    service runtime."""

    def due_in(self) -> float: ...
    def due(self) -> tuple[str, Envelope] | None: ...


class Broker:
    """Owns the proxy thread (which owns xsub and xpub), the control socket and the
    status publisher."""

    def __init__(self, ctx: zmq.Context, xsub: zmq.Socket, xpub: zmq.Socket,
                 status_pub: zmq.Socket,
                 beacon_for: Callable[[Callable[[], dict[str, Any]]], Beacon]) -> None:
        self.xsub, self.xpub, self.status_pub = xsub, xpub, status_pub
        proxy_side = ctx.socket(zmq.PAIR)
        proxy_side.bind(CONTROL)
        self.control = ctx.socket(zmq.PAIR)
        self.control.connect(CONTROL)
        self._proxy_side = proxy_side
        self.stats: dict[str, int] = dict.fromkeys(_STAT_NAMES, 0)
        self.beacon = beacon_for(self.counters)
        self.thread = threading.Thread(target=self._proxy, name="proxy", daemon=True)
        self.thread.start()
        self.poller = zmq.Poller()  # the signal wake (and monitors): the proxy forwards
        self._watched: dict[zmq.Socket, Callable[[zmq.Socket], None]] = {}
        self._closers: list[Callable[[], None]] = []

    def wake_on(self, fd: int) -> None:
        self.poller.register(fd, zmq.POLLIN)

    def watch(self, sock: zmq.Socket, on_ready: Callable[[zmq.Socket], None]) -> None:
        """Poll ``sock`` (a socket monitor) in the broker's loop; ``on_ready`` reads it."""
        self.poller.register(sock, zmq.POLLIN)
        self._watched[sock] = on_ready

    def on_close(self, closer: Callable[[], None]) -> None:
        """Called at close, after the proxy has stopped (the CURVE guard's)."""
        self._closers.append(closer)

    def _proxy(self) -> None:
        try:
            zmq.proxy_steerable(self.xsub, self.xpub, None, self._proxy_side)
        except zmq.ContextTerminated:
            pass

    def counters(self) -> dict[str, Any]:
        return dict(self.stats)

    def refresh_stats(self, timeout_ms: int = 1000) -> bool:
        # A reply that came after an earlier call gave up would answer this call with
        # old counters, and every later call one step late: take the late ones first.
        while self.control.poll(0):
            self._take_stats(self.control.recv_multipart())
        self.control.send(b"STATISTICS")
        if not self.control.poll(timeout_ms):
            return False
        self._take_stats(self.control.recv_multipart())
        return True

    def _take_stats(self, frames: list[bytes]) -> None:
        if len(frames) == len(_STAT_NAMES):
            self.stats = {n: struct.unpack("=Q", f)[0] for n, f in zip(_STAT_NAMES, frames)}

    def step(self, timeout_s: float) -> None:
        """Sleep until the next status is due (or a signal), then send it with fresh
        counters: idle, the broker's own loop wakes once per status interval."""
        if not self.thread.is_alive():
            raise RuntimeError("the bus proxy thread stopped")
        wait = min(timeout_s, self.beacon.due_in())
        if wait > 0:
            ready = dict(self.poller.poll(int(wait * 1000) + 1))
            for sock, on_ready in self._watched.items():
                if sock in ready:
                    on_ready(sock)
        if self.beacon.due_in() > 0:
            return
        self.refresh_stats()
        due = self.beacon.due()
        if due is not None:
            topic, env = due
            self.status_pub.send_multipart([topic.encode(), encode(env)])

    def close(self) -> None:
        self.control.send(b"TERMINATE")
        self.thread.join(5)
        for closer in self._closers:
            closer()
        for sock in (self.control, self._proxy_side, self.status_pub, self.xsub, self.xpub):
            sock.close(linger=0)
