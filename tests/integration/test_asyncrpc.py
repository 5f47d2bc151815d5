"""bus.asyncrpc.AsyncRpcClient against a real ROUTER (bus.rpc.RpcServer) in a thread:
replies matched by id with many calls in flight, a lost reply retried with the same
id, typed errors, Unavailable when nobody answers."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import pytest
import zmq

from bus.asyncrpc import AsyncRpcClient
from bus.rpc import RpcServer, Unavailable, error, ok
from core.errors import NotFound


class Server:
    """Answers requests with ``answer(method, args, id)``; None drops the request.
    Holds up to ``hold`` requests and answers them in reverse order."""

    def __init__(self, endpoint: str, answer: Callable[[str, dict, str], Any],
                 hold: int = 1) -> None:
        self.ctx = zmq.Context()
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        self.server = RpcServer(sock, "test-server")
        self.answer, self.hold = answer, hold
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        held = []
        while not self.stop.is_set():
            if not self.server.sock.poll(20):
                continue
            req = self.server.recv_nowait()
            if req is None or not hasattr(req, "method"):
                continue
            self.seen.append(req.id)
            held.append(req)
            if len(held) < self.hold:
                continue
            for r in reversed(held):
                payload = self.answer(r.method, r.args, r.id)
                if payload is not None:
                    self.server.reply(r.identity, r.id, payload)
            held = []

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def endpoint(tmp_path) -> str:
    return f"ipc://{tmp_path}/rpc"


def _client(endpoint: str, ctx: zmq.Context, **kw: Any) -> AsyncRpcClient:
    return AsyncRpcClient(ctx, endpoint, "test", **kw)


def test_many_calls_in_flight_each_get_their_own_reply(endpoint: str) -> None:
    server = Server(endpoint, lambda m, a, i: ok({"n": a["n"] * 2}), hold=8)
    ctx = zmq.Context()
    try:
        async def main() -> list[Any]:
            client = _client(endpoint, ctx, timeout_s=5, retries=0)
            try:
                return await asyncio.gather(*(client.call("double", {"n": n})
                                              for n in range(8)))
            finally:
                client.close()
        results = asyncio.run(main())
    finally:
        server.close()
        ctx.term()
    assert [r["n"] for r in results] == [n * 2 for n in range(8)]


def test_a_lost_reply_is_retried_with_the_same_id(endpoint: str) -> None:
    dropped: list[str] = []

    def answer(method: str, args: dict, rid: str) -> Any:
        if not dropped:
            dropped.append(rid)
            return None  # as if the reply were lost
        return ok({"id": rid})
    server = Server(endpoint, answer)
    ctx = zmq.Context()
    try:
        async def main() -> tuple[Any, int]:
            client = _client(endpoint, ctx, timeout_s=0.3, retries=2)
            try:
                return await client.call("submit", {}, request_id="same-id"), client.retried
            finally:
                client.close()
        result, retried = asyncio.run(main())
    finally:
        server.close()
        ctx.term()
    assert result == {"id": "same-id"} and retried == 1
    assert server.seen == ["same-id", "same-id"]


def test_a_server_error_is_raised_typed(endpoint: str) -> None:
    server = Server(endpoint, lambda m, a, i: error(NotFound("run r1 does not exist")))
    ctx = zmq.Context()
    try:
        async def main() -> None:
            client = _client(endpoint, ctx, timeout_s=5, retries=0)
            try:
                await client.call("get_run", {"run_id": "r1"})
            finally:
                client.close()
        with pytest.raises(NotFound):
            asyncio.run(main())
    finally:
        server.close()
        ctx.term()


def test_nobody_answering_is_unavailable_after_every_attempt(endpoint: str) -> None:
    ctx = zmq.Context()
    try:
        async def main() -> AsyncRpcClient:
            client = _client(endpoint, ctx, timeout_s=0.1, retries=2)
            try:
                with pytest.raises(Unavailable):
                    await client.call("ping")
            finally:
                client.close()
            return client
        client = asyncio.run(main())
    finally:
        ctx.term()
    assert client.retried == 2
