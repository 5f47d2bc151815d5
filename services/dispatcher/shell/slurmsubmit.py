"""A SLURM job's submission records in its run folder (docs/SLURM.md, "What is
recorded where"), for the SLURM launcher (slurmlauncher.py):

    slurm-step.json   what the batch step (slurmstep.py) starts: the worker's command
                      line and environment (owner-only)
    slurm.json        the submission: token and attempt before sbatch is called, the
                      job id added after; a restarted dispatcher finds its job by it
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Optional

from runtime.atomicfile import atomic_file
from services.dispatcher import slurmstep
from services.dispatcher.spawner import read_json

JOB_FILE = "slurm.json"        # the submission: token, attempt, job id


@dataclass(frozen=True)
class Submission:
    token: str
    attempt: int
    job_id: str            # "" until sbatch answered
    submitted_at: float    # epoch seconds


def write_step(run_dir: str, argv: list[str], env: dict[str, str], gpus: int) -> None:
    _write(run_dir, slurmstep.STEP_FILE, {"argv": argv, "env": env, "gpus": gpus})


def write_submission(run_dir: str, token: str, attempt: int, job_id: str = "") -> None:
    _write(run_dir, JOB_FILE, {"token": token, "attempt": attempt, "job_id": job_id,
                               "submitted_at": time.time()})


def read_submission(run_dir: str) -> Optional[Submission]:
    """The run's latest submission (None: none recorded, or not one of ours)."""
    data = read_json(os.path.join(run_dir, JOB_FILE)) or {}
    token, attempt, job_id = data.get("token"), data.get("attempt"), data.get("job_id", "")
    if not isinstance(token, str) or not isinstance(attempt, int) or \
            not isinstance(job_id, str) or (job_id and not job_id.isdigit()):
        return None
    at = data.get("submitted_at")
    return Submission(token, attempt, job_id, float(at) if isinstance(at, (int, float))
                      else 0.0)


def submitted(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, JOB_FILE))


def _write(run_dir: str, name: str, data: dict[str, Any]) -> None:
    with atomic_file(os.path.join(run_dir, name), durable=False) as fh:
        json.dump(data, fh)
    os.chmod(os.path.join(run_dir, name), 0o600)
