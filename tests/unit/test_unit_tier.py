"""The unit tier's rule is enforced, not claimed: under tests/unit, reaching for a zmq
context, a gRPC server, a network socket or a process fails the test with the rule
named (tests/unit/conftest.py). What the rule allows still works: asyncio's own event
loop (an AF_UNIX socketpair) and a gRPC channel, which connects only on a call."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import subprocess
from typing import Any, Callable

import grpc
import pytest
import zmq
import zmq.asyncio

from tests.conftest import TESTS, tier_of
from tests.unit.conftest import UnitTierViolation

def _unix_connect() -> None:
    sock = socket.socket(socket.AF_UNIX)  # allowed: asyncio makes such pairs itself
    try:
        sock.connect("/tmp/no-such.sock")
    finally:
        sock.close()


def _fork() -> None:
    if os.fork() == 0:  # only if the guard let it through: the child leaves at once
        os._exit(0)


FORBIDDEN: dict[str, Callable[[], Any]] = {
    "zmq.Context": zmq.Context,
    "zmq.Context.instance": zmq.Context.instance,
    "zmq.asyncio.Context": zmq.asyncio.Context,
    "grpc.server": lambda: grpc.server(None),  # type: ignore[arg-type]
    "grpc.aio.server": lambda: grpc.aio.server(),
    "socket.socket()": socket.socket,
    "socket AF_INET6": lambda: socket.socket(socket.AF_INET6, socket.SOCK_STREAM),
    "socket.create_connection": lambda: socket.create_connection(("127.0.0.1", 9)),
    "AF_UNIX connect": _unix_connect,
    "subprocess.run": lambda: subprocess.run(["true"], check=False),
    "subprocess.Popen": lambda: subprocess.Popen(["sleep", "30"]),
    "os.fork": _fork,
    "os.posix_spawn": lambda: os.posix_spawn("/bin/true", ["true"], dict(os.environ)),
    "os.system": lambda: os.system("true"),
    "multiprocessing": lambda: multiprocessing.Process(target=print).start(),
}


@pytest.mark.parametrize("reach", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_a_socket_or_a_process_fails_a_unit_test_naming_the_rule(reach: Callable[[], Any]) -> None:
    with pytest.raises(UnitTierViolation, match="unit tests open no socket and start no "
                                                "process .* belongs in tests/integration"):
        made = reach()
        getattr(made, "close", lambda: None)()  # only if the guard let it through


def test_asyncio_and_a_lazy_grpc_channel_stay_allowed() -> None:
    async def answer() -> int:  # the loop's own self-pipe is allowed: a callback runs
        done = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(done.set_result, 42)
        return await done
    assert asyncio.run(answer()) == 42
    channel = grpc.insecure_channel("127.0.0.1:1")
    channel.close()


@pytest.mark.parametrize(("path", "tier"), [
    ("unit/test_codec.py", "unit"), ("test_docs.py", "unit"),
    ("integration/test_asyncrpc.py", "integration"),
    ("integration/dispatcher/test_dispatcher_runs.py", "integration"),
    ("system/test_gateway.py", "system"), ("system/gui/test_gui.py", "system")])
def test_the_tier_marker_follows_the_folder(path: str, tier: str) -> None:
    assert tier_of(TESTS / path) == tier


def test_every_collected_test_has_its_folders_marker(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("unit") is not None
    assert request.node.get_closest_marker("integration") is None
