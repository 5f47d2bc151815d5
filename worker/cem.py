"""The cross-entropy method over a linear policy: pure numpy, no env, no I/O.

A policy is a parameter vector. With two actions it is ``w, b`` and acts
``1 if obs @ w + b > 0 else 0``; with n actions it is a ``(obs_dim + 1, n)`` matrix
and acts by argmax. Each iteration samples a population from a diagonal Gaussian,
keeps the best ``elite_frac`` and refits the Gaussian to them; extra exploration
noise, added in quadrature, decays linearly to zero (Szita & Lorincz, 2006), which
keeps the search from collapsing early.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def policy_dim(obs_dim: int, n_actions: int) -> int:
    return obs_dim + 1 if n_actions == 2 else (obs_dim + 1) * n_actions


def act(params: np.ndarray, obs: np.ndarray, n_actions: int) -> int:
    if n_actions == 2:
        return 1 if float(obs @ params[:-1]) + float(params[-1]) > 0.0 else 0
    table = params.reshape(-1, n_actions)
    return int(np.argmax(obs @ table[:-1] + table[-1]))


@dataclass
class CEM:
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def start(cls, dim: int, init_std: float) -> "CEM":
        return cls(np.zeros(dim), np.full(dim, float(init_std)))

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.mean + self.std * rng.standard_normal((n, self.mean.size))

    def update(self, population: np.ndarray, scores: np.ndarray, elite_frac: float,
               extra_std: float) -> dict[str, float]:
        """Refit to the elite; returns the iteration's statistics."""
        n_elite = max(2, int(round(len(scores) * elite_frac)))
        order = np.argsort(-scores, kind="stable")[:n_elite]
        elite = population[order]
        self.mean = elite.mean(axis=0)
        self.std = np.sqrt(elite.var(axis=0) + extra_std ** 2)
        return {"elite_threshold": float(scores[order[-1]]),
                "elite_mean": float(scores[order].mean()),
                "std_mean": float(self.std.mean())}


def extra_std(noise_std: float, decay_iters: int, iteration: int) -> float:
    """Exploration noise for the update after ``iteration`` (0-based)."""
    return noise_std * max(0.0, 1.0 - iteration / decay_iters)
