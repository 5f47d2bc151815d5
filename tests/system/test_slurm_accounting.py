"""sacct, where the cluster keeps accounting (a test cluster with MariaDB and
slurmdbd of its own, tests/system/slurmdb.py; MinJobAge 2 s). A job that ended while
the dispatcher was down long enough for squeue and scontrol to forget it is looked up
in sacct (services/dispatcher/shell/slurmhistory.py): its run ends as SLURM says, not
as its exit record alone would say. Skipped, saying how to install them, without
slurmdbd and MariaDB; after every test no job is left running or pending."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers import wait_until
from tests.system.dispatch_helpers import TERMINAL, run_dir, submit, wait_status
from tests.system.slurmcluster import SlurmCluster
from tests.system.slurmjobs import dispatcher_problem, job_of
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(180)


def _sacct_state(slurm: SlurmCluster, job_id: str) -> str:
    out = slurm.client(["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"])
    return out.strip().split(" ")[0]


def _log_events(stack: Stack, event: str) -> list[dict]:
    lines = [json.loads(line) for line in stack.dispatcher.log().splitlines()
             if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def _scancelled_while_down(stack: Stack, slurm: SlurmCluster) -> tuple[str, str]:
    """A run's job scancelled while the dispatcher is SIGKILLed, and gone from squeue
    (MinJobAge) before it is back: (run id, job id). The worker stops on SLURM's TERM
    and exits 0, its exit record written; sacct says CANCELLED."""
    run_id = submit(stack, "test-sleep", params={"seconds": 170})
    wait_status(stack, run_id, {"RUNNING"}, timeout=60)
    job_id = job_of(stack, run_id)["job_id"]
    stack.dispatcher.kill9()
    subprocess.run(["scancel", job_id], env=slurm.env, check=True, timeout=15)
    _wait_gone(slurm, job_id)
    assert os.path.exists(os.path.join(run_dir(stack, run_id), "exit.json"))
    assert _sacct_state(slurm, job_id) == "CANCELLED"
    return run_id, job_id


def _wait_gone(slurm: SlurmCluster, job_id: str) -> None:
    wait_until(lambda: not slurm.client(["squeue", "-h", "-t", "all", "-j", job_id,
                                         "-o", "%T"]).strip(), 90,
               message=f"job {job_id} to end and leave squeue (MinJobAge)")


def test_a_job_scancelled_while_the_dispatcher_was_down_past_min_job_age_ends_slurm_cancelled(
        astack: Stack, slurm_accounting: SlurmCluster) -> None:
    run_id, job_id = _scancelled_while_down(astack, slurm_accounting)
    astack.start_dispatcher()
    run = wait_status(astack, run_id, TERMINAL, timeout=60)
    assert (run["status"], run["cause"]) == ("FAILED", "slurm_cancelled"), run
    assert job_id in run["message"], run
    recalled = _log_events(astack, "slurm.job_recalled")
    assert [(e["run_id"], e["job_id"], e["state"]) for e in recalled] == \
        [(run_id, job_id, "CANCELLED")], recalled
    assert [e["on"] for e in _log_events(astack, "slurm.accounting")] == [True]


def test_a_job_that_completed_while_the_dispatcher_was_down_completes(
        astack: Stack, slurm_accounting: SlurmCluster) -> None:
    slurm = slurm_accounting
    run_id = submit(astack, "test-sleep", params={"seconds": 3})
    wait_status(astack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(astack, run_id)
    astack.dispatcher.kill9()
    _wait_gone(slurm, job["job_id"])
    assert _sacct_state(slurm, job["job_id"]) == "COMPLETED"
    astack.start_dispatcher()
    run = wait_status(astack, run_id, TERMINAL, timeout=60)
    assert (run["status"], run["exit_code"]) == ("COMPLETED", 0), run


def test_while_sacct_fails_the_run_waits_for_its_answer_and_health_says_why(
        astack: Stack, slurm_accounting: SlurmCluster) -> None:
    """A failing sacct (slurmdbd away) is not silence: the run's end waits for it, the
    dispatcher's launcher_problem says so, and once slurmdbd is back the run ends as
    SLURM says."""
    slurm = slurm_accounting
    run_id, _ = _scancelled_while_down(astack, slurm)
    slurm.stop_accounting()
    try:
        astack.start_dispatcher()
        problem = wait_until(lambda: (p := dispatcher_problem(astack)) and "sacct" in p
                             and p, 30, message="sacct's failure in launcher_problem")
        assert "sacct failing" in problem and "1 job(s)" in problem, problem
        assert wait_status(astack, run_id, {"RUNNING"}, timeout=5)["status"] == "RUNNING"
    finally:
        slurm.start_accounting()
    run = wait_status(astack, run_id, TERMINAL, timeout=60)
    assert (run["status"], run["cause"]) == ("FAILED", "slurm_cancelled"), run
    wait_until(lambda: dispatcher_problem(astack) == "", 20, message="the problem cleared")
