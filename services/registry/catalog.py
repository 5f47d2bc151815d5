"""What the registry checks a run config's env against: the env ids gymnasium knows.
(Its worker: core.workers.WorkerCatalog, shared with the dispatcher.)"""

from __future__ import annotations

import importlib.util
import re

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
