"""What the registry checks a run config against: the env ids gymnasium knows and
the worker entry points installed in the group ``trainer.workers``, read again as
they change, so something installed after the registry started is found."""

from __future__ import annotations

import importlib.util
import re
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


_MODULE_ENV = re.compile(r"^(?P<module>[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*):[\w.-]+(?:-v\d+)?$")


class EnvCatalog:
    """Gymnasium's registry, imported on first use (it costs ~200 ms).

    A ``module:Env-v0`` id names an env that importing ``module`` registers. The
    registry does not import it (a submitted config must not run code in the
    registry): it checks the id's form and that the module's top-level package is
    installed (found without running it); the worker imports the module at start."""

    def __call__(self, env_id: str) -> bool:
        match = _MODULE_ENV.match(env_id)
        if match is not None:
            top = match["module"].split(".")[0]
            return importlib.util.find_spec(top) is not None
        import gymnasium
        if env_id in gymnasium.envs.registry:
            return True
        try:
            gymnasium.spec(env_id)
        except (gymnasium.error.Error, ModuleNotFoundError, ValueError):
            return False
        return True
