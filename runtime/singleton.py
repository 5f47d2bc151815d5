"""One instance of a service per $TRAINER_HOME: an OS file lock (fcntl on POSIX,
msvcrt on Windows) on ``$TRAINER_HOME/locks/<service>.lock``, holding the pid.

The OS drops the lock when the process dies, however it dies, so a stale lock file
never blocks a restart.
"""

from __future__ import annotations

import os
import sys
from typing import IO

from core.errors import OrchestratorError


_WINDOWS_LOCK_OFFSET = 1 << 20


class AlreadyRunning(OrchestratorError):
    code = "already_running"


def _try_lock(fh: IO[str]) -> bool:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt
        try:
            # msvcrt locks bytes from the file position: always the same byte, far
            # past the pid, so that a waiting instance can still read the pid.
            fh.seek(_WINDOWS_LOCK_OFFSET)
            msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


class SingletonLock:
    def __init__(self, home: str, service: str) -> None:
        self.path = os.path.join(home, "locks", f"{service}.lock")
        self.service = service
        self.home = home
        self._fh: IO[str] | None = None

    def acquire(self) -> "SingletonLock":
        os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
        fh = open(self.path, "a+", encoding="ascii")
        if not _try_lock(fh):
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise AlreadyRunning(
                f"{self.service} is already running on {self.home} (pid {holder}); "
                f"stop it first or use another TRAINER_HOME", pid=holder)
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
