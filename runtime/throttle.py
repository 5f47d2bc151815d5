"""Log at most once every ``interval_s``, count the rest: a cause that repeats (a full
disk, a client polling without its token, a refusal retried every scheduling pass)
must not flood the log, and the line that does go out says how many were not logged.

    throttle = LogThrottle(10.0, clock)
    held = throttle.admit(key)      # None: counted, not to be logged
    if held is not None:
        log.warning("...", not_logged_since=held)

Each key (a method and an error code, say) has its own interval and count; the
default key ``None`` serves a caller with a single cause. Time comes from the clock
given (core.clock), so tests drive it by hand.
"""

from __future__ import annotations

from typing import Hashable, Optional

from core.clock import Clock


class LogThrottle:
    def __init__(self, interval_s: float, clock: Clock) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._logged_at: dict[Hashable, float] = {}   # key -> monotonic time of its line
        self._held: dict[Hashable, int] = {}          # key -> events not logged since

    def admit(self, key: Hashable = None) -> Optional[int]:
        """One event of ``key``. None when a line for ``key`` went out less than
        ``interval_s`` ago: the event is counted and must not be logged. Otherwise
        log it now: returns how many events of ``key`` were not logged since its last
        line (0 for the first)."""
        now = self.clock.monotonic()
        last = self._logged_at.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] = self._held.get(key, 0) + 1
            return None
        self._logged_at[key] = now
        return self._held.pop(key, 0)
