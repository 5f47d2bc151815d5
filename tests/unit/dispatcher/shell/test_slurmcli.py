"""SLURM's command lines and outputs (services/dispatcher/shell/slurmcli.py), and the
batch step's environment (services/dispatcher/slurmstep.py): pure functions."""

from __future__ import annotations

import time

import pytest

from core.runconfig import RETRYABLE_CAUSES, RunConfig
from services.dispatcher import slurmstep
from services.dispatcher.shell import slurmcli
from services.dispatcher.shell.slurmcli import JobTag

TAG = JobTag("0123456789ab", "r0ac8", 2, "feedface00112233")


def test_a_tag_round_trips_through_its_comment_and_others_are_not_ours() -> None:
    assert TAG.name == "trainer.r0ac8"
    assert TAG.comment == "trainer:0123456789ab:r0ac8:2:feedface00112233"
    assert JobTag.parse(TAG.comment) == TAG
    for other in ("", "hello", "trainer:a:b:c:d", "trainer:h:r 1:1:t", "x:h:r:1:t",
                  "trainer:h:r:1:t:extra", "trainer:h:r|x:1:t"):
        assert JobTag.parse(other) is None, other


def test_run_ids_that_cannot_tag_a_job_are_refused() -> None:
    assert slurmcli.check_run_id("r0ac8-x.y_z") == ""
    assert "cannot name a SLURM job" in slurmcli.check_run_id("r 1")
    assert "cannot name a SLURM job" in slurmcli.check_run_id("a:b")


def test_sbatch_argv_carries_the_tag_resources_and_slurm_section() -> None:
    config = RunConfig.from_map({
        "resources": {"gpus": 2, "cpu_slots": 3, "memory_limit_mb": 2048},
        "launcher": "slurm",
        "slurm": {"partition": "gpu", "account": "rl", "qos": "low", "constraint": "a100",
                  "time_limit": "1-02:00:00", "extra": {"mem-per-cpu": "1G", "nice": "5"}}})
    argv = slurmcli.sbatch_argv(TAG, "/runs/r0ac8", config)
    assert argv[:2] == ["sbatch", "--parsable"]
    for option in ("--job-name=trainer.r0ac8", f"--comment={TAG.comment}",
                   "--chdir=/runs/r0ac8", "--output=/runs/r0ac8/slurm-%j.out",
                   "--cpus-per-task=3", "--gres=gpu:2", "--mem=2048M", "--partition=gpu",
                   "--account=rl", "--qos=low", "--constraint=a100",
                   "--time=1-02:00:00", "--mem-per-cpu=1G", "--nice=5", "--no-requeue"):
        assert option in argv, option
    bare = slurmcli.sbatch_argv(TAG, "/r", RunConfig())
    assert not [a for a in bare if a.startswith(("--gres", "--mem", "--partition", "--time",
                                                 "--signal"))]


def test_a_run_with_a_retry_policy_asks_for_usr2_before_its_time_limit() -> None:
    """USR2 to the batch step (B:), not USR1 (NCCL's): the SDK checkpoints on it."""
    retried = {"launcher": "slurm", "retry": {"max_attempts": 3, "on": ["time_limit"]},
               "slurm": {"time_limit": "30"}}
    argv = slurmcli.sbatch_argv(TAG, "/r", RunConfig.from_map(retried))
    assert "--signal=B:USR2@120" in argv
    sooner = {**retried, "slurm": {"time_limit": "30", "checkpoint_before_s": 600}}
    assert "--signal=B:USR2@600" in slurmcli.sbatch_argv(TAG, "/r", RunConfig.from_map(sooner))
    for config in ({**retried, "slurm": {"checkpoint_before_s": 0}},   # asked for none
                   {"launcher": "slurm", "slurm": {"time_limit": "30"}}):   # one attempt
        argv = slurmcli.sbatch_argv(TAG, "/r", RunConfig.from_map(config))
        assert not [a for a in argv if a.startswith("--signal")], config


def test_the_batch_script_execs_the_step_quoted() -> None:
    script = slurmcli.batch_script("/opt/py thon/bin/python", "/runs/it's")
    assert script.startswith("#!/bin/sh\nexec '/opt/py thon/bin/python' -m "
                             "services.dispatcher.slurmstep ")
    assert script.rstrip().endswith("'/runs/it'\\''s'")


@pytest.mark.parametrize("out, job_id", [("42\n", "42"), ("42;cluster\n", "42")])
def test_sbatch_parsable_output(out: str, job_id: str) -> None:
    assert slurmcli.parse_job_id(out) == job_id


@pytest.mark.parametrize("out", ["", "Submitted batch job 42", "x;y"])
def test_sbatch_output_without_a_job_id_is_an_error(out: str) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        slurmcli.parse_job_id(out)


def test_squeue_lines_of_our_installation_only_latest_attempt_per_run() -> None:
    other_home = JobTag("ffffffffffff", "r9", 1, "aa").comment
    first = JobTag(TAG.home, "r0ac8", 1, "aa").comment
    out = "\n".join([
        f"7|CANCELLED|None|{first}",
        f"9|RUNNING|None|{TAG.comment}",
        f"10|PENDING|Resources|{other_home}",
        "11|RUNNING|None|somebody else's job",
        "garbage line",
        f"12|PENDING|Priority|{JobTag(TAG.home, 'r2', 1, 'bb').comment}",
    ])
    jobs = slurmcli.parse_squeue(out, TAG.home)
    assert sorted(jobs) == ["12", "7", "9"]
    assert jobs["12"].reason == "Priority" and jobs["12"].active
    assert not jobs["7"].active
    latest = slurmcli.latest_by_run(jobs)
    assert latest["r0ac8"].job_id == "9" and latest["r0ac8"].tag.attempt == 2
    assert latest["r2"].state == "PENDING"


def test_squeue_argv_is_one_query_of_every_state() -> None:
    argv = slurmcli.squeue_argv()
    assert "--states=all" in argv and "--me" in argv and "--noheader" in argv
    assert not [a for a in argv if a.startswith(("-j", "--jobs", "--name"))]


def test_scontrol_one_line_and_exit_codes() -> None:
    line = ("JobId=5 JobName=trainer.r1 JobState=FAILED Reason=NonZeroExitCode "
            "ExitCode=3:0 NodeList=vm BatchHost=vm Comment=trainer:h:r1:1:t StdOut=/x")
    job = slurmcli.parse_scontrol(line)
    assert (job["JobId"], job["JobState"], job["BatchHost"]) == ("5", "FAILED", "vm")
    assert slurmcli.exit_code_of(job["ExitCode"]) == (3, 0)
    assert slurmcli.exit_code_of("0:9") == (0, 9)
    assert slurmcli.exit_code_of("") == (None, None)


def test_job_ends_map_to_causes_and_shim_statuses() -> None:
    assert slurmcli.CAUSES["CANCELLED"][0].value == "slurm_cancelled"
    assert slurmcli.CAUSES["TIMEOUT"][0].value == "time_limit"
    assert slurmcli.CAUSES["NODE_FAIL"][0].value == "node_failure"
    assert slurmcli.CAUSES["PREEMPTED"][0].value == "preempted"
    assert "COMPLETED" not in slurmcli.CAUSES and "FAILED" not in slurmcli.CAUSES
    assert slurmcli.end_status("COMPLETED") == 0
    assert {slurmcli.end_status(s) for s in ("FAILED", "CANCELLED", "TIMEOUT")} == {1}
    assert slurmcli.scancel_signal_argv("5", slurmcli.FORWARD["KILL"]) == \
        ["scancel", "--batch", "--signal=INT", "5"]


def test_a_failed_node_and_a_preemption_are_retryable_causes_a_policy_may_name() -> None:
    policy = RunConfig.from_map({"retry": {"max_attempts": 3,
                                           "on": ["node_failure", "preempted"]}}).retry
    for state in ("NODE_FAIL", "PREEMPTED"):
        cause = slurmcli.CAUSES[state][0].value
        assert cause in RETRYABLE_CAUSES and policy.retries(cause, None)
        assert not RunConfig.from_map({}).retry.retries(cause, None)
    # neither is active any more: the launcher hands its cause on at once
    tag = slurmcli.JobTag("h", "r1", 1, "t")
    jobs = slurmcli.parse_squeue("5|NODE_FAIL|NodeDown|" + tag.comment + "\n"
                                 "6|PREEMPTED|None|" + tag.comment + "\n", "h")
    assert not jobs["5"].active and not jobs["6"].active
    assert [jobs[j].state for j in ("5", "6")] == ["NODE_FAIL", "PREEMPTED"]


def test_the_step_gives_its_worker_the_gpus_slurm_allocated_and_none_otherwise() -> None:
    environ = {"SLURM_JOB_ID": "5", "SLURM_JOB_GPUS": "1", "CUDA_VISIBLE_DEVICES": "1",
               "SLURMD_NODENAME": "n1", "HOME": "/root"}
    env = slurmstep.worker_env({"CUDA_VISIBLE_DEVICES": "", "A": "b"}, 1, environ)
    assert env["CUDA_VISIBLE_DEVICES"] == "1" and env["SLURM_JOB_ID"] == "5"
    assert env["A"] == "b" and "HOME" not in env
    assert slurmstep.worker_env({}, 0, environ)["CUDA_VISIBLE_DEVICES"] == ""
    assert slurmstep.job_record(environ) == {"job_id": "5", "node": "n1", "gpus": "1",
                                             "cuda_visible_devices": "1"}


def test_the_job_record_read_back_is_the_run_s_node_job_and_gpus() -> None:
    record = slurmstep.job_record({"SLURM_JOB_ID": "12", "SLURM_JOB_GPUS": "0,1",
                                   "SLURMD_NODENAME": "n7"})
    assert slurmstep.placement(record) == {"host": "n7", "job_id": "12",
                                           "job_gpus": ("0", "1")}
    # a job without GPUs; a record without a node (the step's own host name is there)
    assert slurmstep.placement({"job_id": "13", "node": "n8", "gpus": ""})["job_gpus"] == ()
    assert slurmstep.placement({"job_id": "14"}) == {"host": "?", "job_id": "14",
                                                     "job_gpus": ()}
    assert slurmstep.placement({"job_id": "15", "node": "n", "gpus": 3})["job_gpus"] == ()


def test_accounting_is_on_where_scontrol_show_config_names_a_store() -> None:
    text = ("Configuration data as of 2026-12-08T01:00:00\nAccountingStorageHost   = "
            "127.0.0.1\nAccountingStorageType   = accounting_storage/slurmdbd\n")
    assert slurmcli.accounting_on(text)
    assert not slurmcli.accounting_on("AccountingStorageType   = accounting_storage/none\n")
    assert not slurmcli.accounting_on("ClusterName = ci\n")   # not said: not assumed


def test_sacct_argv_is_one_query_with_a_start_time() -> None:
    argv = slurmcli.sacct_argv(["12", "7"], since=0.0)
    assert argv[0] == "sacct" and "--jobs=12,7" in argv and "--allocations" in argv
    assert "--parsable2" in argv and "--noheader" in argv
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(0))
    assert [a for a in argv if a.startswith("--starttime=")] == [f"--starttime={start}"]


def test_sacct_lines_of_our_jobs_only_by_id_and_name() -> None:
    ours = {"12": slurmcli.JobState("12", "", "", TAG),
            "13": slurmcli.JobState("13", "", "", TAG)}
    out = ("12|trainer.r0ac8|CANCELLED by 0|0:15|None\n"
           "13|someone.else|COMPLETED|0:0|None\n"      # id 13 reused by another job
           "14|trainer.r0ac8|COMPLETED|0:0|None\n"     # not asked for
           "garbage line\n")
    got = slurmcli.parse_sacct(out, ours)
    assert list(got) == ["12"] and got["12"].state == "CANCELLED", got
    assert got["12"].tag == TAG and got["12"].job_id == "12"
