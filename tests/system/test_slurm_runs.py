"""Runs through SLURM with the real services and a real single-node cluster (the
``slurm`` fixture, tests/system/slurmcluster.py; skipped, saying how to install it,
without SLURM or root): the dispatcher's TRAINER_LAUNCHER is slurm, so every run is a
batch job whose batch step is the shim (services/dispatcher/slurmstep.py). After
every test no job is left running or pending in squeue and no process of a run or of
a job is left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import select
import time
import uuid
from typing import Iterator

import pytest
import zmq

from bus.codec import MessageType
from core.runconfig import RunConfig
from core.settings import Settings
from services.dispatcher.spawner import read_json
from tests.helpers import wait_until
from tests.system.dispatch_helpers import (TERMINAL, run_dir,
                                           running_stack, submit, wait_status)
from tests.system.slurmcluster import SlurmCluster
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def sstack(service_env: dict[str, str], ctx: zmq.Context,
           slurm: SlurmCluster) -> Iterator[Stack]:
    """bus + registry + dispatcher whose runs go to the test cluster by default."""
    env = {**service_env, "SLURM_CONF": slurm.conf, "TRAINER_LAUNCHER": "slurm",
           "TRAINER_CPU_SLOTS": "1", "TRAINER_STATUS_INTERVAL": "0.5"}
    with running_stack(env, ctx, lambda _: wait_until(
            lambda: not slurm.jobs(), 30,
            message="no job of the test left running or pending in squeue")) as s:
        yield s


def job_of(stack: Stack, run_id: str) -> dict:
    """What the batch step recorded of its job (slurm-job.json)."""
    return wait_until(lambda: read_json(os.path.join(run_dir(stack, run_id),
                                                     "slurm-job.json")), 30,
                      message=f"{run_id}'s batch step to record its job")


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def squeue_state(slurm: SlurmCluster, job_id: str) -> str:
    out = slurm.client(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"])
    return out.strip()


def test_a_cartpole_run_completes_through_slurm(sstack: Stack, slurm: SlurmCluster) -> None:
    hb = sstack.subscriber("hb.")
    submitted = time.monotonic()
    run_id = submit(sstack, "cartpole", seed=1, steps=3000, checkpoint_every=1)
    beat = wait_until(lambda: (m := hb.recv(200)) is not None and
                      m.envelope.type == MessageType.HEARTBEAT.value and
                      m.envelope.payload["run_id"] == run_id and m, 60,
                      message="a heartbeat from the worker in its SLURM job")
    first_beat_s = time.monotonic() - submitted
    assert beat.envelope.payload["step"] >= 0
    run = wait_status(sstack, run_id, TERMINAL, timeout=120)
    assert run["status"] == "COMPLETED" and run["exit_code"] == 0, run
    job = job_of(sstack, run_id)
    assert job["job_id"].isdigit() and job["node"] == slurm.host
    assert job["cuda_visible_devices"] == ""   # no GPU asked: none given
    with open(os.path.join(run_dir(sstack, run_id), "slurm.json"), encoding="utf-8") as fh:
        assert json.load(fh)["job_id"] == job["job_id"]   # recorded at submit
    assert wait_until(lambda: squeue_state(slurm, job["job_id"]), 10) == "COMPLETED"
    arts = sstack.client().call("list_artifacts", {"run_id": run_id})["artifacts"]
    assert {"checkpoint", "code"} <= {a["kind"] for a in arts}, arts
    print(f"submit -> first heartbeat through SLURM: {first_beat_s:.2f} s")


def test_a_one_gpu_run_sees_its_gres_device(sstack: Stack, slurm: SlurmCluster) -> None:
    run_id = submit(sstack, "test-sleep", gpus=1, params={"seconds": 0.2})
    run = wait_status(sstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "COMPLETED", run
    with open(os.path.join(run_dir(sstack, run_id), "seen.json"), encoding="utf-8") as fh:
        seen = json.load(fh)
    job = job_of(sstack, run_id)
    assert seen["cuda"] in ("0", "1") and seen["cuda"] == job["cuda_visible_devices"], seen
    assert job["gpus"] == seen["cuda"]   # SLURM_JOB_GPUS: the device SLURM allocated
    assert run["host"] == f"{slurm.host} (SLURM job {job['job_id']}, GPUs {seen['cuda']})"


def test_an_impossible_request_fails_at_once_with_sbatch_s_words(sstack: Stack) -> None:
    run_id = submit(sstack, "test-sleep", gpus=3)   # the node has 2
    run = wait_status(sstack, run_id, TERMINAL, timeout=30)
    assert (run["status"], run["cause"]) == ("FAILED", "spawn_error"), run
    assert "sbatch failed" in run["message"], run


def test_a_run_cancelled_while_running_ends_cancelled(sstack: Stack,
                                                      slurm: SlurmCluster) -> None:
    hb = sstack.subscriber("hb.")
    run_id = submit(sstack, "test-ignore-term", cancel_grace_s=1.0)
    job = job_of(sstack, run_id)
    wait_until(lambda: (m := hb.recv(200)) is not None and
               m.envelope.type == MessageType.HEARTBEAT.value and
               m.envelope.payload["run_id"] == run_id, 60,
               message="a heartbeat (its TERM handler is set)")
    sstack.client().call("request_cancel", {"run_id": run_id, "requested_by": "alice",
                                            "reason": "enough"})
    run = wait_status(sstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "CANCELLED" and run["cancel_requested_by"] == "alice", run
    assert run["signal"] == 9, run   # it ignores TERM: SIGKILL after its grace
    wait_until(lambda: squeue_state(slurm, job["job_id"]) in ("COMPLETED", "CANCELLED"), 20)


def test_an_outside_scancel_ends_slurm_cancelled(sstack: Stack, slurm: SlurmCluster) -> None:
    run_id = submit(sstack, "test-sleep", params={"seconds": 120})
    wait_status(sstack, run_id, {"RUNNING"}, timeout=60)
    job = job_of(sstack, run_id)
    subprocess.run(["scancel", job["job_id"]], env=slurm.env, check=True, timeout=15)
    run = wait_status(sstack, run_id, TERMINAL, timeout=60)
    assert (run["status"], run["cause"]) == ("FAILED", "slurm_cancelled"), run
    assert job["job_id"] in run["message"] and "scancel" in run["message"], run


def test_a_slurm_time_limit_ends_time_limit(sstack: Stack, slurm: SlurmCluster) -> None:
    # 10 s; slurmctld checks time limits about every 30 s
    run_id = submit(sstack, "test-sleep", params={"seconds": 170},
                    slurm={"time_limit": "0:10"})
    job = job_of(sstack, run_id)
    run = wait_status(sstack, run_id, TERMINAL, timeout=150)
    assert (run["status"], run["cause"]) == ("FAILED", "time_limit"), run
    assert "time limit" in run["message"] and job["job_id"] in run["message"], run
    assert squeue_state(slurm, job["job_id"]) == "TIMEOUT"


def test_a_run_cancelled_while_its_job_waits_in_slurm_ends_cancelled(
        sstack: Stack, slurm: SlurmCluster) -> None:
    both = submit(sstack, "test-sleep", gpus=2, params={"seconds": 120})
    wait_status(sstack, both, {"RUNNING"}, timeout=60)
    waiting = submit(sstack, "test-sleep", gpus=1, params={"seconds": 1})
    submission = os.path.join(run_dir(sstack, waiting), "slurm.json")
    job = wait_until(lambda: (j := read_json(submission)) and j["job_id"] and j, 30,
                     message="the second run's job id recorded")   # (the token comes first)
    wait_until(lambda: squeue_state(slurm, job["job_id"]) == "PENDING", 10,
               message="its job pending in SLURM")
    client = sstack.client()
    pending = wait_until(lambda: (r := client.call("get_run", {"run_id": waiting})["run"])
                         ["waiting_reason"] and r, 20, message="SLURM's pending reason")
    assert pending["status"] == "DISPATCHING" and \
        pending["waiting_reason"] == "SLURM: Resources", pending
    client.call("request_cancel", {"run_id": waiting, "requested_by": "bob", "reason": "no"})
    run = wait_status(sstack, waiting, TERMINAL, timeout=30)
    assert (run["status"], run["cancel_requested_by"]) == ("CANCELLED", "bob"), run
    assert squeue_state(slurm, job["job_id"]) == "CANCELLED"
    assert not os.path.exists(os.path.join(run_dir(sstack, waiting), "worker.json"))
    client.call("request_cancel", {"run_id": both, "requested_by": "bob", "reason": "done"})
    assert wait_status(sstack, both, TERMINAL, timeout=60)["status"] == "CANCELLED"


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


def dispatcher_problem(sstack: Stack) -> str:
    sub = sstack.subscriber("status.dispatcher", live=False)
    msg = wait_until(lambda: sub.recv(200), 10, message="the dispatcher's status")
    return str(msg.envelope.payload["counters"]["launcher_problem"])


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
    assert seen_attempt(sstack, run_id) == 2
    again = job_of(sstack, run_id)
    assert again["job_id"] != job["job_id"], again
    assert wait_until(lambda: squeue_state(slurm, again["job_id"]), 20) == "COMPLETED"
    print(f"node lost -> attempt 1 ended node_failure: {ended_s:.1f} s "
          f"(SlurmdTimeout={slurm.slurmd_timeout_s})")


def seen_attempt(stack: Stack, run_id: str) -> int:
    with open(os.path.join(run_dir(stack, run_id), "seen.json"), encoding="utf-8") as fh:
        return int(json.load(fh)["attempt"])


def test_twenty_one_gpu_runs_on_two_gres_gpus_never_overlap(sstack: Stack) -> None:
    run_ids = [submit(sstack, "test-sleep", seed=i, gpus=1, params={"seconds": 0.3})
               for i in range(20)]
    spans: dict[str, list[tuple[float, float]]] = {"0": [], "1": []}
    for run_id in run_ids:
        run = wait_status(sstack, run_id, TERMINAL, timeout=120)
        assert run["status"] == "COMPLETED", run
        folder = run_dir(sstack, run_id)
        with open(os.path.join(folder, "seen.json"), encoding="utf-8") as fh:
            cuda = json.load(fh)["cuda"]
        ended = read_json(os.path.join(folder, "exit.json"))
        assert ended is not None and cuda in spans, (cuda, ended)
        spans[cuda].append((ended["started_at"], ended["ended_at"]))
    for gpu, used in spans.items():
        used.sort()
        for (_, end), (start, _) in zip(used, used[1:]):
            assert start >= end, f"GPU {gpu}: two runs at once: {used}"
    assert spans["0"] and spans["1"]   # both GPUs were used


def test_the_launcher_tells_of_a_job_that_moves_in_slurm_s_queue_at_the_poll_that_sees_it(
        settings: Settings, slurm: SlurmCluster) -> None:
    """moved(): what wakes the loop for a run that waits in SLURM's queue (it needs no
    tick meanwhile): its job's state or reason changed, seen by one squeue."""
    from services.dispatcher.shell.slurmlauncher import SlurmLauncher
    launcher = SlurmLauncher(settings, env=slurm.env, poll_s=3600.0)   # polled by hand
    run_id = f"moved-{uuid.uuid4().hex[:12]}"
    try:
        slurm.client(["scontrol", "update", "PartitionName=ci", "State=DOWN"])
        launcher.start(run_id, RunConfig(worker="test-silent", launcher="slurm",
                                         hyperparameters={"seconds": 60}), ())
        job_id = launcher.job_id(run_id)
        wait_until(lambda: squeue_state(slurm, job_id) == "PENDING", 10)
        launcher.poll()
        assert launcher.moved() == [run_id] and readable(launcher.wake_fd)
        assert launcher.observe(run_id).waiting.startswith("SLURM: "), "waiting for a reason"
        assert launcher.ended() == [] and not readable(launcher.wake_fd)
        launcher.poll()   # nothing changed: nothing told, the loop sleeps on
        assert launcher.moved() == [] and not readable(launcher.wake_fd)
        slurm.client(["scontrol", "update", "PartitionName=ci", "State=UP"])
        wait_until(lambda: squeue_state(slurm, job_id) == "RUNNING", 30,
                   message="its job started")
        launcher.poll()
        assert launcher.moved() == [run_id] and readable(launcher.wake_fd)
        assert launcher.observe(run_id).waiting == ""
    finally:
        slurm.client(["scontrol", "update", "PartitionName=ci", "State=UP"])
        launcher.kill(run_id, frozenset())   # its job scancelled (the fixture waits)
        launcher.close()
