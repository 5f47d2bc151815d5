"""Experiments through the public API (bus, registry, dispatcher, the gateway process
and the `trainer` command), with a worker whose curves are known (test-curves): a sweep
of 2 levels x 3 seeds is created by `trainer sweep submit` in one call, submitted again
creates nothing, widened creates only the new cells; a seed that fails is shown, then
rerun as a new attempt; `sweep show` prints the statistics computed by hand (also as
JSON and CSV, for the worker's own metric names, "rollout/ep_rew_mean" too); `sweep
plot` writes the PNG; `sweep cancel` ends every run; a bad value is refused naming the
axis and nothing is stored."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.helpers import REPO, wait_until
from tests.system.gateway import Gateway, rpc_error
from tests.system.stack import Stack
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(150)

TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}
TEMPLATE = {"worker": "test-curves", "steps": 500, "heartbeat_interval_s": 0.2,
            "heartbeat_timeout_s": 20.0, "hyperparameters": {"fail_seeds": [2]}}


def spec(levels: list[float], **more: object) -> dict:
    return {"name": "levels", "template": TEMPLATE,
            "axes": {"hyperparameters.level": levels}, "seeds": [0, 1, 2], **more}


def trainer(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=gw.env,
                          cwd=REPO, capture_output=True, text=True, timeout=90)


def write(tmp_path: Path, name: str, data: dict) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def all_ended(c, name: str) -> pb.Experiment:
    return wait_until(lambda: all((e := c.experiment(name)).cells) and
                      all(cell.status in TERMINAL for cell in e.cells) and e, 90,
                      message=f"every run of {name} to end")


def test_a_sweep_from_submit_to_statistics(dstack: Stack, tmp_path: Path) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        path = write(tmp_path, "levels.json", spec([1.0, 2.0]))
        out = trainer(gw, "sweep", "submit", path)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "levels revision 1: 2 points x 3 seeds, 6 new runs" in out.stdout
        again = trainer(gw, "sweep", "submit", path)
        assert again.returncode == 0 and "no new run" in again.stdout, again.stdout
        wider = write(tmp_path, "levels.json", spec([1.0, 2.0, 3.0]))
        out = trainer(gw, "sweep", "submit", wider)
        assert "revision 2: 3 points x 3 seeds, 3 new runs" in out.stdout, out.stdout
        exp = c.experiment("levels")
        assert exp.cell_count == 9 and len({cell.run_id for cell in exp.cells}) == 9
        runs = [c.get(cell.run_id) for cell in exp.cells]
        assert {json.loads(r.config_json)["seed"] for r in runs} == {0, 1, 2}

        # seed 2 fails its first attempt: wait says so and exits 1; rerun gives it another
        waited = trainer(gw, "sweep", "wait", "levels")
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert "9 cells: 6 COMPLETED, 3 FAILED" in waited.stdout
        assert waited.stderr.count("FAILED: exit_code") == 3 and "seed 2" in waited.stderr
        rerun = trainer(gw, "sweep", "rerun", "levels")
        assert rerun.returncode == 0 and "3 runs rerun" in rerun.stdout, rerun.stdout
        waited = trainer(gw, "sweep", "wait", "levels")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        exp = all_ended(c, "levels")
        assert {cell.attempt for cell in exp.cells if cell.seed == 2} == {2}

        # the statistics, by hand: level L's finals are L + 0.00, L + 0.01, L + 0.02
        shown = trainer(gw, "sweep", "show", "levels", "--json", "--metric", "score")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)
        by_level = {p["values"]["hyperparameters.level"]: p for p in data["points"]}
        for level, p in by_level.items():
            assert p["n"] == 3 and p["seeds"]["completed"] == 3
            assert p["mean"] == pytest.approx(level + 0.01)
            assert p["median"] == pytest.approx(level + 0.01)
            assert p["iqm"] == pytest.approx(level + 0.01)   # n=3: trim_mean cuts none
            assert p["std"] == pytest.approx(0.01)
            assert p["ci_low"] <= p["iqm"] <= p["ci_high"]
        assert by_level[3.0]["rank"] == 1 and by_level[3.0]["best"]
        assert by_level[1.0]["rank"] == 3 and not by_level[1.0]["best"]
        assert {"score", "rollout/ep_rew_mean"} <= set(data["metrics"])
        sb3 = json.loads(trainer(gw, "sweep", "show", "levels", "--json", "--metric",
                                 "rollout/ep_rew_mean").stdout)
        assert {p["values"]["hyperparameters.level"]: p["mean"] for p in sb3["points"]} == \
            pytest.approx({1.0: 10.1, 2.0: 20.1, 3.0: 30.1})
        rows = list(csv.DictReader(io.StringIO(
            trainer(gw, "sweep", "show", "levels", "--csv", "--metric", "score").stdout)))
        assert len(rows) == 3
        table = trainer(gw, "sweep", "show", "levels", "--metric", "score")
        assert table.returncode == 0 and "level=3" in table.stdout, table.stdout
        assert "9 cells: 9 COMPLETED" in table.stdout
        listed = trainer(gw, "sweep", "ls")
        assert "levels" in listed.stdout and "ACTIVE" in listed.stdout

        png = tmp_path / "curves.png"
        plot = trainer(gw, "sweep", "plot", "levels", "--metric", "score", "-o", str(png),
                       "--profile")
        assert plot.returncode == 0, plot.stdout + plot.stderr
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000

        # a bad value: refused naming the axis, nothing stored
        bad = write(tmp_path, "bad.json", {**spec([1.0]), "name": "bad",
                                           "axes": {"steps": [500, -1]}})
        refused = trainer(gw, "sweep", "submit", bad)
        assert refused.returncode == 1 and "axes.steps[1]" in refused.stderr, refused.stderr
        err = rpc_error(c.experiment, "bad")
        assert err.code == grpc.StatusCode.NOT_FOUND
        dup = write(tmp_path, "dup.json", {**spec([1.0]), "name": "dup", "seeds": [1, 1]})
        assert "seeds[1]" in trainer(gw, "sweep", "submit", dup).stderr
    finally:
        gw.close()


def test_cancel_ends_every_run_of_the_experiment(dstack: Stack, tmp_path: Path) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        held = {**TEMPLATE, "hyperparameters": {"hold": True}}
        got = c.create_experiment({"name": "held", "template": held,
                                   "axes": {"hyperparameters.level": [1, 2]}, "seeds": 3})
        assert got.created_runs == 6
        wait_until(lambda: sum(cell.status == pb.RUN_STATUS_RUNNING
                               for cell in c.experiment("held").cells) >= 2, 60,
                   message="two cells running")
        out = trainer(gw, "sweep", "cancel", "held", "--reason", "wrong axis")
        assert out.returncode == 0 and "6 runs asked to stop" in out.stdout, out.stdout
        exp = all_ended(c, "held")
        assert {cell.status for cell in exp.cells} == {pb.RUN_STATUS_CANCELLED}
        assert exp.status == "CANCELLED"
        run = c.get(exp.cells[0].run_id)
        assert run.cancel_reason == "wrong axis"
    finally:
        gw.close()
