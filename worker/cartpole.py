"""The ``cartpole`` worker: the cross-entropy method (worker/cem.py) over a linear
policy on CartPole-v1 (any env with a Box observation and Discrete actions works).

``CartPoleTrainer.train()`` is the whole training loop as a generator of
worker.loopevents; it knows nothing of the SDK or the bus. ``main`` glues it to the SDK
through worker/driver.py. Deterministic: the config seed seeds the numpy Generator
that samples the population and the episode seeds; evaluations use fixed seeds
derived from it, so a run's returns are a function of its config.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Optional

import numpy as np

from core.runconfig import RunConfig
from worker import cem, checkpoint
from worker.episodes import evaluate, run_episode, seeds
from worker.loopevents import Evaluating, Evaluation, Iteration, LoopEvent, Progress, Video
from worker.hparams import Param
from worker.video import EpisodeRecorder, env_and_recorder

ALGORITHM = "cem-linear"
PARAMS = (
    Param("population", int, 32, 4, 100_000, "candidate policies sampled per iteration"),
    Param("elite_frac", float, 0.2, 0.01, 1.0, "fraction of the population refitted to"),
    Param("init_std", float, 1.0, 1e-6, 1e6, "initial std of every policy parameter"),
    Param("noise_std", float, 0.5, 0.0, 1e6,
          "extra exploration std, added in quadrature, decaying linearly to 0"),
    Param("noise_decay_iters", int, 10, 1, 10**9, "iterations over which noise_std decays"),
    Param("episodes_per_candidate", int, 1, 1, 1000, "episodes averaged per candidate"),
    Param("eval_every", int, 1, 1, 10**9, "evaluate the mean policy every N iterations"),
    Param("eval_episodes", int, 10, 1, 100_000, "episodes per evaluation"),
    Param("final_eval_episodes", int, 20, 1, 1_000_000, "episodes of the final evaluation"),
    Param("env_kwargs", dict, {}, help="extra keyword arguments for gymnasium.make"),
)


class CartPoleTrainer:
    def __init__(self, cfg: RunConfig, hp: dict[str, Any], make_env: Callable[..., Any],
                 recorder: Optional[EpisodeRecorder] = None,
                 state: Optional[tuple[dict[str, np.ndarray], dict[str, Any]]] = None) -> None:
        from gymnasium import spaces
        self.cfg, self.hp, self.recorder = cfg, hp, recorder
        self.env = make_env()
        obs_space, act_space = self.env.observation_space, self.env.action_space
        if not isinstance(obs_space, spaces.Box) or len(obs_space.shape) != 1 or \
                not isinstance(act_space, spaces.Discrete):
            raise ValueError(f"{cfg.env}: the cartpole worker needs a flat Box observation "
                             "space and Discrete actions")
        self.n_actions = int(act_space.n)
        self.cem = cem.CEM.start(cem.policy_dim(obs_space.shape[0], self.n_actions),
                                 hp["init_std"])
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = self.step = self.episode = 0
        self.recent: deque[float] = deque(maxlen=hp["population"])
        self.eval_seeds = seeds(cfg.seed, 1, hp["eval_episodes"])
        self.final_seeds = seeds(cfg.seed, 2, hp["final_eval_episodes"])
        if state is not None:
            self._restore(*state)
        self._snap = self._snapshot()

    # --- training ------------------------------------------------------------------
    def policy(self, params: np.ndarray) -> Callable[[Any], int]:
        n = self.n_actions
        return lambda obs: cem.act(params, obs, n)

    def train(self) -> Iterator[LoopEvent]:
        """Iterate until the step budget (checked between iterations) is spent."""
        hp = self.hp
        if self.iteration % hp["eval_every"] == 0:
            # at 0 the untrained baseline; resumed, the evaluation due after the
            # checkpointed iteration (a periodic checkpoint is saved before it runs),
            # so a resumed run evaluates as the uninterrupted one did
            yield from self._evaluate(self.iteration // hp["eval_every"], final=False)
        while self.step < self.cfg.steps:
            population = self.cem.sample(self.rng, hp["population"])
            episode_seeds = self.rng.integers(0, 2**31 - 1,
                                              (hp["population"], hp["episodes_per_candidate"]))
            scores = np.empty(len(population))
            for i, params in enumerate(population):
                act = self.policy(params)
                total = 0.0
                for seed in episode_seeds[i]:
                    ret, n, _ = run_episode(self.env, act, int(seed))
                    self.step += n
                    self.episode += 1
                    self.recent.append(ret)
                    total += ret
                    yield Progress(self.step, self.episode, ret, float(np.mean(self.recent)))
                scores[i] = total / len(episode_seeds[i])
            stats = self.cem.update(population, scores, hp["elite_frac"], cem.extra_std(
                hp["noise_std"], hp["noise_decay_iters"], self.iteration))
            self.iteration += 1
            self._snap = self._snapshot()
            yield Iteration(self.iteration, self.step, {
                "return_mean": float(scores.mean()), "return_max": float(scores.max()),
                "return_min": float(scores.min()), **stats, "iteration": self.iteration,
                "episodes": self.episode})
            if self.iteration % hp["eval_every"] == 0:
                yield from self._evaluate(self.iteration // hp["eval_every"], final=False)

    def final(self) -> Iterator[LoopEvent]:
        yield from self._evaluate(self.iteration // self.hp["eval_every"] + 1, final=True)

    def _evaluate(self, index: int, final: bool) -> Iterator[LoopEvent]:
        yield Evaluating(index)
        every = self.cfg.video_every
        record = every > 0 and (final or index % every == 0)
        result = evaluate(self.env, self.policy(self.cem.mean.copy()),
                          self.final_seeds if final else self.eval_seeds,
                          self.recorder if record else None,
                          "eval-final" if final else f"eval-{index:05d}")
        if result.clip is not None:
            c = result.clip
            yield Video(c.path, index, self.iteration, self.step, self.episode, c.frames,
                        c.duration_s, result.returns[0])
        yield Evaluation(index, self.iteration, self.step, result.returns, final,
                         result.metrics(with_success=False))

    # --- state ---------------------------------------------------------------------
    def snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The state at the end of the last completed iteration (what a stop saves)."""
        return self._snap

    def _snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"mean": self.cem.mean.copy(), "std": self.cem.std.copy()},
                {"algorithm": ALGORITHM, "env": self.cfg.env, "iteration": self.iteration,
                 "step": self.step, "episode": self.episode,
                 "rng": checkpoint.rng_state(self.rng), "recent": list(self.recent)})

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if arrays["mean"].shape != self.cem.mean.shape:
            raise ValueError(f"checkpoint policy has shape {arrays['mean'].shape}, "
                             f"{self.cfg.env} needs {self.cem.mean.shape}")
        self.cem = cem.CEM(arrays["mean"].astype(float), arrays["std"].astype(float))
        self.iteration, self.step = int(meta["iteration"]), int(meta["step"])
        self.episode = int(meta["episode"])
        self.rng = checkpoint.restore_rng(meta["rng"])
        self.recent.extend(float(r) for r in meta.get("recent", []))

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.env.close()


def build(cfg: RunConfig, hp: dict[str, Any], run_dir: str,
          state: Optional[tuple[dict[str, np.ndarray], dict[str, Any]]]) -> CartPoleTrainer:
    make_env, recorder = env_and_recorder(cfg.env, hp["env_kwargs"], cfg.video_every,
                                          run_dir)
    return CartPoleTrainer(cfg, hp, make_env, recorder, state)


def main() -> int:
    from worker import driver  # the SDK (and the bus) only from here on
    return driver.run_worker("cartpole", PARAMS, ALGORITHM, build)
