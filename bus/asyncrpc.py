"""The request/reply client of ``bus.rpc`` for an asyncio loop: many calls in flight on
one DEALER socket, each reply matched to its call by request id, no thread hop.

Same frames, ids, timeouts and bounded retries as ``RpcClient``. A retry resends the
same request (same id) on the same socket: a DEALER, unlike a REQ, never gets stuck,
and the server answers a repeated id from its record of the first attempt. The socket
queues requests only for a live connection (``ZMQ_IMMEDIATE``) and a send never waits
(with no connection the attempt just times out), so a server that is down neither
stalls a call past its timeouts nor receives, when it is back, requests whose callers
were told Unavailable; after a call gives up the socket is replaced, dropping what it
still held. Replies that come after their call gave up are dropped. Calls that share a
request id all get its reply. Use it from its loop's thread only.
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import zmq
import zmq.asyncio

from bus.codec import Envelope, FrameError, MessageType, decode, encode
from bus.rpc import (DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, Unavailable, expiry,
                     request_payload, result_of)
from core.clock import Clock, SystemClock
from core.ids import new_request_id


class AsyncRpcClient:
    def __init__(self, ctx: zmq.Context, endpoint: str, source: str, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 clock: Clock | None = None) -> None:
        self.ctx = zmq.asyncio.Context.shadow(ctx)
        self.endpoint = endpoint
        self.source = source
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock or SystemClock()
        self.retried = 0
        self.late_replies = 0
        self._sock: Optional[zmq.asyncio.Socket] = None
        self._reader: Optional[asyncio.Task[None]] = None
        self._waiting: dict[str, list[asyncio.Future[Optional[Envelope]]]] = {}

    def _connect(self) -> zmq.asyncio.Socket:
        if self._sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.connect(self.endpoint)
            self._sock = sock
            self._reader = asyncio.get_running_loop().create_task(self._read(sock))
        return self._sock

    async def _read(self, sock: zmq.asyncio.Socket) -> None:
        """Hand each reply to the call waiting for its id."""
        while True:
            try:
                frame = await sock.recv()
            except zmq.ZMQError:
                return  # closed
            try:
                env = decode(frame)
            except FrameError:
                continue  # a garbled reply: its call retries or times out
            waiting = self._waiting.get(env.id or "") \
                if env.type == MessageType.REPLY.value else None
            if not waiting:
                self.late_replies += 1
                continue
            for fut in waiting:
                if not fut.done():
                    fut.set_result(env)

    async def call(self, method: str, args: dict[str, Any] | None = None, *,
                   timeout_s: float | None = None, retries: int | None = None,
                   request_id: str | None = None) -> Any:
        """The result of ``method``; raises the server's typed error, or Unavailable."""
        rid = request_id or new_request_id()
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.retries if retries is None else retries)
        frame = encode(Envelope(type=MessageType.REQUEST.value, source=self.source,
                                ts=self.clock.now(), id=rid, payload=request_payload(
                                    method, args or {}, expiry(timeout * attempts))))
        loop = asyncio.get_running_loop()
        for attempt in range(attempts):
            if attempt:
                self.retried += 1
            # A fresh future per attempt; a late reply to an earlier attempt (same id,
            # same answer) settles the current one just as well.
            fut: asyncio.Future[Optional[Envelope]] = loop.create_future()
            waiting = self._waiting.setdefault(rid, [])
            waiting.append(fut)
            deadline = loop.time() + timeout
            timer = loop.call_later(timeout, _expire, fut)
            try:
                await self._send(frame, deadline)
                reply = await fut
            finally:
                timer.cancel()
                waiting.remove(fut)
                if not waiting and self._waiting.get(rid) is waiting:
                    del self._waiting[rid]
            if reply is not None:
                return result_of(reply)
        self.close()  # a fresh socket next time: nothing of this call is left queued
        raise Unavailable(f"{self.endpoint} did not answer {method} within {timeout:g}s "
                          f"({attempts} attempts)", method=method, endpoint=self.endpoint)

    async def _send(self, frame: bytes, deadline: float) -> bool:
        """Queue ``frame`` once a connection can take it, by ``deadline`` at the latest
        (loop time); False if it could not be sent by then.

        While nothing can take it (no server: ZMQ_IMMEDIATE) the send is tried again
        after short pauses. Not a POLLOUT poll: zmq.asyncio queues every later send of
        the socket behind a pending poll, and such a send (another call's) would then
        wait for a POLLOUT that never comes while no server is there."""
        loop = asyncio.get_running_loop()
        pause = 0.005
        while True:
            sock = self._connect()  # another call that gave up may have replaced it
            try:
                await sock.send(frame, zmq.NOBLOCK)
                return True
            except zmq.Again:
                pass
            except zmq.ZMQError:
                if sock is self._sock:
                    raise
                continue  # closed under us by a call that gave up: the fresh one
            left = deadline - loop.time()
            if left <= 0:
                return False
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, 0.1)

    def close(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None


def _expire(fut: "asyncio.Future[Optional[Envelope]]") -> None:
    if not fut.done():
        fut.set_result(None)  # this attempt timed out
