"""Glue between a training loop (a generator of worker.loopevents) and the SDK: the
``main`` every built-in worker shares.

Order matters: SIGTERM is caught first (before gymnasium's ~0.2 s import), then the
``Run`` starts heartbeating, then the config and hyperparameters are checked (a bad
one ends the run with exit code 2, the field named on stderr and in result.json),
then training. The stop flag is checked after every event (at least once per
episode). On stop: checkpoint the last completed iteration, ``result.json`` status
``stopped``, exit 0. Otherwise: final evaluation, final checkpoint, ``completed``.

Resuming: the checkpoint is the SDK's ``run.take_checkpoint()``
(TRAINER_RESUME_CHECKPOINT, else the config's ``resume_from``); one that does not load
or does not fit is a bad config (exit 2, the field that named it given). Checkpoints
also carry the first and best evaluation means so far, so a resumed run reports the
same result.json metrics as the uninterrupted one (all but ``wall_s`` and
``steps_per_s``, which are this process's). Evaluations are declared to the liveness
rules (``run.set_phase``), and a checkpoint they ask for (SIGUSR2) is saved after the
event at hand (the last completed iteration's state).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Callable, Iterable, Optional

from runtime.envplugins import load_env_plugins
from core.errors import ValidationError
from worker import checkpoint, hparams, sdk
from worker.loopevents import Evaluating, Evaluation, Iteration, Progress, Video

EXIT_BAD_CONFIG = sdk.EXIT_BAD_CONFIG


def run_worker(name: str, params: tuple[hparams.Param, ...], algorithm: str,
               build: Callable[..., Any]) -> int:
    sdk.catch_sigterm()
    with sdk.Run.from_env() as run:
        try:
            cfg = sdk.load_config()
            hp = hparams.parse(params, cfg.hyperparameters, name)
            path = run.take_checkpoint()   # TRAINER_RESUME_CHECKPOINT, else resume_from
            state = (checkpoint.load_checked(path, algorithm, run.resume_source or "resume_from")
                     if path else None)
            trainer = _build(build, cfg, hp, run.run_dir, state, run.resume_source)
        except (ValidationError, OSError, ValueError) as exc:  # ValueError: bad JSON
            what = "cannot resume" if getattr(exc, "field", "") == sdk.RESUME_ENV \
                else "invalid config"
            print(f"{name}: {what}: {exc}", file=sys.stderr, flush=True)
            run.finish("failed", reason=f"{what}: {exc}")
            return EXIT_BAD_CONFIG
        try:
            return Driver(run, cfg, trainer, state[1] if state else None).go()
        finally:
            trainer.close()


def _build(build: Callable[..., Any], cfg: Any, hp: dict[str, Any], run_dir: str,
           state: Any, source: Optional[str] = "resume_from") -> Any:
    """The trainer; env and checkpoint mismatches become config errors (a checkpoint's
    naming ``source``, the field that named it)."""
    import gymnasium
    load_env_plugins()  # the env ids the registry accepted (runtime/envplugins.py)
    try:
        return build(cfg, hp, run_dir, state)
    except gymnasium.error.Error as exc:
        raise ValidationError("env", f"{cfg.env!r}: {exc}") from exc
    except (ValueError, TypeError, KeyError) as exc:
        field = (source or "resume_from") if state is not None else "env"
        raise ValidationError(field, str(exc)) from exc


FIRST_KEY, BEST_KEY = "first_eval_return_mean", "best_eval_return_mean"  # checkpoint meta


class Driver:
    def __init__(self, run: sdk.Run, cfg: Any, trainer: Any,
                 resumed: Optional[dict[str, Any]] = None) -> None:
        """``resumed``: the meta of the checkpoint the trainer was restored from, whose
        first and best evaluation means carry on."""
        self.run, self.cfg, self.trainer = run, cfg, trainer
        resumed = resumed or {}
        self.first_mean: Optional[float] = (float(resumed[FIRST_KEY])
                                            if FIRST_KEY in resumed else None)
        self.last: Optional[Evaluation] = None
        self.best = float(resumed.get(BEST_KEY, float("-inf")))
        self.saved: set[str] = set()
        self.start_step = self.step = int(trainer.snapshot()[1]["step"])
        self.t0 = time.monotonic()

    def go(self) -> int:
        run = self.run
        if not self._consume(self.trainer.train()) or not self._consume(self.trainer.final()):
            self.checkpoint("stop")
            run.finish("stopped", reason="stop requested (SIGTERM)", metrics=self.summary())
            return 0
        self.checkpoint("final")
        run.finish("completed", metrics=self.summary())
        return 0

    def _consume(self, events: Iterable[Any]) -> bool:
        """Handle events until they end (True) or a stop is requested (False)."""
        if self.run.stop_requested:
            return False
        for event in events:
            self.handle(event)
            if self.run.stop_requested:
                return False
            if self.run.checkpoint_requested:   # a liveness rule asked (SIGUSR2)
                self.run.checkpoint_done()
                self.checkpoint("requested")
        return True

    def handle(self, event: Any) -> None:
        run = self.run
        if isinstance(event, Progress):
            self.step = event.step
            run.progress(step=event.step, episode=event.episode,
                         last_return=event.last_return, mean_return=event.mean_return)
        elif isinstance(event, Iteration):
            self.step = event.step
            run.progress(iteration=event.iteration)
            run.log_metrics(event.step, **event.metrics)
            every = self.cfg.checkpoint_every
            if every and event.iteration % every == 0:
                self.checkpoint("periodic")
        elif isinstance(event, Evaluating):
            run.set_phase(sdk.EVALUATING)
        elif isinstance(event, Evaluation):
            run.set_phase("")
            if self.first_mean is None:
                self.first_mean = event.mean
            self.last = event
            self.best = max(self.best, event.mean)
            run.progress(eval_return=event.mean)
            run.log_metrics(event.step, **event.metrics, evaluation=event.index,
                            final=float(event.final))
        elif isinstance(event, Video):
            run.register_artifact(event.path, "video", episode=event.episode,
                                  evaluation=event.evaluation, iteration=event.iteration,
                                  step=event.step, frames=event.frames,
                                  duration_s=round(event.duration_s, 3),
                                  episode_return=event.episode_return)

    def checkpoint(self, reason: str) -> None:
        arrays, meta = self.trainer.snapshot()
        rel = os.path.join("checkpoints", f"iter-{int(meta['iteration']):06d}.npz")
        if rel in self.saved:
            return
        evals = {FIRST_KEY: self.first_mean} if self.first_mean is not None else {}
        if self.best > float("-inf"):
            evals[BEST_KEY] = self.best
        checkpoint.save(os.path.join(self.run.run_dir, rel), arrays,
                        {**meta, **evals, "run_id": self.run.run_id, "reason": reason,
                         "attempt": self.run.attempt})
        self.saved.add(rel)
        self.run.register_artifact(rel, "checkpoint", iteration=meta["iteration"],
                                   step=meta["step"], reason=reason)

    def summary(self) -> dict[str, Any]:
        wall = time.monotonic() - self.t0
        out: dict[str, Any] = {"steps": self.step, "wall_s": round(wall, 3), "steps_per_s":
                               round((self.step - self.start_step) / max(wall, 1e-9), 1)}
        _, meta = self.trainer.snapshot()
        out.update(iterations=meta["iteration"], episodes=meta["episode"])
        if self.last is not None:
            out.update(self.last.metrics)
            out["final_evaluation"] = self.last.final
            out["best_eval_return_mean"] = self.best
        if self.first_mean is not None:
            out[FIRST_KEY] = self.first_mean
        out.update(getattr(self.trainer, "extra_metrics", lambda: {})())
        return out
