"""The ``qlearning`` worker: tabular Q-learning with epsilon-greedy exploration on
FrozenLake-v1 (slippery by default), FrozenLake8x8-v1 or Taxi-v4 (any env with
Discrete observations and actions works). gymnasium 1.4 retired Taxi-v3: use Taxi-v4.

An iteration is ``episodes_per_iteration`` training episodes. Evaluations play the
greedy policy; the final one also plays a uniformly random policy on the same seeds,
so result.json shows how far above chance the learned policy is. Deterministic like
the cartpole worker: one numpy Generator seeded from the config seed drives
exploration and episode seeds. ``train()`` is a generator of worker.loopevents; ``main``
glues it to the SDK through worker/driver.py.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Iterator, Optional

import numpy as np

from core.runconfig import RunConfig
from worker import checkpoint
from worker.episodes import evaluate, seeds
from worker.loopevents import Evaluating, Evaluation, Iteration, LoopEvent, Progress, Video
from worker.hparams import Param
from worker.video import EpisodeRecorder, env_and_recorder

ALGORITHM = "q-table"
PARAMS = (
    Param("alpha", float, 0.1, 1e-6, 1.0, "learning rate"),
    Param("gamma", float, 0.99, 0.0, 1.0, "discount factor"),
    Param("epsilon_start", float, 1.0, 0.0, 1.0, "exploration rate at step 0"),
    Param("epsilon_end", float, 0.05, 0.0, 1.0, "exploration rate after the decay"),
    Param("epsilon_decay_frac", float, 0.5, 1e-6, 1.0,
          "fraction of the step budget over which epsilon decays linearly"),
    Param("episodes_per_iteration", int, 100, 1, 10**9, "training episodes per iteration"),
    Param("eval_every", int, 10, 1, 10**9, "evaluate the greedy policy every N iterations"),
    Param("eval_episodes", int, 100, 1, 1_000_000, "episodes per evaluation"),
    Param("final_eval_episodes", int, 1000, 1, 10_000_000,
          "episodes of the final evaluation (greedy and random)"),
    Param("env_kwargs", dict, {}, help="extra keyword arguments for gymnasium.make, "
                                        "e.g. {\"is_slippery\": false}"),
)


class QLearningTrainer:
    def __init__(self, cfg: RunConfig, hp: dict[str, Any], make_env: Callable[..., Any],
                 recorder: Optional[EpisodeRecorder] = None,
                 state: Optional[tuple[dict[str, np.ndarray], dict[str, Any]]] = None) -> None:
        from gymnasium import spaces
        self.cfg, self.hp, self.recorder = cfg, hp, recorder
        self.env = make_env()
        obs, act = self.env.observation_space, self.env.action_space
        if not isinstance(obs, spaces.Discrete) or not isinstance(act, spaces.Discrete):
            raise ValueError(f"{cfg.env}: the qlearning worker needs Discrete observation "
                             "and action spaces")
        self.q = np.zeros((int(obs.n), int(act.n)))
        self.rng = np.random.default_rng(cfg.seed)
        self.iteration = self.step = self.episode = 0
        self.recent: deque[float] = deque(maxlen=hp["episodes_per_iteration"])
        self.eval_seeds = seeds(cfg.seed, 1, hp["eval_episodes"])
        self.final_seeds = seeds(cfg.seed, 2, hp["final_eval_episodes"])
        self.random_success: Optional[float] = None
        self.random_return: Optional[float] = None
        if state is not None:
            self._restore(*state)
        self._snap = self._snapshot()

    def epsilon(self) -> float:
        hp = self.hp
        frac = min(1.0, self.step / (hp["epsilon_decay_frac"] * self.cfg.steps))
        return hp["epsilon_start"] + (hp["epsilon_end"] - hp["epsilon_start"]) * frac

    def _act(self, s: int, eps: float) -> int:
        q = self.q[s]
        if self.rng.random() < eps:
            return int(self.rng.integers(q.size))
        best = np.flatnonzero(q == q.max())          # random among ties
        return int(best[0] if best.size == 1 else best[self.rng.integers(best.size)])

    def train(self) -> Iterator[LoopEvent]:
        hp, env, q = self.hp, self.env, self.q
        alpha, gamma = hp["alpha"], hp["gamma"]
        if self.iteration % hp["eval_every"] == 0:
            # at 0 the untrained baseline; resumed, the evaluation due after the
            # checkpointed iteration (a periodic checkpoint is saved before it runs),
            # so a resumed run evaluates as the uninterrupted one did
            yield from self._evaluate(self.iteration // hp["eval_every"], final=False)
        while self.step < self.cfg.steps:
            returns, successes = [], 0
            for _ in range(hp["episodes_per_iteration"]):
                eps = self.epsilon()
                s, _ = env.reset(seed=int(self.rng.integers(0, 2**31 - 1)))
                total = 0.0
                while True:
                    a = self._act(s, eps)
                    s2, r, terminated, truncated, _ = env.step(a)
                    target = r if terminated else r + gamma * q[s2].max()
                    q[s, a] += alpha * (target - q[s, a])
                    s, total, self.step = s2, total + float(r), self.step + 1
                    if terminated or truncated:
                        break
                successes += bool(terminated and r > 0)
                self.episode += 1
                self.recent.append(total)
                returns.append(total)
                yield Progress(self.step, self.episode, total, float(np.mean(self.recent)))
            self.iteration += 1
            self._snap = self._snapshot()
            yield Iteration(self.iteration, self.step, {
                "return_mean": float(np.mean(returns)), "success_rate":
                successes / len(returns), "epsilon": self.epsilon(),
                "q_abs_mean": float(np.abs(q).mean()), "iteration": self.iteration,
                "episodes": self.episode})
            if self.iteration % hp["eval_every"] == 0:
                yield from self._evaluate(self.iteration // hp["eval_every"], final=False)

    def greedy(self) -> Callable[[Any], int]:
        q = self.q.copy()
        return lambda s: int(np.argmax(q[s]))

    def final(self) -> Iterator[LoopEvent]:
        rng = np.random.default_rng(np.random.SeedSequence([self.cfg.seed, 3]))
        n = self.q.shape[1]
        chance = evaluate(self.env, lambda s: int(rng.integers(n)), self.final_seeds)
        self.random_success = float(np.mean(chance.successes))
        self.random_return = float(np.mean(chance.returns))
        yield from self._evaluate(self.iteration // self.hp["eval_every"] + 1, final=True)

    def extra_metrics(self) -> dict[str, float]:
        if self.random_success is None:
            return {}
        return {"random_success_rate": self.random_success,
                "random_return_mean": float(self.random_return or 0.0)}

    def _evaluate(self, index: int, final: bool) -> Iterator[LoopEvent]:
        yield Evaluating(index)
        every = self.cfg.video_every
        record = every > 0 and (final or index % every == 0)
        result = evaluate(self.env, self.greedy(),
                          self.final_seeds if final else self.eval_seeds,
                          self.recorder if record else None,
                          "eval-final" if final else f"eval-{index:05d}")
        if result.clip is not None:
            c = result.clip
            yield Video(c.path, index, self.iteration, self.step, self.episode, c.frames,
                        c.duration_s, result.returns[0])
        yield Evaluation(index, self.iteration, self.step, result.returns, final,
                         result.metrics(with_success=True))

    def snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self._snap

    def _snapshot(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"q": self.q.copy()},
                {"algorithm": ALGORITHM, "env": self.cfg.env, "iteration": self.iteration,
                 "step": self.step, "episode": self.episode,
                 "rng": checkpoint.rng_state(self.rng), "recent": list(self.recent)})

    def _restore(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        if arrays["q"].shape != self.q.shape:
            raise ValueError(f"checkpoint Q table has shape {arrays['q'].shape}, "
                             f"{self.cfg.env} needs {self.q.shape}")
        self.q[:] = arrays["q"]
        self.iteration, self.step = int(meta["iteration"]), int(meta["step"])
        self.episode = int(meta["episode"])
        self.rng = checkpoint.restore_rng(meta["rng"])
        self.recent.extend(float(r) for r in meta.get("recent", []))

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.env.close()


def build(cfg: RunConfig, hp: dict[str, Any], run_dir: str,
          state: Optional[tuple[dict[str, np.ndarray], dict[str, Any]]]) -> QLearningTrainer:
    make_env, recorder = env_and_recorder(cfg.env, hp["env_kwargs"], cfg.video_every,
                                          run_dir)
    return QLearningTrainer(cfg, hp, make_env, recorder, state)


def main() -> int:
    from worker import driver  # the SDK (and the bus) only from here on
    return driver.run_worker("qlearning", PARAMS, ALGORITHM, build)
