"""The ServiceStatus message every service publishes on ``status.<service>``."""

from __future__ import annotations

import os
import socket
from importlib import metadata
from typing import Any, Callable

from bus.codec import Envelope, MessageType
from bus.topics import status_topic
from runtime.versions import installed_versions
from core.clock import Clock

DISTRIBUTION = "trainer-orchestrator"   # pyproject.toml's [project] name
UNKNOWN_VERSION = "0+unknown"            # run from a checkout that was never installed


def package_version(version_of: Callable[[str], str] = metadata.version) -> str:
    """The installed distribution's version (pyproject.toml holds the only copy), or
    UNKNOWN_VERSION where the code runs without being installed (``make install``
    installs it)."""
    try:
        return version_of(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return UNKNOWN_VERSION


PACKAGE_VERSION = package_version()


class StatusBeacon:
    """Builds a status message every ``interval`` seconds; the owner sends it."""

    def __init__(self, service: str, interval: float, clock: Clock,
                 counters: Callable[[], dict[str, Any]]) -> None:
        self.service = service
        self.interval = interval
        self.clock = clock
        self.counters = counters
        self.started_at = clock.now()
        self._next = clock.monotonic()
        self._static = {"service": service, "pid": os.getpid(), "host": socket.gethostname(),
                        "version": PACKAGE_VERSION, "versions": installed_versions(),
                        "started_at": self.started_at}

    def hurry(self) -> None:
        """The next ``due()`` answers at once (a probe wanted now)."""
        self._next = min(self._next, self.clock.monotonic())

    def due_in(self) -> float:
        """Seconds until ``due()`` answers (0 when it is due now)."""
        return max(0.0, self._next - self.clock.monotonic())

    def due(self) -> tuple[str, Envelope] | None:
        now = self.clock.monotonic()
        if now < self._next:
            return None
        self._next = now + self.interval
        payload = {**self._static, "interval": self.interval, "counters": self.counters()}
        return status_topic(self.service), Envelope(
            type=MessageType.SERVICE_STATUS.value, source=self.service, ts=self.clock.now(),
            payload=payload)
