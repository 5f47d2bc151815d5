"""The bus broker: a stateless XSUB/XPUB proxy with counters.

Publishers connect to the XSUB side, subscribers to the XPUB side. Subscriptions
flow from XPUB to XSUB, messages the other way. The broker never decodes a message
(it cannot be killed by a bad one) and keeps no state worth losing: after a restart
ZeroMQ reconnects both sides and subscriptions are sent again.
"""

from __future__ import annotations

from typing import Any

import zmq

from bus.codec import encode
from bus.status import StatusBeacon
from core.clock import Clock, SystemClock

DRAIN_MAX = 1000  # messages forwarded per socket per poll, so neither side starves


class Broker:
    def __init__(self, xsub: zmq.Socket, xpub: zmq.Socket, status_interval: float,
                 clock: Clock | None = None) -> None:
        self.xsub = xsub
        self.xpub = xpub
        self.messages_in = 0
        self.messages_out = 0
        self.subscription_changes = 0
        self.clock = clock or SystemClock()
        self.beacon = StatusBeacon("bus", status_interval, self.clock, self.counters)
        self.poller = zmq.Poller()
        self.poller.register(xsub, zmq.POLLIN)
        self.poller.register(xpub, zmq.POLLIN)

    def counters(self) -> dict[str, Any]:
        return {"messages_in": self.messages_in, "messages_out": self.messages_out,
                "subscription_changes": self.subscription_changes}

    def step(self, timeout_s: float) -> None:
        ready = dict(self.poller.poll(int(timeout_s * 1000)))
        if self.xsub in ready:
            self.messages_in += _forward(self.xsub, self.xpub)
            self.messages_out = self.messages_in
        if self.xpub in ready:
            self.subscription_changes += _forward(self.xpub, self.xsub)
        due = self.beacon.due()
        if due is not None:
            topic, env = due
            self.xpub.send_multipart([topic.encode(), encode(env)])

    def close(self) -> None:
        self.xsub.close(linger=0)
        self.xpub.close(linger=0)


def _forward(src: zmq.Socket, dst: zmq.Socket) -> int:
    n = 0
    recv, send = src.recv_multipart, dst.send_multipart
    while n < DRAIN_MAX:
        try:
            frames = recv(zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        send(frames, copy=False)
        n += 1
    return n
