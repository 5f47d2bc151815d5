"""GetHealth answers while the gateway's thread pool is full (watchers catching up
from a registry that is away hold its threads): it asks the registry from the event
loop, and reports the registry down after its own short wait. A real ZeroMQ socket
to an endpoint nobody serves; no gRPC server needed for the report itself."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any, Optional

import pytest
import zmq

from services.gateway.buslisten import Telemetry
from services.gateway.calls import RegistryAccess
from services.gateway.health import Health

pytestmark = pytest.mark.timeout(30)


class NoDeadline:
    def time_remaining(self) -> Optional[float]:
        return None


def test_health_answers_while_the_pool_is_busy(tmp_path: Path) -> None:
    ctx = zmq.Context()
    registry = RegistryAccess(ctx, f"ipc://{tmp_path}/nobody", workers=1, timeout_s=0.3, retries=1)
    release = threading.Event()
    registry.pool.submit(release.wait, 20)  # the pool's only thread, held
    health = Health(registry, Telemetry(10), lambda: {"watchers": 0}, lambda: 0)

    async def ask() -> Any:
        try:
            t0 = time.monotonic()
            report = await asyncio.wait_for(health.report(NoDeadline()), 5)  # type: ignore
            return report, time.monotonic() - t0
        finally:
            registry.close_loop_client()
    try:
        report, took = asyncio.run(ask())
    finally:
        release.set()
        registry.close()
        ctx.term()
    assert took < 1.0  # its own wait (0.3 s), not the pool's
    registry_row = next(s for s in report.services if s.name == "registry")
    assert not registry_row.alive and registry_row.error
