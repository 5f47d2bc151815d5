"""The wrappers of every TrainerService method: each call counted, a refusal (ours or
the registry's) turned into its gRPC status, a bug logged and answered INTERNAL, and a
stream counted against the gateway's limit and ended cleanly at shutdown."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import grpc

from core.errors import OrchestratorError
from services.gateway.errors import CallError, abort, exhausted, from_registry, restarting

T = TypeVar("T")


def unary(fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    @functools.wraps(fn)
    async def call(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        self.calls[fn.__name__] += 1
        try:
            return await fn(self, request, context)
        except CallError as exc:
            await abort(context, exc)
        except OrchestratorError as exc:  # a request the protocol refused (names the field)
            await abort(context, from_registry(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            self.log.exception("rpc.failed", method=fn.__name__, peer=context.peer())
            await abort(context, CallError(grpc.StatusCode.INTERNAL, "internal error",
                                           "internal"))
        raise AssertionError("unreachable")  # pragma: no cover
    return call


def streaming(fn: Callable[..., AsyncIterator[Any]]) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def call(self: Any, request: Any,
                   context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        self.calls[fn.__name__] += 1
        task = asyncio.current_task()
        try:
            if self.stopping:
                raise restarting()
            if self.streams >= self.cfg.max_watchers:
                raise exhausted("streams", f"the gateway serves at most "
                                f"{self.cfg.max_watchers} streams at once")
            self.streams += 1
            if task is not None:
                self.open_streams[task] = context
            try:
                async for msg in fn(self, request, context):
                    yield msg
            finally:
                self.streams -= 1
                if task is not None:
                    self.open_streams.pop(task, None)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            return  # end_streams has told the client UNAVAILABLE already
        except CallError as exc:
            await abort(context, exc)
        except OrchestratorError as exc:  # a request the protocol refused (names the field)
            await abort(context, from_registry(exc))
        except grpc.aio.AbortError:
            raise
        except Exception:
            self.log.exception("rpc.failed", method=fn.__name__, peer=context.peer())
            await abort(context, CallError(grpc.StatusCode.INTERNAL, "internal error",
                                           "internal"))
    return call
