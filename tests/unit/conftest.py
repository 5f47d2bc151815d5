"""The unit tier opens no socket and starts no process, and this is checked: every test
under tests/unit runs with the entry points below replaced by ones that fail the test,
naming the rule. A test that needs one of them belongs in tests/integration (sockets in
the test process) or tests/system (real ``python -m`` processes).

Checked: a zmq Context (hence any zmq socket), a gRPC server, a network
socket (any family but AF_UNIX, and bind/connect on any socket: the AF_UNIX socketpair
that asyncio's event loop makes for itself is allowed), and a process: subprocess.Popen
(so subprocess.run and asyncio's subprocesses too), os.fork, os.forkpty,
os.posix_spawn(p), os.system and multiprocessing. A gRPC channel may be made (a client
under test builds one, then talks to a fake stub): a channel opens no connection until
a call goes through it."""

from __future__ import annotations

import multiprocessing.process
import os
import socket
import subprocess
from typing import Any, Callable, NoReturn

import grpc
import grpc.aio
import pytest
import zmq

RULE = ("unit tests open no socket and start no process (tests/unit/conftest.py): {what} "
        "was called; a test that needs it belongs in tests/integration or tests/system")


class UnitTierViolation(AssertionError):
    """Raised where a unit test reaches for a socket or a process."""


def _forbid(what: str) -> Callable[..., NoReturn]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise UnitTierViolation(RULE.format(what=what))
    return refuse


def _socket_init(original: Callable[..., None]) -> Callable[..., None]:
    def init(self: socket.socket, family: int = -1, type: int = -1, proto: int = -1,
             fileno: Any = None) -> None:
        if fileno is None and family not in (-1, socket.AF_UNIX):
            raise UnitTierViolation(RULE.format(what=f"socket.socket(family={family!r})"))
        if fileno is None and family == -1:  # socket.socket() is AF_INET
            raise UnitTierViolation(RULE.format(what="socket.socket()"))
        original(self, family, type, proto, fileno)
    return init


@pytest.fixture(autouse=True)
def no_sockets_no_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    def new_context(cls: type, *args: Any, **kwargs: Any) -> NoReturn:
        raise UnitTierViolation(RULE.format(what=f"{cls.__module__}.{cls.__name__}()"))
    monkeypatch.setattr(zmq.Context, "__new__", new_context)
    monkeypatch.setattr(grpc, "server", _forbid("grpc.server"))
    monkeypatch.setattr(grpc.aio, "server", _forbid("grpc.aio.server"))
    monkeypatch.setattr(socket.socket, "__init__", _socket_init(socket.socket.__init__))
    for name in ("bind", "connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, _forbid(f"socket.socket.{name}"))
    monkeypatch.setattr(subprocess.Popen, "_execute_child", _forbid("subprocess.Popen"))
    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
        monkeypatch.setattr(os, name, _forbid(f"os.{name}"))
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start",
                        _forbid("multiprocessing (Process.start)"))
