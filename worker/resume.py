"""The resume contract of an attempt (docs/WORKERS.md, "Resuming"): which checkpoint
it resumes from (TRAINER_RESUME_CHECKPOINT, else the config's resume_from), whether
its worker took it, and the exit codes that say how a worker process ended. Pure: no
bus, no socket; worker.sdk.Run holds a Resume and re-exports these names."""

from __future__ import annotations

import os
from typing import Mapping, Optional

from core.errors import ValidationError
from worker.workerconfig import load_config

# A worker process's exit codes (worker.runner returns them; 0 is a clean end, also a
# stop). The dispatcher makes any code but 0 a FAILED run; result.json says why.
EXIT_BAD_CONFIG = 2          # the config, or the checkpoint it names, is unusable
EXIT_CHECKPOINT_IGNORED = 3  # given a checkpoint, it finished "completed" without taking it
CHECKPOINT_IGNORED = "checkpoint_ignored"  # result.json's "cause" for the exit code 3

ATTEMPT_ENV = "TRAINER_ATTEMPT"
RESUME_ENV = "TRAINER_RESUME_CHECKPOINT"

# What this process's exit status must be whatever its worker returns (see
# exit_status): set by a Run that finished with a checkpoint ignored.
_EXIT_STATUS = [0]


def mark_checkpoint_ignored() -> None:
    """This process's Run finished "completed" without taking its checkpoint."""
    _EXIT_STATUS[0] = EXIT_CHECKPOINT_IGNORED


def exit_status() -> int:
    """EXIT_CHECKPOINT_IGNORED once a Run of this process was given a checkpoint and
    finished "completed" without taking it, else 0. worker.runner turns a worker's
    exit code 0 into it, so the code reaches the process's exit status."""
    return _EXIT_STATUS[0]


def parse_attempt(text: Optional[str]) -> int:
    """TRAINER_ATTEMPT as an int: 1 when unset or empty; ValueError unless a whole
    number >= 1."""
    if text is None or not text.strip():
        return 1
    try:
        attempt = int(text.strip())
    except ValueError:
        attempt = 0
    if attempt < 1:
        raise ValueError(f"{ATTEMPT_ENV} must be a whole number >= 1, got {text!r}")
    return attempt


class Resume:
    """Which checkpoint an attempt resumes from, and whether its worker took it. Pure
    (no bus, no socket): a Run holds one.

    ``env_checkpoint``: TRAINER_RESUME_CHECKPOINT ("" when unset); it wins over the
    config's ``resume_from`` (a retried attempt continues from the run's own latest
    checkpoint, which is newer than the one the run started from). ``resume_from``: the
    config's field; None reads it from ``--config`` (load_config) on first use.
    ``runs_dir``: where a ``<run_id>/<path>`` resume_from lies ($TRAINER_HOME/runs)."""

    def __init__(self, attempt: int = 1, env_checkpoint: str = "",
                 resume_from: Optional[str] = None, runs_dir: str = ".") -> None:
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise ValueError(f"attempt must be a whole number >= 1, got {attempt!r}")
        self.attempt = attempt
        self._env = env_checkpoint
        self._resume_from = resume_from
        self._runs = runs_dir
        self._path: Optional[str] = None
        self._resolved = False
        self.taken = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], run_dir: str) -> "Resume":
        home = env.get("TRAINER_HOME")
        runs = os.path.join(home, "runs") if home else \
            os.path.dirname(os.path.abspath(run_dir))   # as worker.checkpoint.runs_dir
        return cls(parse_attempt(env.get(ATTEMPT_ENV)), env.get(RESUME_ENV, ""), None, runs)

    def _config_resume_from(self) -> str:
        if self._resume_from is None:
            self._resume_from = load_config().resume_from
        return self._resume_from

    @property
    def source(self) -> Optional[str]:
        """Where the checkpoint is named: "TRAINER_RESUME_CHECKPOINT", "resume_from",
        or None (nothing to resume). Reads the config on first use (ValidationError if
        it is bad)."""
        if self._env:
            return RESUME_ENV
        return "resume_from" if self._config_resume_from() else None

    @property
    def checkpoint(self) -> Optional[str]:
        """The absolute path of the checkpoint file to resume from, or None; does not
        count as taking it. ValidationError, its field the source, when the file is
        not there (or TRAINER_RESUME_CHECKPOINT is not an absolute path, or
        resume_from escapes the runs folder)."""
        if not self._resolved:
            self._path = self._resolve()
            self._resolved = True
        return self._path

    def _resolve(self) -> Optional[str]:
        if self._env:
            if not os.path.isabs(self._env):
                raise ValidationError(RESUME_ENV, f"must be an absolute path, got {self._env!r}")
            if not os.path.isfile(self._env):
                raise ValidationError(RESUME_ENV, f"no checkpoint file at {self._env}")
            return os.path.normpath(self._env)
        resume_from = self._config_resume_from()
        if not resume_from:
            return None
        from worker import checkpoint   # numpy: only for a worker that resumes
        return checkpoint.resolve(resume_from, self._runs)

    def take(self) -> Optional[str]:
        """The checkpoint (as ``checkpoint``), noting that the worker takes it."""
        path = self.checkpoint
        self.taken = True
        return path

    def ignored(self) -> Optional[tuple[str, str]]:
        """(the checkpoint, what named it) when this attempt was given a checkpoint it
        did not take, else None. The checkpoint is its path, or the text naming it where
        that does not resolve. Never raises: a config that cannot be read names none."""
        if self.taken:
            return None
        if self._env:
            try:
                return self.checkpoint or self._env, RESUME_ENV
            except ValidationError:
                return self._env, RESUME_ENV
        try:
            resume_from = self._config_resume_from()
        except (ValidationError, OSError, ValueError):
            return None
        if not resume_from:
            return None
        try:
            return self.checkpoint or resume_from, "resume_from"
        except ValidationError:
            return resume_from, "resume_from"


# Set by a SIGTERM that arrives after catch_sigterm() but before a Run exists; the
# next Run takes it over (and clears it), so the signal is not lost in between.
