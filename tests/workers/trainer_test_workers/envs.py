"""The test suite's env plugin (entry point ``gymnasium.envs`` of tests/workers):
registers ``TrainerTest/Walk-v0``, a CartPole under another id."""

from __future__ import annotations


def register() -> None:
    import gymnasium
    if "TrainerTest/Walk-v0" not in gymnasium.envs.registry:
        gymnasium.register("TrainerTest/Walk-v0",
                           entry_point="gymnasium.envs.classic_control:CartPoleEnv",
                           max_episode_steps=200)
