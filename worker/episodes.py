"""Running whole episodes of a gymnasium env with a fixed policy, and evaluations
(a set of seeded episodes, the first optionally recorded to MP4). No SDK, no bus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from worker.video import Clip, EpisodeRecorder

Policy = Callable[[Any], int]


def run_episode(env: Any, policy: Policy, seed: int) -> tuple[float, int, bool]:
    """(return, steps, success) of one episode from ``reset(seed=seed)``. Success:
    the episode terminated (not truncated) on a positive reward, as reaching the goal
    does in FrozenLake and Taxi."""
    obs, _ = env.reset(seed=int(seed))
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(policy(obs))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps, bool(terminated and reward > 0)


def seeds(seed: int, stream: int, n: int) -> list[int]:
    """``n`` episode seeds, a pure function of the run seed and a stream number (one
    stream per purpose, so the evaluation seeds never change during a run)."""
    return [int(s) for s in np.random.SeedSequence([seed, stream]).generate_state(n)]


@dataclass(frozen=True)
class EvalResult:
    returns: tuple[float, ...]
    successes: tuple[bool, ...]
    steps: int
    clip: Optional[Clip]

    def metrics(self, with_success: bool) -> dict[str, float]:
        r = np.asarray(self.returns)
        out = {"eval_return_mean": float(r.mean()), "eval_return_min": float(r.min()),
               "eval_return_max": float(r.max()), "eval_episodes": float(r.size)}
        if with_success:
            out["eval_success_rate"] = float(np.mean(self.successes))
        return out


def evaluate(env: Any, policy: Policy, episode_seeds: Sequence[int],
             recorder: Optional[EpisodeRecorder] = None, video_name: str = "") -> EvalResult:
    """One episode per seed. With a recorder, the first is played on the recorder's
    env (same dynamics, same seed, so the same return) and saved as ``video_name``."""
    returns, successes, steps, clip = [], [], 0, None
    for i, seed in enumerate(episode_seeds):
        if i == 0 and recorder is not None:
            ret, n, ok, clip = recorder.record(policy, seed, video_name)
        else:
            ret, n, ok = run_episode(env, policy, seed)
        returns.append(ret)
        successes.append(ok)
        steps += n
    return EvalResult(tuple(returns), tuple(successes), steps, clip)
