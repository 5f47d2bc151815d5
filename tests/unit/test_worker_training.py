"""The built-in workers' training loops, in-process, without the SDK or the bus:
learning is real, runs are deterministic, a checkpoint resumes exactly."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pytest

from core.runconfig import RunConfig
from worker import cartpole, checkpoint, qlearning
from worker.loopevents import Evaluation, Iteration, Progress
from worker.hparams import parse

pytestmark = pytest.mark.timeout(60)


def trainer(module: Any, tmp_path: Any, state: Optional[tuple] = None, **config: Any) -> Any:
    cfg = RunConfig.from_map({"worker": module.__name__.split(".")[-1], **config})
    hp = parse(module.PARAMS, cfg.hyperparameters, "test")
    return module.build(cfg, hp, str(tmp_path), state)


def drain(t: Any, final: bool = True) -> list[Any]:
    try:
        events = list(t.train()) + (list(t.final()) if final else [])
    finally:
        t.close()
    return events


def returns(events: list[Any]) -> list[float]:
    return [e.last_return for e in events if isinstance(e, Progress)]


def evaluations(events: list[Any]) -> list[Evaluation]:
    return [e for e in events if isinstance(e, Evaluation)]


def test_cartpole_learns_in_a_small_budget(tmp_path: Any) -> None:
    events = drain(trainer(cartpole, tmp_path, seed=3, steps=20_000))
    evals = evaluations(events)
    first, last = evals[0], evals[-1]
    assert first.index == 0 and first.step == 0 and not first.final
    assert last.final and len(last.returns) == 20
    assert first.mean < 50, first.returns          # the untrained policy drops the pole
    assert last.mean >= 400, last.returns           # ... the trained one balances it
    its = [e for e in events if isinstance(e, Iteration)]
    assert its and its[-1].step >= 20_000 and "elite_threshold" in its[-1].metrics


def test_cartpole_is_deterministic_per_seed(tmp_path: Any) -> None:
    a = drain(trainer(cartpole, tmp_path / "a", seed=7, steps=5_000))
    b = drain(trainer(cartpole, tmp_path / "b", seed=7, steps=5_000))
    c = drain(trainer(cartpole, tmp_path / "c", seed=8, steps=5_000))
    assert returns(a) == returns(b) and len(returns(a)) > 50
    assert [e.returns for e in evaluations(a)] == [e.returns for e in evaluations(b)]
    assert returns(a) != returns(c)


@pytest.mark.parametrize("module,env", [(cartpole, "CartPole-v1"),
                                        (qlearning, "FrozenLake-v1")])
def test_a_checkpoint_resumes_the_same_run(module: Any, env: str, tmp_path: Any) -> None:
    """Stop after 2 iterations, save, resume from the file: the rest is identical to an
    uninterrupted run (counters, RNG state and parameters are all in the file)."""
    params = {"episodes_per_iteration": 20} if module is qlearning else {"population": 8}
    conf = dict(env=env, seed=5, steps=6_000, hyperparameters=params)
    whole = returns(drain(trainer(module, tmp_path / "w", **conf), final=False))
    t = trainer(module, tmp_path / "a", **conf)
    head = []
    for event in t.train():
        if isinstance(event, Progress):
            head.append(event.last_return)
        if isinstance(event, Iteration) and event.iteration == 2:
            break
    arrays, meta = t.snapshot()
    t.close()
    path = str(tmp_path / "ck.npz")
    checkpoint.save(path, arrays, meta)
    state = checkpoint.load_resume(path, str(tmp_path), module.ALGORITHM)
    tail = returns(drain(trainer(module, tmp_path / "b", state=state, **conf), final=False))
    assert head + tail == whole


def test_qlearning_beats_random_on_slippery_frozenlake(tmp_path: Any) -> None:
    t = trainer(qlearning, tmp_path, env="FrozenLake-v1", seed=2, steps=60_000,
                hyperparameters={"final_eval_episodes": 500})
    final = evaluations(drain(t))[-1]
    learned = final.metrics["eval_success_rate"]
    chance = t.extra_metrics()["random_success_rate"]
    assert chance < 0.05 and learned > 0.5, (chance, learned)


def test_qlearning_is_deterministic_and_runs_taxi(tmp_path: Any) -> None:
    conf = dict(env="Taxi-v4", seed=4, steps=3_000,
                hyperparameters={"episodes_per_iteration": 5, "final_eval_episodes": 5})
    a, b = (drain(trainer(qlearning, tmp_path / n, **conf)) for n in "ab")
    assert returns(a) == returns(b) and len(returns(a)) >= 15


def test_wrong_spaces_and_mismatched_checkpoints_are_refused(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="Discrete observation"):
        trainer(qlearning, tmp_path, env="CartPole-v1")
    with pytest.raises(ValueError, match="flat Box"):
        trainer(cartpole, tmp_path, env="FrozenLake-v1")
    state = ({"mean": np.zeros(3), "std": np.ones(3)}, {"iteration": 1})
    with pytest.raises(ValueError, match="shape"):
        trainer(cartpole, tmp_path, state=state)
