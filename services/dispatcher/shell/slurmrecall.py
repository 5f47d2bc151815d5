"""The runs a restarted SLURM launcher (slurmlauncher.py) finds without their job in
squeue: the dispatcher was down past MinJobAge, so SLURM forgot the job. Each one's
job, as its run folder's slurm.json records it (slurmsubmit.py), is looked up once at
the next poll (slurmhistory.py: sacct where the cluster keeps accounting), and the
run's folder is held back until then."""

from __future__ import annotations

import threading

from services.dispatcher.shell import slurmsubmit
from services.dispatcher.shell.slurmcli import JobState, JobTag


class Recalls:
    def __init__(self, home: str) -> None:
        self.home = home
        self._lock = threading.Lock()
        self._todo: dict[str, tuple[JobState, float]] = {}   # run -> (its job, submitted)
        self._done: set[str] = set()   # runs looked up (or with no job to look up)

    def must_recall(self, run_id: str, run_dir: str) -> bool:
        """Is the run's job still to be looked up? Registers it the first time."""
        with self._lock:
            if run_id in self._done:
                return False
            if run_id in self._todo:
                return True
        sub = slurmsubmit.read_submission(run_dir)
        with self._lock:
            if sub is None or not sub.job_id:
                self._done.add(run_id)   # no job SLURM took: nothing to ask
                return False
            tag = JobTag(self.home, run_id, sub.attempt, sub.token)
            self._todo[run_id] = (JobState(sub.job_id, "", "", tag), sub.submitted_at)
        return True

    def due(self, listed: dict[str, JobState]) -> dict[str, tuple[JobState, float]]:
        """The runs to look up now: those whose job squeue does not list (one it lists
        after all needs no lookup)."""
        with self._lock:
            due = {run: entry for run, entry in self._todo.items()
                   if entry[0].job_id not in listed}
            for run in set(self._todo) - set(due):
                del self._todo[run]
                self._done.add(run)
        return due

    def looked_up(self, run_id: str) -> None:
        with self._lock:
            self._todo.pop(run_id, None)
            self._done.add(run_id)

    def forget(self, run_id: str) -> None:
        with self._lock:
            self._todo.pop(run_id, None)
            self._done.discard(run_id)
