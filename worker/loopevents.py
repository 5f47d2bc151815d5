"""What a training loop yields to its driver. Plain data: a training loop imports
this module, never the SDK or the bus, so it runs (and is tested) without either.

    Progress    after every episode: heartbeat fields
    Iteration   after every iteration: metrics to log; a checkpoint may follow
    Evaluating  an evaluation begins (the liveness rules pause until its Evaluation)
    Evaluation  after every evaluation (and the final one): returns, metrics to log
    Video       an evaluation episode's MP4, closed and complete, ready to register
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Progress:
    step: int                      # env steps of training so far
    episode: int                   # training episodes so far
    last_return: float
    mean_return: float             # over the recent training episodes


@dataclass(frozen=True)
class Iteration:
    iteration: int                 # iterations completed, 1, 2, ...
    step: int
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluating:
    index: int                     # the Evaluation.index that follows


@dataclass(frozen=True)
class Evaluation:
    index: int                     # evaluations so far: 0 is before any training
    iteration: int
    step: int
    returns: tuple[float, ...]
    final: bool = False
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return sum(self.returns) / len(self.returns) if self.returns else 0.0


@dataclass(frozen=True)
class Video:
    path: str                      # absolute path of the finished MP4
    evaluation: int                # Evaluation.index it belongs to
    iteration: int
    step: int
    episode: int                   # training episodes so far
    frames: int
    duration_s: float
    episode_return: float


LoopEvent = Progress | Iteration | Evaluating | Evaluation | Video
