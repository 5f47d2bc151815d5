"""What the SLURM system tests read of a run's job (test_slurm_runs.py,
test_slurm_endings.py; the ``sstack`` fixture is in conftest.py)."""

from __future__ import annotations

import os

from services.dispatcher.spawner import read_json
from tests.helpers import wait_until
from tests.system.dispatch_helpers import run_dir
from tests.system.slurmcluster import SlurmCluster
from tests.system.stack import Stack


def job_of(stack: Stack, run_id: str) -> dict:
    """What the batch step recorded of its job (slurm-job.json)."""
    return wait_until(lambda: read_json(os.path.join(run_dir(stack, run_id),
                                                     "slurm-job.json")), 30,
                      message=f"{run_id}'s batch step to record its job")


def squeue_state(slurm: SlurmCluster, job_id: str) -> str:
    out = slurm.client(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"])
    return out.strip()


def dispatcher_problem(sstack: Stack) -> str:
    """The dispatcher's ``launcher_problem`` (its status message; "" when none)."""
    sub = sstack.subscriber("status.dispatcher", live=False)
    msg = wait_until(lambda: sub.recv(200), 10, message="the dispatcher's status")
    return str(msg.envelope.payload["counters"]["launcher_problem"])
