"""bus.rpc.RpcClient.call_many (pipelined commands) against a real ROUTER in a thread:
results in call order whatever the reply order, a typed error returned in its place,
a lost reply retried alone with its first id, Unavailable when nobody answers."""

from __future__ import annotations

from typing import Any, Callable

import pytest
import zmq

from bus.rpc import RpcClient, Unavailable, error, ok
from core.errors import NotFound
from tests.integration.rpc_server import Server


@pytest.fixture
def endpoint(tmp_path) -> str:
    return f"ipc://{tmp_path}/rpc"


def _run(endpoint: str, calls: list[tuple[str, dict]],
         answer: Callable[[str, dict, str], Any] | None, hold: int = 1,
         **client_kw: Any) -> tuple[list[Any], RpcClient, Server | None]:
    server = Server(endpoint, answer, hold) if answer is not None else None
    ctx = zmq.Context()
    client = RpcClient(ctx, endpoint, "test", **client_kw)
    try:
        return client.call_many(calls), client, server
    finally:
        client.close()
        if server is not None:
            server.close()
        ctx.term()


def test_results_come_in_call_order_whatever_the_reply_order(endpoint: str) -> None:
    calls = [("double", {"n": n}) for n in range(6)]
    # the server holds all six and answers them last first
    results, _, server = _run(endpoint, calls, lambda m, a, i: ok({"n": a["n"] * 2}),
                              hold=6, timeout_s=5, retries=0)
    assert [r["n"] for r in results] == [0, 2, 4, 6, 8, 10]
    assert server is not None and len(set(server.seen)) == 6  # six distinct request ids


def test_a_refused_call_is_returned_typed_in_its_place(endpoint: str) -> None:
    def answer(method: str, args: dict, rid: str) -> Any:
        if args["n"] == 1:
            return error(NotFound("run r1 does not exist"))
        return ok({"n": args["n"]})
    results, _, _ = _run(endpoint, [("get", {"n": n}) for n in range(3)], answer,
                         timeout_s=5, retries=0)
    assert results[0] == {"n": 0} and results[2] == {"n": 2}
    assert isinstance(results[1], NotFound) and "r1" in results[1].message


def test_only_the_unanswered_call_is_resent_with_its_first_id(endpoint: str) -> None:
    dropped: list[str] = []

    def answer(method: str, args: dict, rid: str) -> Any:
        if args["n"] == 1 and not dropped:
            dropped.append(rid)
            return None  # as if this one reply were lost
        return ok({"n": args["n"], "id": rid})
    results, client, server = _run(endpoint, [("cmd", {"n": n}) for n in range(3)], answer,
                                   timeout_s=0.3, retries=2)
    assert [r["n"] for r in results] == [0, 1, 2] and client.retried == 1
    assert server is not None and server.seen.count(dropped[0]) == 2
    assert len(server.seen) == 4  # the two answered calls were not sent again
    assert results[1]["id"] == dropped[0]


def test_nobody_answering_is_unavailable_after_every_attempt(endpoint: str) -> None:
    ctx = zmq.Context()
    client = RpcClient(ctx, endpoint, "test", timeout_s=0.1, retries=2)
    try:
        with pytest.raises(Unavailable, match="2 of 2 calls"):
            client.call_many([("a", {}), ("b", {})])
        assert client.retried == 2
        assert client.call_many([]) == []
    finally:
        client.close()
        ctx.term()
