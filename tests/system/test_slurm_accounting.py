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


def test_a_job_scancelled_while_the_dispatcher_was_down_past_min_job_age_ends_slurm_cancelled(
        astack: Stack, slurm_accounting: SlurmCluster) -> None:
    slurm = slurm_accounting
    run_id = submit(astack, "test-sleep", params={"seconds": 170})
    wait_status(astack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(astack, run_id)
    astack.dispatcher.kill9()
    # a user's own scancel: the worker stops on SLURM's TERM and exits 0, its exit
    # record written; the job ends CANCELLED, then leaves squeue and scontrol
    subprocess.run(["scancel", job["job_id"]], env=slurm.env, check=True, timeout=15)
    wait_until(lambda: not slurm.client(["squeue", "-h", "-t", "all", "-j", job["job_id"],
                                         "-o", "%T"]).strip(), 90,
               message=f"job {job['job_id']} to leave squeue (MinJobAge)")
    assert os.path.exists(os.path.join(run_dir(astack, run_id), "exit.json"))
    assert _sacct_state(slurm, job["job_id"]) == "CANCELLED"
    astack.start_dispatcher()
    run = wait_status(astack, run_id, TERMINAL, timeout=60)
    assert (run["status"], run["cause"]) == ("FAILED", "slurm_cancelled"), run
    assert job["job_id"] in run["message"], run
    recalled = _log_events(astack, "slurm.job_recalled")
    assert [(e["run_id"], e["job_id"], e["state"]) for e in recalled] == \
        [(run_id, job["job_id"], "CANCELLED")], recalled
    assert [e["on"] for e in _log_events(astack, "slurm.accounting")] == [True]


def test_a_job_that_completed_while_the_dispatcher_was_down_completes(
        astack: Stack, slurm_accounting: SlurmCluster) -> None:
    slurm = slurm_accounting
    run_id = submit(astack, "test-sleep", params={"seconds": 3})
    wait_status(astack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(astack, run_id)
    astack.dispatcher.kill9()
    wait_until(lambda: not slurm.client(["squeue", "-h", "-t", "all", "-j", job["job_id"],
                                         "-o", "%T"]).strip(), 90,
               message=f"job {job['job_id']} to end and leave squeue (MinJobAge)")
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
    run_id = submit(astack, "test-sleep", params={"seconds": 170})
    wait_status(astack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(astack, run_id)
    astack.dispatcher.kill9()
    subprocess.run(["scancel", job["job_id"]], env=slurm.env, check=True, timeout=15)
    wait_until(lambda: not slurm.client(["squeue", "-h", "-t", "all", "-j", job["job_id"],
                                         "-o", "%T"]).strip(), 90,
               message=f"job {job['job_id']} to leave squeue (MinJobAge)")
    assert _sacct_state(slurm, job["job_id"]) == "CANCELLED"
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
