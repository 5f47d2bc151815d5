"""The GUI tests' stack: bus, registry and dispatcher processes with 2 fake GPUs, and a
gateway process on a free port (the module-scoped ``system`` fixture of conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from typing import Any

import zmq

from core.settings import Settings
from tests.system.gateway import Gateway
from tests.system.stack import Stack


class System:
    """The stack and its gateway; restart_gateway() starts a new one on the same port."""

    def __init__(self) -> None:
        self.home = tempfile.mkdtemp(prefix="tg-", dir="/tmp")
        self.env = {**os.environ, "TRAINER_HOME": self.home, "PYTHONUNBUFFERED": "1",
                    "TRAINER_FAKE_GPUS": "2", "TRAINER_CPU_SLOTS": "4", "TRAINER_TEST_WORKERS": "1",
                    "TRAINER_STATUS_INTERVAL": "0.5"}
        self.ctx = zmq.Context()
        self.stack = Stack(self.env, Settings.from_env(self.env), self.ctx)
        self.gateway: Gateway | None = None
        self.gateways: list[Gateway] = []

    def start(self) -> "System":
        self.stack.start_bus()
        self.stack.start_registry()
        self.stack.start_dispatcher()
        self.gateway = Gateway(self.stack)
        self.gateways.append(self.gateway)
        self.gateway.start()
        return self

    @property
    def addr(self) -> str:
        assert self.gateway is not None
        return self.gateway.addr

    def client(self) -> Any:
        assert self.gateway is not None
        return self.gateway.client()

    def restart_gateway(self) -> Gateway:
        assert self.gateway is not None
        return self.gateway.start()   # a new process, same port and token

    def close(self) -> None:
        for gw in self.gateways:
            gw.close()
        self.stack.close()
        done = threading.Event()
        threading.Thread(target=lambda: (self.ctx.term(), done.set()), daemon=True).start()
        if not done.wait(5):
            self.ctx.destroy(linger=0)
        shutil.rmtree(self.home, ignore_errors=True)
