"""Which workers are installed: the names of the entry points in the group
``trainer.workers`` (standard library only: ``importlib.metadata``). Used by the
registry (a config naming another worker is refused at submit) and the dispatcher
(one uninstalled since is refused at start)."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Callable

WORKER_GROUP = "trainer.workers"


class WorkerCatalog:
    """Read again when a name is asked and the last read is ``reload_s`` old, so that
    a worker installed or uninstalled meanwhile is seen within seconds; never more
    often (a scan of the installed packages costs ms, inside the registry's batch: a
    client that keeps submitting an unknown name must not stall the others)."""

    def __init__(self, reload_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._names: set[str] = set()
        self.reload_s = reload_s
        self.clock = clock
        self._loaded_at: float | None = None
        self.loads = 0

    def _load(self) -> None:
        self._names = {ep.name for ep in metadata.entry_points(group=WORKER_GROUP)}
        self._loaded_at = self.clock()
        self.loads += 1

    def __call__(self, name: str) -> bool:
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.reload_s:
            self._load()
        return name in self._names
