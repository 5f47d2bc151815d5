"""Runs through SLURM with the real services and a real single-node cluster (the
``slurm`` fixture, tests/system/slurmcluster.py; skipped, saying how to install it,
without SLURM or root): the dispatcher's TRAINER_LAUNCHER is slurm, so every run is a
batch job whose batch step is the shim (services/dispatcher/slurmstep.py). After
every test no job is left running or pending in squeue and no process of a run or of
a job is left."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import select
import sys
import time
import uuid

import pytest

from bus import curvekeys
from bus.codec import MessageType
from core.runconfig import RunConfig
from core.settings import Settings
from services.dispatcher.spawner import read_json
from tests.helpers import REPO, wait_until
from tests.system.dispatch_helpers import TERMINAL, run_dir, submit, wait_status
from tests.system.gateway import Gateway
from tests.system.slurmcluster import SlurmCluster
from tests.system.slurmjobs import job_of, squeue_state
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(180)


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_a_cartpole_run_completes_through_slurm_reporting_over_tcp_with_curve(
        sstack: Stack, slurm: SlurmCluster) -> None:
    assert sstack.settings.bus_pub.startswith("tcp://") and sstack.settings.bus_curve
    sub = sstack.subscriber("hb.", "metric.", "artifact.")
    submitted = time.monotonic()
    run_id = submit(sstack, "cartpole", seed=1, steps=3000, checkpoint_every=1)
    first: dict[str, float] = {}
    def all_kinds() -> bool:
        msg = sub.recv(200)
        if msg is not None and msg.envelope.payload.get("run_id") == run_id:
            first.setdefault(msg.topic.split(".", 1)[0], time.monotonic() - submitted)
        return set(first) >= {"hb", "metric", "artifact"}
    wait_until(all_kinds, 60, message="heartbeats, metrics and artifacts from the worker "
                                      f"in its SLURM job, over tcp + CURVE (seen {first})")
    first_beat_s = first["hb"]
    key_file = os.path.join(run_dir(sstack, run_id), curvekeys.RUN_KEY_FILE)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600   # its key, owner-only
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
    assert (run["host"], run["launcher"], run["job_id"], run["job_gpus"]) == \
        (slurm.host, "slurm", job["job_id"], [seen["cuda"]])


def slurm_jobs_named(slurm: SlurmCluster, run_id: str) -> list[list[str]]:
    """[job id, node, state] of every job SLURM ran for the run (its job name), as
    squeue lists them (finished ones too: MinJobAge is 300 s)."""
    out = slurm.client(["squeue", "-h", "-t", "all", "--name", f"trainer.{run_id}",
                        "-o", "%i|%N|%T"])
    return [line.split("|") for line in out.split()]


def test_the_run_records_the_job_slurm_ran_and_a_local_run_none(
        sstack: Stack, slurm: SlurmCluster) -> None:
    gw = Gateway(sstack).start()
    try:
        c = gw.client()
        on_slurm = submit(sstack, "test-sleep", gpus=1, params={"seconds": 0.2})
        local = submit(sstack, "test-sleep", seed=1, launcher="local",
                       params={"seconds": 0.2})
        for run_id in (on_slurm, local):
            assert wait_status(sstack, run_id, TERMINAL, timeout=60)["status"] == "COMPLETED"
        rec = c.get(on_slurm)
        (job,) = wait_until(lambda: (j := slurm_jobs_named(slurm, on_slurm)) and
                            j[0][2] == "COMPLETED" and j, 10, message="its job COMPLETED")
        assert (rec.launcher, rec.job_id, rec.host) == ("slurm", job[0], job[1]), rec
        worker_saw = read_json(os.path.join(run_dir(sstack, on_slurm), "seen.json"))
        assert list(rec.job_gpus) == [worker_saw["cuda"]] and not rec.gpus, rec
        loc = c.get(local)
        assert (loc.launcher, loc.job_id, list(loc.job_gpus)) == ("local", "", []), loc
        assert loc.host == os.uname().nodename and not slurm_jobs_named(slurm, local)
        shown = subprocess.run([sys.executable, "-m", "trainer.cli.main", "show", on_slurm],
                               env=gw.env, cwd=REPO, capture_output=True, text=True,
                               timeout=60)
        assert shown.returncode == 0, shown.stderr
        lines = {line.split(None, 1)[0]: line.split(None, 1)[1]
                 for line in shown.stdout.splitlines()[:30] if len(line.split(None, 1)) == 2}
        assert lines["host"] == job[1], shown.stdout
        assert lines["launcher"] == f"slurm job {job[0]}, GPUs {rec.job_gpus[0]}", shown.stdout
    finally:
        gw.close()


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
