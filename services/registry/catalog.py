"""What the registry checks a run config's env against: the env ids gymnasium registers.
(Its worker: runtime.workers.WorkerCatalog, shared with the dispatcher.)"""

from __future__ import annotations

from runtime.envplugins import ENV_PLUGIN_GROUP, load_env_plugins

HOW_TO_REGISTER = (f"an env is accepted once gymnasium registers it: declare a "
                   f"{ENV_PLUGIN_GROUP!r} entry point in its distribution (a function "
                   f"that calls gymnasium.register) and install it")


class EnvCatalog:
    """Gymnasium's registry, imported on first use (it costs ~200 ms), with the env
    plugins (entry points ``gymnasium.envs``) loaded into it.

    Only ids that are keys of ``gymnasium.envs.registry`` are accepted. A
    ``module:Env-v0`` id is refused: gymnasium would import ``module`` (run its
    top-level code) to find the env, and a submitted config must not choose code to
    run. A plugin installed after the registry started is seen at its next start."""

    def __init__(self) -> None:
        self._registry: object | None = None

    def refusal(self, env_id: str) -> str:
        """The message for a config whose env is ``env_id``, which is not accepted."""
        if ":" in env_id:
            why = (f"{env_id!r} is refused: a module:Env id makes gymnasium import the "
                   f"module, which a submitted config may not choose")
        else:
            why = f"gymnasium does not register the env id {env_id!r}"
        broken = load_env_plugins()
        if broken:
            why += "; env plugins that failed to load: " + "; ".join(
                f"{name} ({error})" for name, error in sorted(broken.items()))
        return f"{why}; {HOW_TO_REGISTER}"

    def __call__(self, env_id: str) -> bool:
        if ":" in env_id:
            return False
        if self._registry is None:
            import gymnasium
            load_env_plugins()
            self._registry = gymnasium.envs.registry
        return env_id in self._registry  # type: ignore[operator]
