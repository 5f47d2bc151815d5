"""What the registry checks a run config against: the env ids gymnasium knows and
the worker entry points installed in the group ``trainer.workers``. Both are read
again on a miss, so something installed after the registry started is found."""

from __future__ import annotations

from importlib import metadata

WORKER_GROUP = "trainer.workers"


class WorkerCatalog:
    def __init__(self) -> None:
        self._names: set[str] = set()

    def _load(self) -> None:
        self._names = {ep.name for ep in metadata.entry_points(group=WORKER_GROUP)}

    def __call__(self, name: str) -> bool:
        if name not in self._names:
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
