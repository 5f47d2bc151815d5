"""The whole stack behind the gateway (bus, registry, dispatcher with 2 fake GPUs):
a real worker run seen through the public API only: watch, heartbeats, logs,
artifacts, the GPU inventory in GetHealth, and a cancel."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from tests.system.stack import Stack
from tests.helpers import REPO, wait_until
from tests.system.gateway import Gateway
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)

TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


def sleeper(seed: int, seconds: float, gpus: int = 0) -> dict:
    return {"worker": "test-sleep", "env": "CartPole-v1", "seed": seed,
            "hyperparameters": {"seconds": seconds}, "resources": {"gpus": gpus},
            "heartbeat_interval_s": 0.1, "heartbeat_timeout_s": 5.0}


def test_a_run_through_the_public_api(dstack: Stack) -> None:
    gw = Gateway(dstack)
    try:
        gw.start()
        c = gw.client()
        def all_up() -> pb.GetHealthResponse | None:
            h = c.health()
            return h if len(h.gpus) == 2 and all(s.alive for s in h.services) else None
        health = wait_until(all_up, 20, message="every service alive, 2 GPUs")
        assert health.gpu_source == "fake" and {g.run_id for g in health.gpus} == {""}
        events: list[pb.RunEvent] = []
        watch = c.watch(since_seq=c.health().last_seq)
        run = c.submit(sleeper(1, 4.0, gpus=1)).run  # (long enough for show, under load)
        done = threading.Event()

        def follow() -> None:
            for msg in watch:
                events.extend(e for e in msg.events if e.run_id == run.run_id)
                if any(e.type == "GpusReleased" for e in events):  # after the end
                    done.set()
                    return
        threading.Thread(target=follow, daemon=True).start()
        running = wait_until(lambda: (r := c.get(run.run_id)).HasField("last_heartbeat")
                             and r, 30, message="a heartbeat of the running worker")
        assert running.status == pb.RUN_STATUS_RUNNING and len(running.gpus) == 1
        assert running.last_heartbeat.beat >= 1 and running.pid > 0
        # GetHealth names the GPU's holder (from the dispatcher's next status).
        wait_until(lambda: {g.uuid: g.run_id for g in c.health().gpus}.get(
            running.gpus[0]) == run.run_id, 10, message="the GPU held by the run in GetHealth")
        # A run that waits says why, in GetRun and in `trainer show`.
        waiter = c.submit(sleeper(3, 0.1, gpus=2)).run
        waiting = wait_until(lambda: (r := c.get(waiter.run_id)).waiting_reason and r, 20,
                             message="the 2-GPU run's waiting reason")
        assert waiting.status == pb.RUN_STATUS_PENDING and "GPU" in waiting.waiting_reason
        shown = subprocess.run([sys.executable, "-m", "trainer.cli.main", "show", waiter.run_id],
                               env=gw.env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "waiting because" in shown.stdout and "GPU" in shown.stdout, shown.stdout
        logs = b"".join(ch.data for ch in c.logs(run.run_id, "stdout", follow=True))
        assert logs.endswith(b"done\n")
        assert done.wait(30)
        types = [e.type for e in events]
        assert types[:3] == ["RunSubmitted", "GpusClaimed", "RunStarted"]
        assert types[-2:] == ["RunCompleted", "GpusReleased"]
        assert events[-1].status == pb.RUN_STATUS_COMPLETED
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        final = c.get(run.run_id)
        assert final.status == pb.RUN_STATUS_COMPLETED and final.cause == \
            pb.TERMINAL_CAUSE_COMPLETED and final.exit_code == 0
        assert [a.path for a in c.artifacts(run.run_id)
                if a.kind != "code"] == ["ckpt.bin"]
        other = c.submit(sleeper(2, 30)).run
        wait_until(lambda: c.get(other.run_id).status == pb.RUN_STATUS_RUNNING, 30,
                   message="the second run to start")
        c.cancel(other.run_id, reason="enough")
        gone = wait_until(lambda: (r := c.get(other.run_id)).status in TERMINAL and r, 30,
                          message="the cancelled run to end")
        assert gone.status == pb.RUN_STATUS_CANCELLED and gone.cancel_reason == "enough"
        wait_until(lambda: c.get(waiter.run_id).status == pb.RUN_STATUS_COMPLETED, 30,
                   message="the 2-GPU run to complete")
    finally:
        gw.close()
