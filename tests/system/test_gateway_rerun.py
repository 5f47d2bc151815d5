"""Reruns through the public API (bus, registry, dispatcher with 2 fake GPUs, and the
gateway process): RerunRun gives a cancelled run its second attempt, which runs,
resuming from the checkpoint the first one left; a running run and a completed one
without force are refused with FAILED_PRECONDITION saying what to do; and `trainer
rerun` says the same, and prints the new attempt; without the token nothing is rerun."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from tests.helpers import REPO, wait_until
from tests.system.gateway import Gateway, rpc_error
from tests.system.stack import Stack
from trainer.client import Client
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(90)

TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


def sleeper(seed: int, seconds: float, **config: object) -> dict:
    return {"worker": "test-sleep", "env": "CartPole-v1", "seed": seed,
            "hyperparameters": {"seconds": seconds}, "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 5.0, **config}


def running(c: Client, run_id: str, attempt: int) -> pb.RunRecord:
    return wait_until(lambda: (r := c.get(run_id)).status == pb.RUN_STATUS_RUNNING
                      and r.attempt == attempt and r, 30,
                      message=f"attempt {attempt} of {run_id} running")


def ended(c: Client, run_id: str) -> pb.RunRecord:
    return wait_until(lambda: (r := c.get(run_id)).status in TERMINAL and r, 30,
                      message=f"{run_id} to end")


def checkpointed(c: Client, run_id: str) -> None:
    """The checkpoint the test worker registers as it stops has been recorded."""
    wait_until(lambda: any(a.kind == "checkpoint" for a in c.artifacts(run_id)), 20,
               message=f"the checkpoint of {run_id}")


def trainer(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=gw.env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def test_rerun_over_grpc_and_the_cli(dstack: Stack) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        long = c.submit(sleeper(1, 60, retry={"max_attempts": 3, "on": ["lost"]})).run
        first = running(c, long.run_id, 1)
        assert (first.attempt, first.max_attempts) == (1, 3)
        err = rpc_error(c.rerun, long.run_id)
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION, err
        assert "cancel it first" in err.message and "RUNNING" in err.message, err.message
        refused = trainer(gw, "rerun", long.run_id)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "cancel it first" in refused.stderr and "trainer cancel" in refused.stderr
        assert c.get(long.run_id).attempt == 1  # nothing changed

        c.cancel(long.run_id, reason="move it")
        assert ended(c, long.run_id).status == pb.RUN_STATUS_CANCELLED
        checkpointed(c, long.run_id)
        again = c.rerun(long.run_id, reason="try again", requested_by="alice")
        assert (again.status, again.attempt, again.max_attempts) == \
            (pb.RUN_STATUS_PENDING, 2, 3), again
        assert again.resume_from == "ckpt.bin"
        assert again.last_attempt_cause == pb.TERMINAL_CAUSE_CANCELLED
        assert not again.cancel_requested_by and not again.HasField("finished_at")
        second = running(c, long.run_id, 2)
        assert second.pid != first.pid and second.resume_from == "ckpt.bin"
        shown = trainer(gw, "show", long.run_id)
        assert shown.returncode == 0, shown.stderr
        for line in ("attempt  2/3", "previous attempt  ended: cancelled",
                     "resumes from  ckpt.bin", "RerunRequested"):
            assert line in shown.stdout, shown.stdout
        listing = trainer(gw, "ls")
        assert "ATTEMPT" in listing.stdout and "2/3" in listing.stdout, listing.stdout
        c.cancel(long.run_id)
        assert ended(c, long.run_id).attempt == 2

        short = c.submit(sleeper(2, 0.2)).run
        done = ended(c, short.run_id)
        assert (done.status, done.attempt) == (pb.RUN_STATUS_COMPLETED, 1)
        err = rpc_error(c.rerun, short.run_id)
        assert err.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "only with force" in err.message, err.message
        refused = trainer(gw, "rerun", short.run_id)
        assert refused.returncode == 1 and "add --force" in refused.stderr, refused.stderr
        checkpointed(c, short.run_id)
        forced = trainer(gw, "rerun", short.run_id, "--force", "--from-scratch",
                         "--reason", "new seed")
        assert forced.returncode == 0, forced.stderr
        assert forced.stdout == f"{short.run_id} PENDING attempt 2, from scratch\n"
        redone = ended(c, short.run_id)
        assert (redone.status, redone.attempt, redone.resume_from) == \
            (pb.RUN_STATUS_COMPLETED, 2, ""), redone
        missing = rpc_error(c.rerun, "r000000000000")
        assert missing.code == grpc.StatusCode.NOT_FOUND
        bad = rpc_error(c.rerun, "nope")
        assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.field == "run_id"
        stranger = rpc_error(gw.client(token="wrong").rerun, short.run_id, force=True)
        assert stranger.code == grpc.StatusCode.UNAUTHENTICATED
        assert c.get(short.run_id).attempt == 2  # (a mutating call: the token, as CancelRun)
    finally:
        gw.close()
