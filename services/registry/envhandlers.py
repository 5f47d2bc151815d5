"""The registry's commands and queries on registered Python environments (streams
``env-<name>``; docs/WORKERS.md, "Your own environment"): add, remove, list, get. No
sockets here (service.py owns them); the decisions are core.envcommands'."""

from __future__ import annotations

from typing import Any

from core import envcommands as envcmds
from core import protocol as proto
from core.envstate import EnvState, env_view
from core.errors import NotFound
from core.fields import from_map
from eventstore.reader import StoredEvent
from services.registry import store
from services.registry.experiments import Appender
from services.registry.pyenvs import EnvWorkers


class EnvHandlers:
    def __init__(self, registry: Appender, python_envs: EnvWorkers) -> None:
        self.registry = registry
        self.conn = registry.conn
        self.python_envs = python_envs   # the workers of each environment

    def add(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(envcmds.AddEnv, args, "AddEnv")
        before = store.load_env(self.conn, envcmds.check_env_name(cmd.name))
        state, stored = self.registry._append(before, envcmds.decide_add_env(before, cmd),
                                              rid, src)
        assert isinstance(state, EnvState)
        return {"env": self.view(state), "created": bool(stored)}, stored

    def remove(self, args: dict[str, Any], rid: str,
               src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(envcmds.RemoveEnv, args, "RemoveEnv")
        before = store.load_env(self.conn, envcmds.check_env_name(cmd.name))
        events = envcmds.decide_remove_env(before, cmd, store.runs_using_env(self.conn,
                                                                              cmd.name))
        state, stored = self.registry._append(before, events, rid, src)
        assert isinstance(state, EnvState)
        return {"env": self.view(state)}, stored

    def list(self, q: proto.ListEnvs, head_seq: int) -> Any:
        return {"envs": [self.view(e) for e in store.list_envs(self.conn, q.include_removed)],
                "head_seq": head_seq}

    def get(self, q: proto.GetEnv, head_seq: int) -> Any:
        env = store.get_env(self.conn, q.name)
        if env is None:
            raise NotFound(f"environment {q.name!r} is not registered", name=q.name)
        return {"env": self.view(env), "head_seq": head_seq}

    def view(self, env: EnvState) -> dict[str, Any]:
        """An environment with the workers its entry points name (none once removed)."""
        return {**env_view(env), "workers": [] if env.removed
                else self.python_envs.catalog(env).names()}
