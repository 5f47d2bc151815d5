"""SLURM's tools missing on the dispatcher's host (TRAINER_LAUNCHER=slurm, a PATH
without sbatch or squeue; no cluster needed, so this runs everywhere): a run fails at
once, ``spawn_error`` with a message that says what is missing and how to install it,
and ``trainer health`` says squeue fails, never a silent hang."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Iterator

import pytest
import zmq

from tests.helpers import REPO, wait_until
from tests.system.dispatch_helpers import TERMINAL, running_stack, submit, wait_status
from tests.system.gateway import Gateway
from tests.system.slurmjobs import dispatcher_problem
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def bare_stack(service_env: dict[str, str], ctx: zmq.Context,
               tmp_path: object) -> Iterator[Stack]:
    empty = os.path.join(str(tmp_path), "bin")
    os.makedirs(empty)
    env = {**service_env, "TRAINER_LAUNCHER": "slurm", "PATH": empty,
           "TRAINER_STATUS_INTERVAL": "0.5"}
    with running_stack(env, ctx) as s:
        yield s


def test_without_sbatch_a_run_fails_spawn_error_and_health_names_squeue(
        bare_stack: Stack) -> None:
    run_id = submit(bare_stack, "test-sleep")
    run = wait_status(bare_stack, run_id, TERMINAL, timeout=30)
    assert (run["status"], run["cause"]) == ("FAILED", "spawn_error"), run
    assert "sbatch is not installed on the dispatcher's host" in run["message"], run
    assert "apt-get install slurm-client" in run["message"], run
    problem = wait_until(lambda: dispatcher_problem(bare_stack), 20,
                         message="the dispatcher's launcher_problem")
    assert problem.startswith("SLURM: squeue failing") and "squeue is not installed" \
        in problem, problem
    gw = Gateway(bare_stack).start()
    try:
        def health() -> str:
            return subprocess.run([sys.executable, "-m", "trainer.cli.main", "health"],
                                  env=gw.env, cwd=REPO, capture_output=True, text=True,
                                  timeout=60).stdout
        # a gateway just started has heard no status message yet: asked until it has
        shown = wait_until(lambda: (out := health()) and "squeue is not installed" in out
                           and out, 30, message="trainer health to note squeue missing")
        (line,) = [row for row in shown.splitlines() if row.startswith("dispatcher")]
        assert "squeue failing" in line, shown
    finally:
        gw.close()
