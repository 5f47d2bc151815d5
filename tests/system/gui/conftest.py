"""GUI tests: Qt offscreen, and one real stack for the module (bus, registry,
dispatcher with 2 fake GPUs, gateway on a free port: guisystem.System) that the GUI
talks to over gRPC. This ``system`` fixture (module-scoped) stands for that stack here,
in place of tests/system/conftest.py's supervisord ``system``."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before anything imports Qt

from typing import Any, Iterator

import pytest

from tests.system.gui.guisystem import System


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
    w.details.plot.timer.setInterval(300)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitUntil(lambda: w.health.connected is True, timeout=30000)
    yield w
    w.close()
    assert w.bridge.isFinished()
    assert all(t.isFinished() for t in w.details.log_pane.retired)
    assert w.details.log_pane.thread is None
    assert w.calls.pool.activeThreadCount() == 0
