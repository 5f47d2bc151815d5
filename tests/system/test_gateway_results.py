"""Results and progress outlive a restart: a run that ended before the gateway and the
registry were restarted still shows its steps and return (from its terminal event's
recorded result), also when it was shorter than one heartbeat; a running run shows its
progress again within a heartbeat of a gateway restart."""

from __future__ import annotations

import json
import os

import pytest

from tests.system.stack import Stack
from tests.helpers import wait_until
from tests.system.gateway import Gateway
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)


def sleeper(seed: int, seconds: float, beat_every: float, **hp: object) -> dict:
    return {"worker": "test-sleep", "env": "CartPole-v1", "seed": seed, "steps": 30_000,
            "hyperparameters": {"seconds": seconds, **hp}, "heartbeat_interval_s": beat_every,
            "heartbeat_timeout_s": 30.0}


def test_results_and_progress_outlive_restarts(dstack: Stack) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        # Shorter than one heartbeat: its only beat (at its start) said step 0.
        short = c.submit(sleeper(1, 0.4, 20.0, result_return=500.0)).run
        long = c.submit(sleeper(2, 40, 0.1)).run
        done = wait_until(lambda: (r := c.get(short.run_id)).status == pb.RUN_STATUS_COMPLETED
                          and r, 30, message="the short run to complete")
        with open(os.path.join(dstack.settings.runs_dir, short.run_id, "result.json"),
                  encoding="utf-8") as fh:
            steps = json.load(fh)["metrics"]["steps"]
        assert steps > 0
        assert (done.last_heartbeat.step, done.last_heartbeat.mean_return) == (steps, 500.0)
        wait_until(lambda: c.get(long.run_id).last_heartbeat.step > 0, 20,
                   message="the long run's heartbeats")
        gw.close()
        dstack.registry.stop()
        dstack.start_registry()
        gw = Gateway(dstack).start()
        c = gw.client()
        for shown in (c.get(short.run_id),
                      next(r for r in c.list().runs if r.run_id == short.run_id)):
            hb = shown.last_heartbeat
            assert shown.status == pb.RUN_STATUS_COMPLETED and hb.beat == 0
            assert (hb.step, hb.mean_return) == (steps, 500.0)
            assert hb.progress["total_steps"] == 30_000 and "note" not in hb.progress
        # The running run: its progress is back within a heartbeat or so.
        again = wait_until(lambda: (r := c.get(long.run_id)).HasField("last_heartbeat")
                           and r, 5, message="the running run's heartbeat after a restart")
        assert again.last_heartbeat.beat > 0 and again.last_heartbeat.step > 0
        c.cancel(long.run_id)
        ended = wait_until(lambda: (r := c.get(long.run_id)).status == pb.RUN_STATUS_CANCELLED
                           and r, 30, message="the long run to be cancelled")
        assert ended.last_heartbeat.step > 0   # its last beat (still heard), or its result
    finally:
        gw.close()
