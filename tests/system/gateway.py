"""The gateway process (``python -m services.gateway``) on a free port in front of a
Stack, and clients for it: shared by the test_gateway_* files and the GUI tests (the
``gateway`` fixture that starts one is in tests/system/conftest.py)."""

from __future__ import annotations

import os
from typing import Any

import grpc
import pytest

from tests.helpers import ServiceProcess, free_port, wait_until
from tests.system.stack import Stack
from trainer.client import Client, TrainerError
from trainer_api.v1 import trainer_pb2_grpc as pb_grpc

CONFIG = {"env": "CartPole-v1", "seed": 1, "tags": ["gw", "smoke"]}
GW_ENV = {"TRAINER_GATEWAY_REGISTRY_TIMEOUT": "0.5", "TRAINER_GATEWAY_REGISTRY_RETRIES": "1",
          "TRAINER_GATEWAY_WATCH_KEEPALIVE": "0.5", "TRAINER_GATEWAY_LOG_POLL": "0.05"}


class Gateway:
    """A gateway process on a free port, and clients for it."""

    def __init__(self, stack: Stack, extra_env: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.addr = f"127.0.0.1:{free_port()}"
        self.env = {**stack.env, **GW_ENV, "TRAINER_GATEWAY_ADDR": self.addr,
                    **(extra_env or {})}
        self.proc = ServiceProcess("services.gateway", self.env,
                                   os.path.join(stack.settings.home, "gateway.log"))
        self.clients: list[Client] = []
        self.channels: list[grpc.Channel] = []

    @property
    def token(self) -> str:
        with open(os.path.join(self.stack.settings.home, "gateway.token"),
                  encoding="utf-8") as fh:
            return fh.read().strip()

    def start(self, tls_ca: str = "") -> "Gateway":
        """Start the process; return once it serves and follows the event log."""
        mark = len(self.log()) if os.path.exists(self.proc.log_path) else 0
        self.proc.start()
        token_file = os.path.join(self.stack.settings.home, "gateway.token")

        def ready() -> bool:
            assert self.proc.alive(), self.proc.log()[mark:]
            if not os.path.exists(token_file):
                return False
            try:
                with Client(self.addr, self.token, timeout=2, tls_ca=tls_ca) as c:
                    c.health()
            except TrainerError:
                return False
            return '"bus.following"' in self.log()[mark:]
        wait_until(ready, 20, message="the gateway to serve and follow the event log")
        return self

    def client(self, token: str | None = None, **kw: Any) -> Client:
        c = Client(self.addr, self.token if token is None else token, **kw)
        self.clients.append(c)
        return c

    def channel(self) -> grpc.Channel:
        ch = grpc.insecure_channel(self.addr)
        self.channels.append(ch)
        return ch

    def stub(self) -> pb_grpc.TrainerServiceStub:
        return pb_grpc.TrainerServiceStub(self.channel())

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"),)

    def log(self) -> str:
        return self.proc.log()

    def close(self) -> None:
        for c in self.clients:
            c.close()
        for ch in self.channels:
            ch.close()
        self.proc.stop()


def rpc_error(fn: Any, *args: Any, **kw: Any) -> TrainerError:
    with pytest.raises(TrainerError) as info:
        fn(*args, **kw)
    return info.value


class _AddToken(grpc.UnaryUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    def _details(self, details: Any) -> Any:
        meta = list(details.metadata or []) + [("authorization", f"Bearer {self.token}")]
        return details._replace(metadata=meta) if hasattr(details, "_replace") else \
            _Details(details.method, details.timeout, meta, details.credentials)

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Any, details: Any, it: Any) -> Any:
        return continuation(self._details(details), it)


class _Details(grpc.ClientCallDetails):
    def __init__(self, method: str, timeout: Any, metadata: Any, credentials: Any) -> None:
        self.method, self.timeout, self.metadata, self.credentials = \
            method, timeout, metadata, credentials
        self.wait_for_ready = None
        self.compression = None
