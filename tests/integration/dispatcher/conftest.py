"""Fixtures of the dispatcher's in-process tests: the service built with __new__ around
the stand-ins of fakes.py, and the stand-in worker processes, killed after each test."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any, Iterator

import pytest

from runtime.logs import ServiceLogger
from runtime.status import StatusBeacon
from core.clock import FakeClock
from core.settings import Settings
from services.dispatcher.inventory import Inventory
from services.dispatcher.pacing import Pacer
from services.dispatcher.refusals import RefusalLog
from services.dispatcher.service import DispatcherService
from services.dispatcher.supervision import BusHealth
from tests.integration.dispatcher.fakes import Forks, Publisher, Registry


@pytest.fixture
def svc(tmp_path: Any) -> DispatcherService:
    s = DispatcherService.__new__(DispatcherService)
    s.settings = Settings.from_env({"TRAINER_HOME": str(tmp_path),
                                    "TRAINER_TEST_WORKERS": "1"})
    s.pending, s.active, s.finishing, s.waiting = {}, {}, {}, {}
    s.held_elsewhere, s.unstarted, s.retry_due, s.known_seq = {}, set(), False, {}
    s.next_deadline = 0.0
    s.stats = {"started": 0, "finished": 0, "adopted": 0, "kills": 0}
    s.log = ServiceLogger("dispatcher-test")
    s.clock = FakeClock()
    s.log_refused = RefusalLog(s.log, s.clock)
    s.bus = BusHealth(1.5, s.clock.monotonic())
    s.beacon = StatusBeacon("dispatcher", 0.5, s.clock, dict)
    s.gpu_read = None
    s.pace = Pacer(s.beacon, s.bus, 0.5, 2.0, s.settings.tick)
    s.client, s.forks, s.publisher = Registry(), Forks(), Publisher()  # type: ignore
    s.inventory, s.cpu_slots, s.dirty = Inventory(), 4, False
    return s


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    out: list[subprocess.Popen[bytes]] = []
    yield out
    for p in out:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()
