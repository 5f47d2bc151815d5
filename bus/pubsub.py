"""Publisher and Subscriber wrappers around sockets they are given (never created here)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import zmq

from bus.badframes import BadFrameLog
from bus.codec import FORMAT_VERSION, Envelope, FrameError, decode_message, encode, pack
from core.clock import Clock, SystemClock


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    envelope: Envelope


class Publisher:
    """Sends envelopes on a PUB socket connected to the broker's XSUB side."""

    def __init__(self, sock: zmq.Socket, source: str, clock: Clock | None = None) -> None:
        self.sock = sock
        self.source = source
        self.clock = clock or SystemClock()
        self.sent = 0

    def publish(self, topic: str, mtype: str, payload: dict[str, Any]) -> None:
        """Send a message without the ``Envelope`` object (the hot path of telemetry)."""
        self.sock.send_multipart([topic.encode("utf-8"), pack(
            {"v": FORMAT_VERSION, "type": mtype, "source": self.source,
             "ts": self.clock.now(), "payload": payload})])
        self.sent += 1

    def send(self, topic: str, env: Envelope) -> None:
        self.sock.send_multipart([topic.encode("utf-8"), encode(env)])
        self.sent += 1


class Subscriber:
    """Receives and decodes messages on a SUB socket; bad frames are logged and skipped."""

    def __init__(self, sock: zmq.Socket, bad_frames: BadFrameLog) -> None:
        self.sock = sock
        self.bad_frames = bad_frames

    def subscribe(self, prefix: str) -> None:
        self.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("utf-8"))

    def recv(self, timeout_ms: int) -> Optional[Message]:
        """The next valid message, or None when none came within the timeout."""
        while True:
            try:
                frames = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                if not self.sock.poll(timeout_ms, zmq.POLLIN):
                    return None
                continue
            msg = self._decode(frames)
            if msg is not None:
                return msg
            timeout_ms = 0

    def recv_nowait(self) -> Optional[Message]:
        """One message if one is waiting and valid; None otherwise (bad ones logged)."""
        try:
            frames = self.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        return self._decode(frames)

    def _decode(self, frames: list[bytes]) -> Optional[Message]:
        try:
            topic, env = decode_message(frames)
        except FrameError as exc:
            self.bad_frames.record("bus", exc)
            return None
        return Message(topic, env)
