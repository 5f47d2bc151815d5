"""TensorBoard through real runs (bus, registry, dispatcher, the gateway process and
the `trainer` command):

- a test-curves run's SDK event file, under ``tensorboard/<run name>/``, read back by
  runtime.tbevents and by TensorBoard's EventAccumulator, holds exactly its
  metrics.jsonl (at float32); GetMetrics does not send those values twice;
- ``tensorboard --logdir $TRAINER_HOME/runs`` itself (the real server, its default data
  loading) lists the SDK's run as ``<run_id>/tensorboard/<run name>`` beside the
  worker-written one, and serves the jsonl's values;
- a worker that writes its own logs as SB3 does (test-tensorboard): its scalars come in
  GetMetrics with ``tensorboard`` (after the jsonl points, paged by the cursor; old
  clients see the jsonl points only), and ``trainer sweep show --metric
  rollout/ep_rew_mean`` gives its statistics; a bad cursor is refused naming the field.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.rundir import TB_DIR
from runtime import tbevents
from tests.helpers import REPO, wait_until
from tests.system.gateway import Gateway, rpc_error
from tests.system.stack import Stack
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(150)
TAG = "rollout/ep_rew_mean"


def trainer(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=gw.env,
                          cwd=REPO, capture_output=True, text=True, timeout=90)


def completed(c, run_id: str) -> pb.Run:
    return wait_until(lambda: (r := c.get(run_id)).status == pb.RUN_STATUS_COMPLETED
                      and r, 60, message=f"run {run_id} to complete")


def _f32(x: float) -> float:
    return float(np.float32(x))


def test_the_sdk_event_file_holds_the_runs_metrics_jsonl(dstack: Stack) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        run = c.submit({"worker": "test-curves", "name": "curves / level 2", "seed": 3,
                        "steps": 500, "heartbeat_interval_s": 0.2,
                        "hyperparameters": {"level": 2.0, "points": 60}}).run
        completed(c, run.run_id)
        folder = os.path.join(dstack.settings.runs_dir, run.run_id)
        with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        assert len(records) == 60
        files = tbevents.event_files(folder, sdk=True)
        assert files and all(f.startswith(f"{TB_DIR}/curves_level_2/") for f in files), files
        assert tbevents.event_files(folder) == []        # no file of the worker's own
        want = [(tag, r["step"], r["ts"], _f32(v)) for r in records
                for tag, v in r["values"].items()]
        got = tbevents.read_scalars(os.path.join(folder, files[0]))
        assert got.error is None
        assert [(s.tag, s.step, s.wall_time, s.value) for s in got.scalars] == want
        acc = EventAccumulator(os.path.join(folder, os.path.dirname(files[0])))
        acc.Reload()
        assert sorted(acc.Tags()["scalars"]) == [TAG, "score"]
        for tag in (TAG, "score"):
            assert [(e.step, e.wall_time, e.value) for e in acc.Scalars(tag)] == \
                [(r["step"], r["ts"], _f32(r["values"][tag])) for r in records]
        # GetMetrics: the jsonl's points only (the SDK's file is a copy, not more points)
        answer = c.metrics(run.run_id, tensorboard=True)
        assert len(answer.points) == 60 and {p.source for p in answer.points} == {""}
    finally:
        gw.close()


def test_a_workers_own_tensorboard_logs_are_its_metrics(dstack: Stack,
                                                        tmp_path: Path) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        run = c.submit({"worker": "test-tensorboard", "seed": 1, "steps": 500,
                        "heartbeat_interval_s": 0.2,
                        "hyperparameters": {"level": 2.0, "points": 5}}).run
        completed(c, run.run_id)
        old = c.metrics(run.run_id)                      # an old client: jsonl only
        assert [dict(p.values) for p in old.points] == [{"sdk_score": k} for k in range(1, 6)]
        assert old.next_tensorboard_cursor == ""
        points, cursor, offset = [], "", 0
        for _ in range(20):                              # 3 points a page
            page = c.metrics(run.run_id, offset, limit=3, tensorboard=True,
                             tensorboard_cursor=cursor)
            points += page.points
            if not page.points and page.next_tensorboard_cursor == cursor:
                break
            offset, cursor = page.next_offset, page.next_tensorboard_cursor
        jsonl = [p for p in points if not p.source]
        tb = [p for p in points if p.source]
        assert [dict(p.values) for p in jsonl] == [{"sdk_score": k} for k in range(1, 6)]
        assert {p.source.split("/")[:2] == [TB_DIR, "PPO_1"] for p in tb} == {True}
        merged: dict[int, dict] = {}
        for p in tb:
            merged.setdefault(p.step, {}).update(p.values)
        assert merged == {k * 100: {TAG: pytest.approx(_f32(10 * (2.0 * k / 5 + 0.01))),
                                    "train/loss": pytest.approx(_f32(1 / k))}
                          for k in range(1, 6)}
        assert all(p.time.seconds > 0 for p in tb)
        err = rpc_error(c.metrics, run.run_id, tensorboard=True, tensorboard_cursor="%%")
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT
        assert err.field == "tensorboard_cursor"

        # an experiment whose metric is the worker's own tag
        spec = {"name": "tb-levels", "template": {"worker": "test-tensorboard", "steps": 500,
                                                  "heartbeat_interval_s": 0.2},
                "axes": {"hyperparameters.level": [1.0, 2.0]}, "seeds": [0, 1]}
        path = tmp_path / "tb.json"
        path.write_text(json.dumps(spec))
        out = trainer(gw, "sweep", "submit", str(path))
        assert out.returncode == 0, out.stdout + out.stderr
        waited = trainer(gw, "sweep", "wait", "tb-levels")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        shown = trainer(gw, "sweep", "show", "tb-levels", "--json", "--metric", TAG)
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        assert {TAG, "train/loss", "sdk_score"} <= set(data["metrics"])
        means = {p["values"]["hyperparameters.level"]: p["mean"] for p in data["points"]}
        assert means == pytest.approx({1.0: _f32(10.05), 2.0: _f32(20.05)}, rel=1e-6)
        assert all(p["n"] == 2 for p in data["points"])
        results = c.experiment_results("tb-levels", TAG, curves=True)
        assert results.metric == TAG and TAG in results.metrics
        assert len(results.curves) == 2 and all(cv.n == 2 for cv in results.curves)
    finally:
        gw.close()


def _get(port: int, path: str) -> object:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as got:
            return json.loads(got.read())
    except (urllib.error.URLError, ConnectionError):
        return None


def test_tensorboard_itself_lists_every_run_by_id_and_name(dstack: Stack) -> None:
    gw = Gateway(dstack).start()
    tb = None
    try:
        c = gw.client()
        named = c.submit({"worker": "test-tensorboard", "name": "ppo-like", "seed": 0,
                          "steps": 500, "heartbeat_interval_s": 0.2}).run
        completed(c, named.run_id)
        runs_dir = dstack.settings.runs_dir
        with open(os.path.join(runs_dir, named.run_id, "metrics.jsonl"),
                  encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        tb = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "tensorboard"),
                               "--logdir", runs_dir, "--host", "127.0.0.1", "--port",
                               str(port), "--reload_interval", "1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        want = {f"{named.run_id}/tensorboard/ppo-like", f"{named.run_id}/tensorboard/PPO_1"}
        runs = wait_until(lambda: (got := _get(port, "/data/runs")) and want <= set(got)
                          and got, 60, interval=0.2, message="TensorBoard to list the run")
        assert all(r.startswith(named.run_id) for r in runs if named.run_id in r)
        tags = wait_until(lambda: _get(port, "/data/plugin/scalars/tags"), 30,
                          interval=0.2, message="TensorBoard's scalar tags")
        assert set(tags[f"{named.run_id}/tensorboard/ppo-like"]) == {"sdk_score"}
        assert set(tags[f"{named.run_id}/tensorboard/PPO_1"]) == {TAG, "train/loss"}
        query = urllib.parse.urlencode({"run": f"{named.run_id}/tensorboard/ppo-like",
                                        "tag": "sdk_score"})
        points = _get(port, f"/data/plugin/scalars/scalars?{query}")
        assert [(p[1], p[2]) for p in points] == \
            [(r["step"], _f32(r["values"]["sdk_score"])) for r in records]
        assert [p[0] for p in points] == pytest.approx([r["ts"] for r in records])
    finally:
        if tb is not None:
            tb.send_signal(signal.SIGTERM)
            try:
                tb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                tb.kill()
                tb.wait(timeout=10)
        gw.close()
