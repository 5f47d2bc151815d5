"""What the registry checks a run config against: the env ids gymnasium knows and
the worker entry points installed in the group ``trainer.workers``. Both are read
again on a miss, so something installed after the registry started is found."""

from __future__ import annotations

import time
from importlib import metadata
from typing import Callable

WORKER_GROUP = "trainer.workers"


class WorkerCatalog:
    """Read again on a miss, at most every ``reload_s`` (a scan of the installed
    packages costs ms, inside the registry's batch: a client that keeps submitting an
    unknown name must not stall the others)."""

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
        if name not in self._names and (self._loaded_at is None or
                                        self.clock() - self._loaded_at >= self.reload_s):
            self._load()
        return name in self._names


class EnvCatalog:
    """Gymnasium's registry, imported on first use (it costs ~200 ms)."""

    def __call__(self, env_id: str) -> bool:
        import gymnasium
        if env_id in gymnasium.envs.registry:
            return True
        try:
            gymnasium.spec(env_id)  # resolves "module:Env-v0" ids by importing the module
        except (gymnasium.error.Error, ModuleNotFoundError, ValueError):
            return False
        return True
