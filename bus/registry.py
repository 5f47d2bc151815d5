"""The registry, typed, for its callers (the dispatcher, the gateway, the catch-up
follower, tools): requests are core.protocol / core.commands dataclasses, errors are
core.errors classes. It wraps bus.rpc (blocking) or bus.asyncrpc (asyncio); the wire
is docs/BUS.md's, unchanged.

    client = RegistryClient(RpcClient(ctx, endpoint, "dispatcher"))
    run = client.call(GetRun(run_id))["run"]
    results = client.call_many([ClaimGpus(...), FinishRun(...)])  # one round trip
    if isinstance(results[0], NotApplied): ...                     # retry it later
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from bus.asyncrpc import AsyncRpcClient
from bus.rpc import RpcClient
from core.errors import OrchestratorError
from core.protocol import method_of, to_args


def wire(request: Any) -> tuple[str, dict[str, Any]]:
    """(method name, args map) of a request object, as sent."""
    return method_of(request).value, to_args(request)


class RegistryClient:
    """Blocking calls; not thread-safe (one per thread, as RpcClient)."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc

    def call(self, request: Any, *, timeout_s: Optional[float] = None,
             retries: Optional[int] = None, request_id: Optional[str] = None) -> Any:
        """The result of ``request``; raises its typed error (core.errors), or
        Unavailable when no reply came."""
        method, args = wire(request)
        return self.rpc.call(method, args, timeout_s=timeout_s, retries=retries,
                             request_id=request_id)

    def call_many(self, requests: Sequence[Any], *, timeout_s: Optional[float] = None,
                  retries: Optional[int] = None) -> list[Any | OrchestratorError]:
        """Pipelined (bus.rpc.RpcClient.call_many): each entry is that request's result
        or its typed error, in order; Unavailable is raised if some stay unanswered."""
        return self.rpc.call_many([wire(r) for r in requests], timeout_s=timeout_s,
                                  retries=retries)

    def close(self) -> None:
        self.rpc.close()


class AsyncRegistryClient:
    """The same from an asyncio loop (bus.asyncrpc: every call in flight on one socket)."""

    def __init__(self, rpc: AsyncRpcClient) -> None:
        self.rpc = rpc

    async def call(self, request: Any, *, timeout_s: Optional[float] = None,
                   retries: Optional[int] = None) -> Any:
        method, args = wire(request)
        return await self.rpc.call(method, args, timeout_s=timeout_s, retries=retries)

    def close(self) -> None:
        self.rpc.close()
