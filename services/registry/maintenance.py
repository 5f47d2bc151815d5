"""WAL maintenance: ``PRAGMA wal_checkpoint(TRUNCATE)`` on an interval, the
(busy, log frames, checkpointed frames) triple logged each time, and a warning when
busy stays > 0 several intervals in a row (a reader is holding the WAL). Also prunes
request-id records older than REQUEST_RETENTION_S, and writes ``events.anchor``
(eventstore/anchor.py) at each checkpoint and after a new log's first event."""

from __future__ import annotations

import sqlite3
from typing import Callable

from runtime.logs import ServiceLogger
from core.clock import Clock
from eventstore.anchor import write_anchor
from services.registry import replylog, storage
from services.registry.reserve import Reserve

REQUEST_RETENTION_S = 24 * 3600.0
BUSY_TIMEOUT_MS = 5000  # the connection's usual busy timeout (migrations.connect)


class Checkpointer:
    """``tick()`` checkpoints every ``interval_s``; ``shrink()`` at once (a full disk),
    with the room of the reserve (services/registry/reserve.py)."""

    def __init__(self, conn: sqlite3.Connection, interval_s: float, busy_warn_after: int,
                 clock: Clock, log: ServiceLogger,
                 anchor: tuple[str, Callable[[], tuple[int, bytes]]] | None = None,
                 reserve: Reserve | None = None) -> None:
        self.conn = conn
        self.reserve = reserve
        self.interval_s = interval_s
        self.busy_warn_after = busy_warn_after
        self.clock = clock
        self.log = log
        self.busy_streak = 0
        self.runs = 0
        self.failures = 0
        self.last: tuple[int, int, int] | None = None
        self.anchor = anchor  # (file, () -> (head seq, head hash))
        # A log that starts empty gets its anchor with its first event, not an interval
        # later: until then the audit could not check its tail.
        self._anchor_first_event = anchor is not None and anchor[1]()[0] == 0
        self._next = clock.monotonic() + interval_s

    def tick(self) -> None:
        if self._anchor_first_event and self.anchor is not None and self.anchor[1]()[0]:
            self._anchor_first_event = False
            try:
                self.write_anchor()
            except OSError as exc:  # a full disk: written again at the next checkpoint
                self.log.warning("anchor.not_written", reason=f"{type(exc).__name__}: {exc}")
        now = self.clock.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        self._fold(release=False)

    def due_in(self) -> float:
        """Seconds until ``tick()`` has a checkpoint to do."""
        return max(0.0, self._next - self.clock.monotonic())

    def shrink(self) -> None:
        """Checkpoint now, when the disk is full: truncating the WAL gives space back
        once the pages it holds are in events.db, for which the reserve is given up
        first (a failure is only logged)."""
        self._fold(release=True)

    def _fold(self, release: bool) -> None:
        """Checkpoint; on a full disk give up the reserve and try once more. A failure
        (the disk full all the same) is logged and tried again at the next interval;
        success makes the reserve again if there is room."""
        if release and self.reserve is not None:
            self.reserve.release()
        try:
            self.checkpoint()
        except (sqlite3.Error, OSError) as exc:
            if storage.is_full(exc) and self.reserve is not None and self.reserve.release():
                self._fold(release=False)
                return
            self.failures += 1
            self.log.warning("wal.checkpoint_failed", reason=f"{type(exc).__name__}: {exc}",
                             failures=self.failures, retry_in_s=self.interval_s)
            return
        if self.reserve is not None:
            self.reserve.ensure()   # made again from the room there is now

    def checkpoint(self) -> tuple[int, int, int]:
        """(busy, log frames, checkpointed frames) of this pass. A TRUNCATE that resets
        the WAL returns (0, 0, 0), the figures of the emptied WAL: so the frames are
        first copied back by a PASSIVE pass, whose figures are the ones logged (the
        TRUNCATE then has nothing left to copy and only resets the file). A TRUNCATE
        held up by a reader (busy 1) returns the WAL's figures itself: those are logged."""
        # No busy wait: a reader holding the WAL must not stall the registry's loop.
        self.conn.execute("PRAGMA busy_timeout=0")
        try:
            _, log_frames, done = self.conn.execute(
                "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            busy, left, left_done = self.conn.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        if busy or left:
            log_frames, done = left, left_done
        self.runs += 1
        self.last = (busy, log_frames, done)
        self.log.info("wal.checkpoint", busy=busy, log_frames=log_frames, checkpointed=done)
        self.busy_streak = self.busy_streak + 1 if busy else 0
        if self.busy_streak >= self.busy_warn_after:
            self.log.warning("wal.checkpoint_blocked", busy_intervals=self.busy_streak,
                             hint="a reader holds the WAL open; the -wal file keeps growing")
        replylog.prune(self.conn, self.clock.now() - REQUEST_RETENTION_S)
        self.write_anchor()
        return self.last

    def write_anchor(self) -> None:
        if self.anchor is not None:
            path, head = self.anchor
            seq, digest = head()
            if seq:
                write_anchor(path, seq, digest)
