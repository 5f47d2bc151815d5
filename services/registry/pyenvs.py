"""The workers of each registered Python environment, for the check at submit: a run
naming ``python_env`` has its worker looked up among that environment's entry points
(runtime.workers.WorkerCatalog over the sys.path recorded at ``env add``), read from
the distributions' metadata in this process: no subprocess, nothing imported."""

from __future__ import annotations

import sqlite3
from typing import Callable, Optional

from core.envstate import EnvState
from core.runconfig import WorkerChecks
from runtime.workers import WorkerCatalog
from services.registry import store


class EnvWorkers:
    """``python_envs`` for core.runconfig.RunConfig.from_map: the worker checks of the
    environment of a name, None where none is registered. Each environment's catalog
    is kept (read again by the catalog's own reload rule) until its recorded sys.path
    changes (it was added again)."""

    def __init__(self, conn: sqlite3.Connection, test_workers: bool = False,
                 make: Callable[..., WorkerCatalog] = WorkerCatalog) -> None:
        self.conn = conn
        self.test_workers = test_workers
        self.make = make
        self._catalogs: dict[str, tuple[tuple[str, ...], WorkerCatalog]] = {}

    def catalog(self, env: EnvState) -> WorkerCatalog:
        kept = self._catalogs.get(env.name)
        if kept is None or kept[0] != env.sys_path:
            where = f"of the environment {env.name!r} ({env.python})"
            kept = (env.sys_path, self.make(test_workers=self.test_workers,
                                            path=env.sys_path, where=where))
            self._catalogs[env.name] = kept
        return kept[1]

    def __call__(self, name: str) -> Optional[WorkerChecks]:
        env = store.get_env(self.conn, name)
        if env is None:
            self._catalogs.pop(name, None)
            return None
        catalog = self.catalog(env)
        return catalog, catalog.resumes

    def refusal(self, name: str) -> str:
        """The message for a config whose python_env is ``name``, not registered."""
        names = [e.name for e in store.list_envs(self.conn)]
        return (f"no environment {name!r} is registered (trainer env add NAME PYTHON); "
                f"registered: {', '.join(names) if names else 'none'}")
