"""The registry from the gateway: ``call`` from the event loop (bus.asyncrpc, every
call in flight on one socket, no thread hop) honouring the gRPC deadline; and a thread
pool for blocking work (file reads, long event fetches), whose threads each own one
blocking registry client (bus.rpc.RpcClient is not thread-safe).
"""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

import grpc
import zmq

from bus.asyncrpc import AsyncRpcClient
from bus.registry import RegistryClient, wire
from bus.rpc import RpcClient
from core.errors import OrchestratorError, Unavailable
from services.gateway.errors import CallError, from_registry

T = TypeVar("T")
SOURCE = "gateway"
RESERVE = 0.2        # of a call's remaining time, kept back to answer before its deadline
MAX_RESERVE_S = 0.5


def usable(budget: Optional[float]) -> Optional[float]:
    """Of the time left before a call's deadline, what the gateway may spend waiting
    for the registry: it stops early enough that its own DEADLINE_EXCEEDED (naming
    the registry method) reaches the client before the client's timer fires."""
    return None if budget is None else budget - min(RESERVE * budget, MAX_RESERVE_S)


def _settle(fut: "asyncio.Future[Any]", result: Any, exc: Optional[BaseException]) -> None:
    if fut.done():  # the awaiting call was cancelled meanwhile
        return
    if exc is not None:
        fut.set_exception(exc)
    else:
        fut.set_result(result)


class RegistryAccess:
    """``await registry.call(request, context)`` from the event loop (``request``: a
    core.protocol / core.commands dataclass)."""

    def __init__(self, ctx: zmq.Context, endpoint: str, workers: int, timeout_s: float,
                 retries: int) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        self.retries = retries
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gw-io")
        self._local = threading.local()
        self._clients: list[RpcClient] = []
        self._async: Optional[AsyncRpcClient] = None  # created on the loop, used there
        self._lock = threading.Lock()
        self.calls = 0
        self.unavailable = 0

    def client(self) -> RpcClient:
        """This thread's own client (created on first use)."""
        c: Optional[RpcClient] = getattr(self._local, "client", None)
        if c is None:
            c = RpcClient(self.ctx, self.endpoint, SOURCE, timeout_s=self.timeout_s,
                          retries=self.retries)
            self._local.client = c
            with self._lock:
                self._clients.append(c)
        return c

    def call_blocking(self, request: Any, *,
                      budget_s: Optional[float] = None, request_id: Optional[str] = None,
                      retries: Optional[int] = None) -> Any:
        """In a pool thread: the result, or the registry's typed error / Unavailable.
        ``budget_s`` (the time left before the call's deadline) bounds every attempt."""
        tries = 1 + (self.retries if retries is None else retries)
        timeout = self.timeout_s
        if budget_s is not None:
            timeout = max(0.01, min(timeout, budget_s / tries))
        self.calls += 1
        return RegistryClient(self.client()).call(request, timeout_s=timeout,
                                                  retries=tries - 1, request_id=request_id)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the pool (the loop stays free). Like run_in_executor,
        with one wake-up of the loop per call and no future chaining."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
                loop.call_soon_threadsafe(_settle, fut, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, fut, result, None)
        self.pool.submit(work)
        return await fut

    async def call(self, request: Any,
                   context: Optional[grpc.aio.ServicerContext] = None, *,
                   request_id: Optional[str] = None, retries: Optional[int] = None,
                   timeout_s: Optional[float] = None) -> Any:
        """The registry's answer; raises CallError (mapped code) on any failure."""
        budget = usable(context.time_remaining()) if context is not None else None
        if budget is not None and budget <= 0:
            raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded",
                            "deadline_exceeded")
        tries = 1 + (self.retries if retries is None else retries)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        cut_short = budget is not None and budget / tries < timeout
        if budget is not None and cut_short:
            timeout = max(0.01, budget / tries)
        if self._async is None:
            self._async = AsyncRpcClient(self.ctx, self.endpoint, SOURCE,
                                         timeout_s=self.timeout_s, retries=self.retries)
        self.calls += 1
        method, args = wire(request)
        try:
            return await self._async.call(method, args, timeout_s=timeout, retries=tries - 1,
                                          request_id=request_id)
        except OrchestratorError as exc:
            if isinstance(exc, Unavailable):
                self.unavailable += 1
                if cut_short:  # the deadline, not the registry timeout, ended the wait
                    raise CallError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                    f"deadline exceeded waiting for the registry ({method})",
                                    "deadline_exceeded") from None
            raise from_registry(exc) from None

    def close_loop_client(self) -> None:
        """On the event loop, as it ends: close the loop's registry client."""
        if self._async is not None:
            self._async.close()
            self._async = None

    def close(self) -> None:
        """From the main thread, once the loop has ended (a client the loop did not
        close, because it never ended, is left to the process's exit)."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            for c in self._clients:
                c.close()
            self._clients.clear()
