"""bus.asyncrpc.AsyncRpcClient against a real ROUTER (bus.rpc.RpcServer) in a thread:
replies matched by id with many calls in flight, a lost reply retried with the same
id, typed errors, Unavailable when nobody answers."""

from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
import zmq

from bus.asyncrpc import AsyncRpcClient
from bus.rpc import Unavailable, error, ok
from core.errors import NotFound
from tests.integration.rpc_server import Server


@pytest.fixture
def endpoint(tmp_path) -> str:
    return f"ipc://{tmp_path}/rpc"


def _client(endpoint: str, ctx: zmq.Context, **kw: Any) -> AsyncRpcClient:
    return AsyncRpcClient(ctx, endpoint, "test", **kw)


def _exchange(endpoint: str, use: Callable[[AsyncRpcClient], Any],
              answer: Callable[[str, dict, str], Any] | None = None, hold: int = 1,
              **client_kw: Any) -> tuple[Any, AsyncRpcClient, Server | None]:
    """Run ``await use(client)`` on a fresh loop against a Server (when ``answer``)."""
    server = Server(endpoint, answer, hold) if answer is not None else None
    ctx = zmq.Context()
    clients: list[AsyncRpcClient] = []

    async def main() -> Any:
        client = _client(endpoint, ctx, **client_kw)
        clients.append(client)
        try:
            return await use(client)
        finally:
            client.close()
    try:
        return asyncio.run(main()), clients[0], server
    finally:
        if server is not None:
            server.close()
        ctx.term()


def test_many_calls_in_flight_each_get_their_own_reply(endpoint: str) -> None:
    async def use(client: AsyncRpcClient) -> list[Any]:
        return await asyncio.gather(*(client.call("double", {"n": n}) for n in range(8)))
    results, _, _ = _exchange(endpoint, use, lambda m, a, i: ok({"n": a["n"] * 2}), hold=8,
                              timeout_s=5, retries=0)
    assert [r["n"] for r in results] == [n * 2 for n in range(8)]


def test_a_lost_reply_is_retried_with_the_same_id(endpoint: str) -> None:
    dropped: list[str] = []

    def answer(method: str, args: dict, rid: str) -> Any:
        if not dropped:
            dropped.append(rid)
            return None  # as if the reply were lost
        return ok({"id": rid})
    result, client, server = _exchange(
        endpoint, lambda c: c.call("submit", {}, request_id="same-id"), answer,
        timeout_s=0.3, retries=2)
    assert result == {"id": "same-id"} and client.retried == 1
    assert server is not None and server.seen == ["same-id", "same-id"]


def test_a_server_error_is_raised_typed(endpoint: str) -> None:
    with pytest.raises(NotFound):
        _exchange(endpoint, lambda c: c.call("get_run", {"run_id": "r1"}),
                  lambda m, a, i: error(NotFound("run r1 does not exist")),
                  timeout_s=5, retries=0)


def test_nobody_answering_is_unavailable_after_every_attempt(endpoint: str) -> None:
    async def use(client: AsyncRpcClient) -> int:
        with pytest.raises(Unavailable):
            await client.call("ping")
        return client.retried
    retried, _, _ = _exchange(endpoint, use, timeout_s=0.1, retries=2)
    assert retried == 2


def test_calls_to_a_server_that_is_down_end_in_time_and_are_never_delivered_later(
        endpoint: str) -> None:
    ctx = zmq.Context()
    server = None
    try:
        async def down_then_up() -> tuple[int, Any, float]:
            nonlocal server
            client = _client(endpoint, ctx, timeout_s=0.05, retries=1)
            try:
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                failed = 0
                for _ in range(20):
                    try:
                        await client.call("submit", {"n": 1})
                    except Unavailable:
                        failed += 1
                took = loop.time() - t0
                server = Server(endpoint, lambda m, a, i: ok({"id": i}))
                client.timeout_s = 5.0
                fresh = await client.call("submit", {"n": 2}, request_id="after-restart")
                return failed, fresh, took
            finally:
                client.close()
        failed, fresh, took = asyncio.run(down_then_up())
    finally:
        if server is not None:
            server.close()
        ctx.term()
    assert failed == 20 and took < 20 * 2 * 0.05 * 3  # each call: its two attempts, no hang
    assert fresh == {"id": "after-restart"}
    assert server is not None and server.seen == ["after-restart"]  # nothing stale


def test_concurrent_calls_to_a_server_that_is_down_all_end_in_time(endpoint: str) -> None:
    """Calls in flight together: each ends Unavailable after its own attempts (a call
    that waited for the socket to take its request used to hang for good once another
    call was waiting too)."""
    async def use(client: AsyncRpcClient) -> list[float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()

        async def one() -> float:
            with pytest.raises(Unavailable):
                await client.call("ping")
            return loop.time() - t0
        return await asyncio.wait_for(asyncio.gather(one(), one(), one()), 10)
    took, _, _ = _exchange(endpoint, use, timeout_s=0.2, retries=1)
    assert max(took) < 2 * 0.2 * 3, took


def test_calls_sharing_a_request_id_all_get_its_reply(endpoint: str) -> None:
    async def use(client: AsyncRpcClient) -> list[Any]:
        return await asyncio.gather(client.call("submit", {}, request_id="twice"),
                                    client.call("submit", {}, request_id="twice"))
    results, _, _ = _exchange(endpoint, use, lambda m, a, i: ok({"id": i}), hold=2,
                              timeout_s=5, retries=0)
    assert results == [{"id": "twice"}, {"id": "twice"}]
