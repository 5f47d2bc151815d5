"""The bearer token and the interceptor that demands it.

The token is TRAINER_GATEWAY_TOKEN if set, else the text of
``$TRAINER_HOME/gateway.token``, which the gateway creates (mode 0600, 256 random
bits) at its first start on a loopback address. Every call except the standard
health service needs the metadata ``authorization: Bearer <token>``; anything else
is answered UNAUTHENTICATED before the handler runs.
"""

from __future__ import annotations

import hmac
import os
import secrets
import stat
from typing import Any, Awaitable, Callable, Optional

import grpc

TOKEN_FILE = "gateway.token"
EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


class TokenError(Exception):
    """No usable token (the gateway refuses to start)."""


def token_path(home: str) -> str:
    return os.path.join(home, TOKEN_FILE)


def read_token(home: str, env_token: str = "") -> Optional[str]:
    """The configured token, or None when neither the variable nor the file has one."""
    if env_token.strip():
        return env_token.strip()
    try:
        with open(token_path(home), encoding="utf-8") as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        return None
    return text or None


def load_or_create(home: str, env_token: str = "", create: bool = True) -> tuple[str, bool]:
    """(token, created). Creates the file with mode 0600 when allowed and missing."""
    token = read_token(home, env_token)
    if token is not None:
        return token, False
    if not create:
        raise TokenError(f"no token: set TRAINER_GATEWAY_TOKEN or write {token_path(home)}")
    os.makedirs(home, mode=0o700, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(token_path(home), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its token
        again = read_token(home)
        if again is None:
            raise TokenError(f"{token_path(home)} exists but is empty") from None
        return again, False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token, True


def too_open(home: str) -> bool:
    """True when the token file can be read by group or others."""
    try:
        mode = os.stat(token_path(home)).st_mode
    except FileNotFoundError:
        return False
    return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))


def bearer_ok(metadata: Any, token: str) -> bool:
    expected = f"Bearer {token}".encode()
    for key, value in metadata or ():
        if key == "authorization":
            got = value.encode() if isinstance(value, str) else bytes(value)
            return hmac.compare_digest(got, expected)
    return False


class TokenInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, token: str, on_refused: Callable[[str], None] | None = None) -> None:
        self.token = token
        self.on_refused = on_refused

    async def intercept_service(
            self, continuation: Callable[[grpc.HandlerCallDetails],
                                         Awaitable[grpc.RpcMethodHandler]],
            details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        method = details.method or ""
        if method.startswith(EXEMPT_PREFIXES) or bearer_ok(details.invocation_metadata,
                                                           self.token):
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:
            return handler
        if self.on_refused is not None:
            self.on_refused(method)
        return _refusing(handler)


async def _deny(_request: Any, context: grpc.aio.ServicerContext) -> None:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                        "missing or wrong 'authorization: Bearer <token>' metadata "
                        "(the token is in $TRAINER_HOME/gateway.token)")


async def _deny_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
    await _deny(request, context)
    yield None  # pragma: no cover - abort raises first


def _refusing(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """A handler of the same shape as ``handler`` that answers UNAUTHENTICATED."""
    kwargs = {"request_deserializer": None, "response_serializer": None}
    if handler.request_streaming and handler.response_streaming:
        async def both(_it: Any, context: grpc.aio.ServicerContext) -> Any:
            await _deny(None, context)
            yield None  # pragma: no cover
        return grpc.stream_stream_rpc_method_handler(both, **kwargs)
    if handler.request_streaming:
        async def client_stream(_it: Any, context: grpc.aio.ServicerContext) -> None:
            await _deny(None, context)
        return grpc.stream_unary_rpc_method_handler(client_stream, **kwargs)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(_deny_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(_deny, **kwargs)
