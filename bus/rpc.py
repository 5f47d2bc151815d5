"""Request/reply over DEALER -> ROUTER, with request ids, timeouts and bounded retries.

Frames: the client (DEALER) sends one frame, an envelope of type Request with
``id`` (a request id) and payload ``{"method": str, "args": map}``. The ROUTER sees
``[identity, envelope]`` and answers ``[identity, envelope]`` with type Reply, the
same ``id`` and payload ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": {"code", "message", "details"}}``.

The client is the Lazy Pirate: on a timeout it closes its socket (linger 0), opens a
new one and sends the same request with the same id, a bounded number of times.
Because the id is reused, the registry answers a retried command from its record of
the first attempt instead of applying it twice.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, cast

import zmq

from bus.codec import Envelope, FrameError, FrameMalformed, MessageType, decode, encode
from core.clock import Clock, SystemClock
from core.errors import OrchestratorError, Unavailable, ValidationError
from core.ids import new_request_id

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 3
WAIT_SLICE_S = 0.25  # how often on_wait is called while a reply is awaited
EXPIRY_MARGIN_S = 0.1  # a request expires up to this long before its caller gives up


class RpcClient:
    """Not thread-safe: one client per thread."""

    def __init__(self, ctx: zmq.Context, endpoint: str, source: str, *,
                 timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 clock: Clock | None = None,
                 on_wait: Callable[[], None] | None = None) -> None:
        """``on_wait``: called every WAIT_SLICE_S while a reply is awaited (a service
        whose loop the call holds keeps publishing its status meanwhile)."""
        self.ctx = ctx
        self.on_wait = on_wait
        self.endpoint = endpoint
        self.source = source
        self.timeout_s = timeout_s
        self.retries = retries
        self.clock = clock or SystemClock()
        self.sock: Optional[zmq.Socket] = None
        self.retried = 0

    def _connect(self) -> zmq.Socket:
        if self.sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(self.endpoint)
            self.sock = sock
        return self.sock

    def _reset(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None

    def close(self) -> None:
        self._reset()

    def call(self, method: str, args: dict[str, Any] | None = None, *,
             timeout_s: float | None = None, retries: int | None = None,
             request_id: str | None = None) -> Any:
        """The result of ``method``; raises the server's typed error, or Unavailable."""
        expires = self._expires_at(timeout_s, retries)
        rid, frame = self._request(method, args or {}, request_id, expires)
        replies = self._exchange({rid: frame}, method, timeout_s, retries)
        return result_of(replies[rid])

    def call_many(self, calls: list[tuple[str, dict[str, Any]]], *,
                  timeout_s: float | None = None,
                  retries: int | None = None) -> list[Any | OrchestratorError]:
        """Several commands in flight at once (pipelined): all are sent, then every
        reply is awaited, so the server may apply them in one batch and the caller pays
        one round trip. The server applies them in the order given. Each entry of the
        result is that call's result, or its typed error (returned, not raised); raises
        Unavailable if some call is still unanswered after every retry. A retry resends
        the unanswered calls, in order, with their first ids."""
        expires = self._expires_at(timeout_s, retries)
        frames = dict(self._request(method, args, None, expires) for method, args in calls)
        replies = self._exchange(frames, calls[0][0] if calls else "", timeout_s, retries)
        return [_outcome(replies[rid]) for rid in frames]

    def _expires_at(self, timeout_s: float | None, retries: int | None) -> float:
        """When this call gives up: after it, the server must not apply it."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        return expiry(timeout * (1 + (self.retries if retries is None else retries)))

    def _request(self, method: str, args: dict[str, Any], rid: str | None = None,
                 expires_at: float | None = None) -> tuple[str, bytes]:
        rid = rid or new_request_id()
        return rid, encode(Envelope(type=MessageType.REQUEST.value, source=self.source,
                                    ts=self.clock.now(),
                                    payload=request_payload(method, args, expires_at), id=rid))

    def _exchange(self, frames: dict[str, bytes], method: str, timeout_s: float | None,
                  retries: int | None) -> dict[str, Envelope]:
        """Send every frame and collect the replies by id; on a timeout, a fresh socket
        (a late reply is dropped with the old one) and the unanswered frames again."""
        replies: dict[str, Envelope] = {}
        timeout = self.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.retries if retries is None else retries)
        for attempt in range(attempts):
            if attempt:
                self.retried += 1
            sock = self._connect()
            for rid, frame in frames.items():
                if rid not in replies:
                    sock.send(frame)
            self._await_all(sock, replies, frames, timeout)
            if len(replies) == len(frames):
                return replies
            self._reset()  # Lazy Pirate: a fresh socket drops any late reply
        what = method if len(frames) == 1 else \
            f"{len(frames) - len(replies)} of {len(frames)} calls"
        raise Unavailable(f"{self.endpoint} did not answer {what} within {timeout:g}s "
                          f"({attempts} attempts)", method=method, endpoint=self.endpoint)

    def _await_all(self, sock: zmq.Socket, replies: dict[str, Envelope],
                   frames: dict[str, bytes], timeout: float) -> None:
        deadline = self.clock.monotonic() + timeout
        while len(replies) < len(frames):
            left = deadline - self.clock.monotonic()
            if left <= 0:
                return
            wait = left if self.on_wait is None else min(left, WAIT_SLICE_S)
            if not sock.poll(int(wait * 1000) + 1, zmq.POLLIN):
                if self.on_wait is not None:
                    self.on_wait()
                continue
            try:
                env = decode(sock.recv())
            except FrameError:
                continue  # a garbled reply: wait for a good one or time out
            if env.type == MessageType.REPLY.value and env.id in frames:
                replies[env.id] = env


def _outcome(reply: Envelope) -> Any | OrchestratorError:
    try:
        return result_of(reply)
    except OrchestratorError as exc:
        return exc


def result_of(reply: Envelope) -> Any:
    payload = reply.payload
    if payload.get("ok") is True:
        return payload.get("result")
    error = payload.get("error")
    if not isinstance(error, dict):
        raise OrchestratorError("malformed error reply")
    if error.get("code") == Unavailable.code:  # e.g. read after its expires_at: as if
        raise Unavailable(str(error.get("message", "")))  # unanswered (retry it)
    raise OrchestratorError.from_dict(error)


def expiry(wait_s: float) -> float:
    """The ``expires_at`` of a request whose caller waits ``wait_s`` in all: wall-clock
    time (the server compares it with its own clock: same host, or synchronised
    clocks), a little before the caller gives up, so that the reply of a request
    applied at the last moment still has time to reach it."""
    return time.time() + wait_s - min(EXPIRY_MARGIN_S, wait_s / 10)


def request_payload(method: str, args: dict[str, Any],
                    expires_at: float | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"method": method, "args": args}
    if expires_at is not None:
        payload["expires_at"] = expires_at
    return payload


@dataclass(frozen=True, slots=True)
class Request:
    identity: bytes
    id: str
    method: str
    args: dict[str, Any]
    source: str
    # Wall-clock time after which the caller has given up: the server must not apply
    # a request it reads later (a hung server's socket may still hold it). None: never.
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now > self.expires_at


class RpcServer:
    """The ROUTER side: receive requests, send replies. Owns nothing but the socket."""

    def __init__(self, sock: zmq.Socket, source: str, clock: Clock | None = None) -> None:
        self.sock = sock
        self.source = source
        self.clock = clock or SystemClock()
        self.undeliverable = 0  # replies to clients that were gone (they retry)

    def recv_nowait(self) -> Request | FrameError | None:
        """A request, the FrameError of a bad one (with its sender), or None. A bad
        request that still carries an id is answered with the error right here, so
        its client learns why instead of timing out."""
        if not cast(int, self.sock.get(zmq.EVENTS)) & zmq.POLLIN:  # (an int option)
            return None  # (cheaper than the zmq.Again a recv would raise)
        try:
            frames = self.sock.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return None
        identity = frames[0]
        if len(frames) != 2:
            return _bad(identity, f"a request has 1 frame, not {len(frames) - 1}")
        try:
            env = decode(frames[1])
        except FrameError as exc:
            exc.details["sender"] = identity.hex()
            return exc
        if env.type != MessageType.REQUEST.value or not env.id:
            return _bad(identity, "not a Request envelope with an id")
        method = env.payload.get("method")
        args = env.payload.get("args")
        args = {} if args is None else args   # nil args: absent (no arguments)
        expires = env.payload.get("expires_at")
        refused = _payload_error(method, args, expires)
        if refused is not None:
            # Answered (docs/BUS.md: invalid_argument naming the field), and still
            # counted and logged once as a bad frame.
            self.reply(identity, env.id, error(refused))
            return _bad(identity, refused.message)
        return Request(identity, env.id, str(method), args, env.source,
                       None if expires is None else float(expires))

    def reply(self, identity: bytes, request_id: str, payload: dict[str, Any]) -> None:
        env = Envelope(type=MessageType.REPLY.value, source=self.source, ts=self.clock.now(),
                       payload=payload, id=request_id)
        try:
            self.sock.send_multipart([identity, encode(env)], zmq.NOBLOCK)
        except (zmq.Again, zmq.ZMQError):
            # The client is gone (EHOSTUNREACH with ROUTER_MANDATORY) or not reading; it
            # retries with the same id and gets the stored answer then.
            self.undeliverable += 1


def ok(result: Any) -> dict[str, Any]:
    return {"ok": True, "result": result}


def error(err: OrchestratorError) -> dict[str, Any]:
    return {"ok": False, "error": err.to_dict()}


def _payload_error(method: Any, args: Any, expires: Any) -> ValidationError | None:
    if not isinstance(method, str) or not method:
        return ValidationError("method", "is required: the name of the method (a string)")
    if not isinstance(args, dict):
        return ValidationError("args", f"must be a map (or absent), not {type(args).__name__}")
    if not (expires is None or (isinstance(expires, (int, float))
                                and not isinstance(expires, bool) and math.isfinite(expires))):
        return ValidationError("expires_at", "must be a finite number (unix time) if given")
    return None


def _bad(identity: bytes, reason: str) -> FrameError:
    return FrameMalformed(reason, sender=identity.hex())
