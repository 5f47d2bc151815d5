"""WAL maintenance: ``PRAGMA wal_checkpoint(TRUNCATE)`` on an interval, the
(busy, log frames, checkpointed frames) triple logged each time, and a warning when
busy stays > 0 several intervals in a row (a reader is holding the WAL). Also prunes
request-id records older than REQUEST_RETENTION_S."""

from __future__ import annotations

import sqlite3

from bus.logs import ServiceLogger
from core.clock import Clock

REQUEST_RETENTION_S = 24 * 3600.0
BUSY_TIMEOUT_MS = 5000  # the connection's usual busy timeout (migrations.connect)


class Checkpointer:
    def __init__(self, conn: sqlite3.Connection, interval_s: float, busy_warn_after: int,
                 clock: Clock, log: ServiceLogger) -> None:
        self.conn = conn
        self.interval_s = interval_s
        self.busy_warn_after = busy_warn_after
        self.clock = clock
        self.log = log
        self.busy_streak = 0
        self.runs = 0
        self.last: tuple[int, int, int] | None = None
        self._next = clock.monotonic() + interval_s

    def tick(self) -> None:
        now = self.clock.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self.checkpoint()

    def checkpoint(self) -> tuple[int, int, int]:
        # No busy wait: a reader holding the WAL must not stall the registry's loop.
        self.conn.execute("PRAGMA busy_timeout=0")
        try:
            busy, log_frames, done = self.conn.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.runs += 1
        self.last = (busy, log_frames, done)
        self.log.info("wal.checkpoint", busy=busy, log_frames=log_frames, checkpointed=done)
        self.busy_streak = self.busy_streak + 1 if busy else 0
        if self.busy_streak >= self.busy_warn_after:
            self.log.warning("wal.checkpoint_blocked", busy_intervals=self.busy_streak,
                             hint="a reader holds the WAL open; the -wal file keeps growing")
        cutoff = self.clock.now() - REQUEST_RETENTION_S
        self.conn.execute("DELETE FROM requests WHERE at < ?", (cutoff,))
        return self.last
