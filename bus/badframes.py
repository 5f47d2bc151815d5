"""Bad frames are logged once per (sender, kind of error), then only counted."""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

from bus.codec import FrameError

MAX_KEYS = 10_000


class WarningLog(Protocol):
    """What the bad-frame log writes to (runtime.logs.ServiceLogger is one): the bus
    library does not import the service runtime."""

    def warning(self, event: str, **fields: Any) -> None: ...


class BadFrameLog:
    def __init__(self, log: WarningLog) -> None:
        self._log = log
        self.counts: Counter[tuple[str, str]] = Counter()
        self.total = 0

    def record(self, sender: str, error: FrameError) -> None:
        key = (sender, type(error).__name__)
        self.total += 1
        if key not in self.counts and len(self.counts) < MAX_KEYS:
            self._log.warning("bus.bad_frame", sender=sender, error=type(error).__name__,
                              reason=error.message[:300])
        if key in self.counts or len(self.counts) < MAX_KEYS:
            self.counts[key] += 1
