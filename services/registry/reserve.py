"""Room kept back for the event log: a file of RESERVE_BYTES next to events.db
(``events.reserve``), made while the disk has room and given up when it fills.

Why: the WAL holds every page a commit wrote, the same hot pages again and again (a
submit writes ~40 KB of it), and only a checkpoint folds it back into events.db and
truncates it. On a full disk that checkpoint cannot grow events.db by the few pages
it needs, so the WAL, many times larger, is never given back, even after the user
frees a little space. With the reserve gone, the checkpoint has its room: the WAL
shrinks to nothing and the registry serves commands again by itself.
"""

from __future__ import annotations

import os
import shutil
import time

from runtime.logs import ServiceLogger

RESERVE_BYTES = 8 * 1024 * 1024
LOG_S = 10.0
MARGIN_BYTES = 1024 * 1024
NAME = "events.reserve"


class Reserve:
    def __init__(self, path: str, log: ServiceLogger, size: int = RESERVE_BYTES) -> None:
        self.path = path
        self.size = size
        self.log = log
        self.released = 0
        self._logged_at = -LOG_S

    def held(self) -> bool:
        try:
            return os.path.getsize(self.path) >= self.size
        except OSError:
            return False

    def ensure(self) -> bool:
        """Hold the reserve if the disk has room for it and MARGIN_BYTES more; True if
        it is held. (Made again at once after a fold, before the commands that wait
        fill the disk again: once it is gone for good, a full disk can no longer fold
        its WAL back by itself.)"""
        if self.held():
            return True
        try:
            free = shutil.disk_usage(os.path.dirname(self.path) or ".").free
            if free < self.size + MARGIN_BYTES:
                return False
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.size)   # the blocks, not a sparse file
            finally:
                os.close(fd)
        except OSError as exc:
            self._remove()
            self.log.warning("storage.reserve_not_made", path=self.path, reason=str(exc))
            return False
        return True

    def release(self) -> bool:
        """Give the reserve's space back; True if there was one. Logged at most every
        LOG_S (under a storm that keeps the disk full it goes and comes back often)."""
        if not os.path.exists(self.path):
            return False
        self._remove()
        self.released += 1
        now = time.monotonic()
        if now - self._logged_at >= LOG_S:
            self._logged_at = now
            self.log.warning("storage.reserve_released", path=self.path, bytes=self.size,
                             times=self.released,
                             hint="the disk is full: the space kept for the event log is "
                                  "used to fold the WAL back; free space on this disk")
        return True

    def _remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
