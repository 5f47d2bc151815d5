"""Env plugins: the entry points of the group ``gymnasium.envs``, loaded once per
process before an env id is looked up in gymnasium's registry (standard library only:
the plugins import gymnasium themselves).

gymnasium 1.x no longer loads this group itself (0.26-0.29 did), so the registry, which
checks a submitted ``env`` against gymnasium's registry, and the worker, which makes the
env, load it here. A plugin is installed code, trusted as a worker is; a submitted config
never names a module to import. The entry point is either a callable, called with no
arguments, that registers its envs (``gymnasium.register``), or a module whose import
registers them."""

from __future__ import annotations

from importlib import metadata

ENV_PLUGIN_GROUP = "gymnasium.envs"

_loaded: dict[str, str] | None = None


def load_env_plugins() -> dict[str, str]:
    """Load every plugin once; the failures, as {entry point name: error}."""
    global _loaded
    if _loaded is None:
        failures: dict[str, str] = {}
        for ep in metadata.entry_points(group=ENV_PLUGIN_GROUP):
            try:
                target = ep.load()
                if callable(target):
                    target()
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the registry down
                failures[ep.name] = f"{type(exc).__name__}: {exc}"
        _loaded = failures
    return dict(_loaded)
