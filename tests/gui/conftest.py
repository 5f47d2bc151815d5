"""GUI tests: Qt offscreen, and one real stack for the module (bus, registry,
dispatcher with 2 fake GPUs, gateway on a free port) that the GUI talks to over gRPC."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

import shutil
import tempfile
import threading
from typing import Any, Iterator

import pytest
import zmq

from core.settings import Settings
from tests.conftest import Stack
from tests.integration.test_gateway import Gateway


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


@pytest.fixture(scope="module")
def system() -> Iterator[System]:
    s = System()
    old_home = os.environ.get("TRAINER_HOME")
    os.environ["TRAINER_HOME"] = s.home   # where the GUI looks for artifacts
    try:
        yield s.start()
    finally:
        s.close()
        if old_home is None:
            os.environ.pop("TRAINER_HOME", None)
        else:
            os.environ["TRAINER_HOME"] = old_home


@pytest.fixture
def window(system: System, qtbot: Any) -> Iterator[Any]:
    """The main window on the system's gateway; on teardown it is closed and every
    thread it started must have ended."""
    from trainer.gui.app import MainWindow
    w = MainWindow(system.addr, system.gateway.token if system.gateway else None,
                   refresh_ms=300)
    w.details.timer.setInterval(300)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.health.connected is True, timeout=30000)
    yield w
    w.close()
    assert w.bridge.isFinished()
    assert all(t.isFinished() for t in w.details.retired)
    assert w.details.log_thread is None
    assert w.calls.pool.activeThreadCount() == 0
