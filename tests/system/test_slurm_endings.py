"""How SLURM runs end and go on, with the real services and a real single-node
cluster (as in test_slurm_runs.py; its own module, so that a second test process
runs it beside that one on its own cluster): a time limit (and the SIGUSR2
checkpoint the next attempt resumes from), a preemption, the dispatcher SIGKILLed, a
slurmctld restart, a node lost. After every test no job is left running or pending in
squeue and no process of a run or of a job is left."""

from __future__ import annotations

import os
import signal
import time

import pytest

from services.dispatcher.spawner import read_json
from tests.helpers import wait_until
from tests.system.dispatch_helpers import TERMINAL, run_dir, seen, submit, wait_status
from tests.system.slurmcluster import SlurmCluster
from tests.system.slurmjobs import dispatcher_problem, job_of, squeue_state
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(180)


def test_a_time_limit_ends_the_attempt_time_limit_and_the_next_resumes_from_the_usr2_checkpoint(
        sstack: Stack, slurm: SlurmCluster) -> None:
    """A run with a retry policy asks for SIGUSR2 before its time limit
    (``--signal=B:USR2@120``: a 10 s limit is nearer, so SLURM sends it at its next
    check); the worker checkpoints on it (and not when stopped), the job ends TIMEOUT,
    and the next attempt resumes from that checkpoint and completes."""
    retry = {"max_attempts": 2, "on": ["time_limit"]}
    run_id = submit(sstack, "test-sleep", retry=retry, slurm={"time_limit": "0:10"},
                    params={"seconds": 170, "retry_seconds": 0.5, "stop_checkpoint": False})
    job = job_of(sstack, run_id)
    run = wait_status(sstack, run_id, TERMINAL, timeout=150)
    assert (run["status"], run["attempt"]) == ("COMPLETED", 2), run
    assert run["last_attempt_cause"] == "time_limit", run
    assert squeue_state(slurm, job["job_id"]) == "TIMEOUT"
    asked = os.path.join(run_dir(sstack, run_id), "ckpt-asked-1.bin")
    assert os.path.exists(asked), "attempt 1 saved no checkpoint on SIGUSR2"
    assert run["resume_from"] == "ckpt-asked-1.bin", run
    started = seen(sstack, run_id)
    assert started["attempt"] == 2 and started["resume"].endswith("ckpt-asked-1.bin"), started


def test_a_preempted_job_ends_the_attempt_preempted_and_the_next_resumes_from_its_checkpoint(
        sstack: Stack, slurm: SlurmCluster) -> None:
    """A job of the urgent partition takes both GPUs: SLURM cancels ours (PREEMPTED,
    its processes get TERM: the worker checkpoints as it stops); the run's next
    attempt is a new job, which waits for the GPUs, resumes from that checkpoint and
    completes."""
    retry = {"max_attempts": 2, "on": ["preempted"]}
    run_id = submit(sstack, "test-sleep", gpus=2, retry=retry,
                    params={"seconds": 170, "retry_seconds": 0.5})
    wait_status(sstack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(sstack, run_id)
    urgent = slurm.preempt(gpus=2, seconds=1)
    assert urgent.isdigit(), "sbatch of the urgent job failed"
    run = wait_status(sstack, run_id, TERMINAL, timeout=120)
    assert (run["status"], run["attempt"]) == ("COMPLETED", 2), run
    assert run["last_attempt_cause"] == "preempted", run
    assert squeue_state(slurm, job["job_id"]) == "PREEMPTED"
    again = job_of(sstack, run_id)
    assert again["job_id"] not in (job["job_id"], urgent), again
    assert run["resume_from"] == "ckpt.bin", run
    started = seen(sstack, run_id)
    assert started["attempt"] == 2 and started["resume"].endswith("ckpt.bin"), started


def test_a_dispatcher_killed_mid_run_adopts_its_job_which_completes(
        sstack: Stack, slurm: SlurmCluster) -> None:
    run_id = submit(sstack, "test-sleep", params={"seconds": 6})
    wait_status(sstack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(sstack, run_id)
    sstack.dispatcher.kill9()
    sstack.start_dispatcher()   # its launcher finds the job by its tag and the folder
    run = wait_status(sstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "COMPLETED" and run["adoptions"] == 1, run
    assert squeue_state(slurm, job["job_id"]) == "COMPLETED"


def test_a_run_lives_through_a_slurmctld_restart(sstack: Stack, slurm: SlurmCluster) -> None:
    run_id = submit(sstack, "test-sleep", params={"seconds": 25})
    wait_status(sstack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(sstack, run_id)
    assert dispatcher_problem(sstack) == ""
    slurm.kill_ctld(signal.SIGTERM)   # a restart: its state saved, then started again
    # meanwhile the dispatcher says so in its status (trainer health's NOTE)
    problem = wait_until(lambda: dispatcher_problem(sstack), 20,
                         message="the dispatcher to report squeue failing")
    assert problem.startswith("SLURM: squeue failing") and "squeue" in problem, problem
    slurm.start_ctld()
    wait_until(lambda: dispatcher_problem(sstack) == "", 20, message="the problem cleared")
    assert wait_until(lambda: squeue_state(slurm, job["job_id"]), 20) == "RUNNING"
    run = wait_status(sstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "COMPLETED" and run["exit_code"] == 0, \
        (run["cause"], run["message"], sstack.dispatcher.log()[-3000:])
    assert wait_until(lambda: squeue_state(slurm, job["job_id"]), 20) == "COMPLETED"
    assert sstack.dispatcher.alive()


@pytest.mark.timeout(300)
def test_a_job_lost_with_its_node_ends_node_failure_and_is_retried_once_slurmd_is_back(
        sstack: Stack, slurm: SlurmCluster) -> None:
    # the heartbeat timeout longer than SLURM takes to mark the node DOWN (about 3
    # slurmd_timeout_s): SLURM's verdict, not the silence, ends the attempt
    retry = {"max_attempts": 2, "on": ["node_failure"], "from_scratch": True}
    run_id = submit(sstack, "test-sleep", retry=retry, heartbeat_timeout_s=150.0,
                    params={"seconds": 170, "retry_seconds": 0.5})
    wait_status(sstack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(sstack, run_id)
    folder = run_dir(sstack, run_id)
    worker = wait_until(lambda: read_json(os.path.join(folder, "worker.json")), 30,
                        message="the worker's record")
    slurm.kill_node(pids=(worker["shim_pid"],), pgids=(worker["pgid"],))
    lost = time.monotonic()
    client = sstack.client()
    second = wait_until(lambda: (r := client.call("get_run", {"run_id": run_id})["run"])
                        ["attempt"] == 2 and r, 20 * slurm.slurmd_timeout_s,
                        message="SLURM to end the job NODE_FAIL and the run to be retried")
    ended_s = time.monotonic() - lost
    assert second["last_attempt_cause"] == "node_failure", second
    assert squeue_state(slurm, job["job_id"]) == "NODE_FAIL"
    assert slurm.node_state().startswith("down"), slurm.node_state()
    # the retried attempt's job waits in SLURM for the node...
    waiting = wait_until(lambda: (r := client.call("get_run", {"run_id": run_id})["run"])
                         ["waiting_reason"] and r, 30, message="SLURM's pending reason")
    assert waiting["status"] == "DISPATCHING" and \
        waiting["waiting_reason"].startswith("SLURM: "), waiting
    slurm.start_slurmd()   # ...which comes back: the job starts there and completes
    run = wait_status(sstack, run_id, TERMINAL, timeout=90)
    assert (run["status"], run["attempt"]) == ("COMPLETED", 2), run
    assert seen(sstack, run_id)["attempt"] == 2
    again = job_of(sstack, run_id)
    assert again["job_id"] != job["job_id"], again
    assert wait_until(lambda: squeue_state(slurm, again["job_id"]), 20) == "COMPLETED"
    print(f"node lost -> attempt 1 ended node_failure: {ended_s:.1f} s "
          f"(SlurmdTimeout={slurm.slurmd_timeout_s})")
