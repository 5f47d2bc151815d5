"""Requests that are not a valid protobuf message answer INVALID_ARGUMENT.

grpc's server runs a handler's ``request_deserializer`` itself, and a body it cannot
parse ends the call with UNKNOWN ("Exception deserializing request!") and a
traceback in the log. DecodeInterceptor hands every handler the raw bytes instead
and parses them inside the call, so that a bad body is refused like any bad field:
INVALID_ARGUMENT, ``trainer-field: request``, logged by nobody (the caller is told).
"""

from __future__ import annotations

import inspect
from typing import Any, AsyncIterator, Awaitable, Callable

import grpc

from services.gateway.errors import abort, invalid


async def parse(deserializer: Callable[[bytes], Any], raw: bytes,
                context: grpc.aio.ServicerContext) -> Any:
    try:
        return deserializer(raw)
    except Exception as exc:  # noqa: BLE001 - DecodeError, or anything a parser raises
        await abort(context, invalid("request", f"is not a valid protobuf message of "
                                     f"this method ({type(exc).__name__}: {exc})"[:400]))


def checked(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """``handler`` with its request parsing moved into the call."""
    deserializer = handler.request_deserializer
    if deserializer is None:
        return handler
    out = {"request_deserializer": None, "response_serializer": handler.response_serializer}
    if handler.request_streaming:
        def requests(raw: AsyncIterator[bytes],
                     context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async def each() -> AsyncIterator[Any]:
                async for item in raw:
                    yield await parse(deserializer, item, context)
            return each()
        if handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                _streams(handler.stream_stream, lambda raw, ctx: requests(raw, ctx)), **out)
        inner = handler.stream_unary

        async def stream_unary(raw: Any, context: grpc.aio.ServicerContext) -> Any:
            return await inner(requests(raw, context), context)
        return grpc.stream_unary_rpc_method_handler(stream_unary, **out)
    if handler.response_streaming:
        async def one(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            return await parse(deserializer, raw, context)
        return grpc.unary_stream_rpc_method_handler(_streams(handler.unary_stream, one), **out)
    unary = handler.unary_unary

    async def unary_unary(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await unary(await parse(deserializer, raw, context), context)
    return grpc.unary_unary_rpc_method_handler(unary_unary, **out)


def _streams(behaviour: Callable[..., Any],
             request: Callable[[Any, grpc.aio.ServicerContext], Any]) -> Callable[..., Any]:
    """A response-streaming behaviour of the same kind as ``behaviour``: an async
    generator stays one; a coroutine that writes with ``context.write`` stays one."""
    if inspect.isasyncgenfunction(behaviour):
        async def gen(raw: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            got = request(raw, context)
            if inspect.isawaitable(got):
                got = await got
            async for msg in behaviour(got, context):
                yield msg
        return gen

    async def coro(raw: Any, context: grpc.aio.ServicerContext) -> Any:
        got = request(raw, context)
        if inspect.isawaitable(got):
            got = await got
        return await behaviour(got, context)
    return coro


class DecodeInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        return checked(handler) if handler is not None else handler
