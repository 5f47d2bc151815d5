"""runtime.experimentresults: an experiment's results from its cells' metrics.jsonl in a
temporary runs folder: final values (the last record holding the metric), missing
metrics, torn and malformed lines, seed counts by status, ranking, curves with their
band, the cache, and the tail read of a large file."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.errors import ValidationError
from runtime import experimentresults as er
from runtime import seedstats
from runtime.experimentresults import CellRef, FileCache, experiment_results


def rid(point: int, seed: int) -> str:
    return f"r{point:06x}{seed:06x}"


def write(runs: Path, run_id: str, records: list[tuple[int, dict[str, Any]]],
          tail: str = "") -> Path:
    folder = runs / run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "metrics.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for step, values in records:
            fh.write(json.dumps({"run_id": run_id, "step": step, "ts": 1.0,
                                 "values": values}) + "\n")
        fh.write(tail)
    return path


@pytest.fixture()
def cache() -> FileCache:
    return FileCache()


def test_final_value_is_the_last_record_holding_the_metric(tmp_path: Path,
                                                           cache: FileCache) -> None:
    write(tmp_path, rid(0, 0), [(0, {"ret": 1.0}), (10, {"ret": 5.0, "loss": 2.0}),
                                (20, {"loss": 1.0})])
    got = experiment_results(str(tmp_path), [{}], [CellRef(0, 0, rid(0, 0), "COMPLETED")],
                             "ret", cache=cache)
    final = got["points"][0]["finals"][0]
    assert (final["value"], final["step"]) == (5.0, 10)
    assert got["metrics"] == ["loss", "ret"]
    assert got["points"][0]["n"] == 1 and got["points"][0]["mean"] == 5.0
    assert got["points"][0]["std"] == 0.0 and got["points"][0]["ci_low"] == 5.0


def test_statistics_over_completed_seeds_only_with_hand_computed_values(
        tmp_path: Path, cache: FileCache) -> None:
    finals = [3.0, 1.0, 4.0, 1.0, 5.0]
    cells = []
    for seed, value in enumerate(finals):
        write(tmp_path, rid(0, seed), [(0, {"ret": 0.0}), (100, {"ret": value})])
        cells.append(CellRef(0, seed, rid(0, seed), "COMPLETED"))
    write(tmp_path, rid(0, 9), [(50, {"ret": 1000.0})])            # running: not counted
    cells.append(CellRef(0, 9, rid(0, 9), "RUNNING"))
    got = experiment_results(str(tmp_path), [{"a.b": 1}], cells, "ret", cache=cache)
    point = got["points"][0]
    s = seedstats.summary(finals, rng=0)
    assert point["n"] == 5 and point["missing"] == 0
    assert point["mean"] == pytest.approx(14 / 5)
    assert point["median"] == 3.0
    assert point["iqm"] == pytest.approx((1 + 3 + 4) / 3)       # n=5: one cut each end
    assert point["std"] == pytest.approx(float(np.std(finals, ddof=1)))
    assert (point["ci_low"], point["ci_high"]) == (s.ci_low, s.ci_high)
    assert [f["value"] for f in point["finals"]] == [*finals, 1000.0]
    assert point["finals"][-1]["status"] == "RUNNING"


def test_missing_metric_torn_and_malformed_lines(tmp_path: Path, cache: FileCache) -> None:
    write(tmp_path, rid(0, 0), [(0, {"ret": 2.0})], tail='{"run_id": "x", "step": 1, "val')
    path = write(tmp_path, rid(0, 1), [(0, {"loss": 1.0})])
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("not json\n[1, 2]\n{\"step\": true, \"values\": {}}\n"
                 "{\"step\": 3, \"values\": 7}\n\n\xff\n")
    write(tmp_path, rid(0, 2), [(0, {"ret": float("nan")})])     # a diverged run
    cells = [CellRef(0, s, rid(0, s), "COMPLETED") for s in range(3)]
    got = experiment_results(str(tmp_path), [{}], cells, "ret", cache=cache)
    point = got["points"][0]
    assert got["skipped_lines"] == 1 + 5          # the torn line; five malformed ones
    assert point["n"] == 1 and point["missing"] == 2
    assert [f["value"] for f in point["finals"]] == [2.0, None, None]
    assert point["finals"][2]["step"] == 0        # held, but not a finite number
    assert point["mean"] == 2.0


def test_seed_counts_by_status_and_absent_files(tmp_path: Path, cache: FileCache) -> None:
    statuses = ["PENDING", "DISPATCHING", "RUNNING", "COMPLETED", "COMPLETED", "FAILED",
                "CANCELLED"]
    cells = [CellRef(0, s, rid(0, s), status) for s, status in enumerate(statuses)]
    write(tmp_path, rid(0, 3), [(1, {"ret": 1.0})])              # the others have no file
    got = experiment_results(str(tmp_path), [{}], cells, "ret", cache=cache)
    point = got["points"][0]
    assert point["seeds"] == {"total": 7, "completed": 2, "failed": 1, "cancelled": 1,
                              "running": 2, "pending": 1}
    assert point["n"] == 1 and point["missing"] == 1
    assert got["unreadable"] == [] and got["skipped_lines"] == 0


def test_ranking_best_and_a_point_without_data(tmp_path: Path, cache: FileCache) -> None:
    # IQM decides, not the mean: point 1 has the higher mean through one outlier.
    finals = {0: [5.0, 6.0, 7.0, 8.0], 1: [0.0, 1.0, 2.0, 100.0], 2: []}
    cells = []
    for point, values in finals.items():
        for seed, value in enumerate(values):
            write(tmp_path, rid(point, seed), [(10, {"ret": value})])
            cells.append(CellRef(point, seed, rid(point, seed), "COMPLETED"))
    cells.append(CellRef(2, 0, rid(2, 0), "FAILED"))
    points = [{"x.lr": 0.1}, {"x.lr": 0.2}, {"x.lr": 0.3}]
    got = experiment_results(str(tmp_path), points, cells, "ret", cache=cache)
    rows = got["points"]
    assert [r["rank"] for r in rows] == [1, 2, None]
    assert [r["best"] for r in rows] == [True, False, False]
    assert rows[1]["mean"] > rows[0]["mean"]
    assert rows[2]["n"] == 0 and rows[2]["mean"] is None and rows[2]["ci_high"] is None
    assert [r["label"] for r in rows] == ["lr=0.1", "lr=0.2", "lr=0.3"]
    lower = experiment_results(str(tmp_path), points, cells, "ret", cache=cache,
                               higher_is_better=False)
    assert [r["rank"] for r in lower["points"]] == [2, 1, None]


def test_labels() -> None:
    assert er.label({}) == "(template)"
    assert er.label({"hyperparameters.noise_std": 0.5, "env": "CartPole-v1"}) == \
        "noise_std=0.5, env=CartPole-v1"
    assert er.label({"a.lr": 1e-4, "b.lr": True}) == "a.lr=0.0001, b.lr=true"


def test_curves_on_a_common_grid_with_a_band(tmp_path: Path, cache: FileCache) -> None:
    # Three seeds on different step grids; values = slope * step.
    grids = {0: range(0, 101, 10), 1: range(0, 101, 25), 2: range(0, 51, 5)}
    slopes = {0: 1.0, 1: 2.0, 2: 3.0}
    statuses = {0: "COMPLETED", 1: "COMPLETED", 2: "RUNNING"}
    cells = []
    for seed, steps in grids.items():
        write(tmp_path, rid(0, seed), [(s, {"ret": slopes[seed] * s}) for s in steps])
        cells.append(CellRef(0, seed, rid(0, seed), statuses[seed]))
    write(tmp_path, rid(0, 3), [(s, {"ret": -1.0}) for s in range(0, 101, 10)])
    cells.append(CellRef(0, 3, rid(0, 3), "FAILED"))                # no curve
    got = experiment_results(str(tmp_path), [{}], cells, "ret", curves=True, grid_points=11,
                             reps=500, cache=cache)
    [curve] = got["curves"]
    assert curve["n"] == 3 and curve["point"] == 0
    assert curve["steps"] == pytest.approx(list(np.linspace(0, 100, 11)))
    # up to step 50 all three seeds (mean slope 2), past it the two completed (1.5).
    assert curve["n_per_step"] == [3] * 6 + [2] * 5
    expected = [2.0 * s if s <= 50 else 1.5 * s for s in curve["steps"]]
    assert curve["mean"] == pytest.approx(expected)
    for lo, mid, hi, s in zip(curve["low"], curve["mean"], curve["high"], curve["steps"]):
        assert lo <= mid <= hi
        if s > 0:
            assert lo < hi                          # seeds differ: a band, not a line
    again = experiment_results(str(tmp_path), [{}], cells, "ret", curves=True,
                               grid_points=11, reps=500, cache=FileCache())
    assert again["curves"] == got["curves"]         # seeded: the same band twice


def test_curves_keep_a_rewritten_steps_last_value_and_skip_points_without_data(
        tmp_path: Path, cache: FileCache) -> None:
    # A resumed attempt writes steps 20 and 30 again after the killed one's.
    write(tmp_path, rid(0, 0), [(0, {"ret": 0.0}), (10, {"ret": 1.0}), (20, {"ret": 9.0}),
                                (30, {"ret": 9.0}), (20, {"ret": 2.0}), (30, {"ret": 3.0})])
    cells = [CellRef(0, 0, rid(0, 0), "COMPLETED"), CellRef(1, 0, rid(1, 0), "PENDING")]
    got = experiment_results(str(tmp_path), [{}, {"a": 1}], cells, "ret", curves=True,
                             grid_points=4, cache=cache)
    [curve] = got["curves"]                          # point 1 has no curve: no entry
    assert curve["steps"] == [0.0, 10.0, 20.0, 30.0]
    assert curve["mean"] == [0.0, 1.0, 2.0, 3.0]
    assert curve["low"] == curve["high"] == curve["mean"]        # one seed
    assert got["points"][0]["finals"][0]["value"] == 3.0
    assert "curves" not in experiment_results(str(tmp_path), [{}, {"a": 1}], cells, "ret",
                                              cache=cache)


def test_a_metric_with_a_slash_in_its_name(tmp_path: Path, cache: FileCache) -> None:
    write(tmp_path, rid(0, 0), [(5, {"rollout/ep_rew_mean": 12.5, "time/fps": 300})])
    got = experiment_results(str(tmp_path), [{}], [CellRef(0, 0, rid(0, 0), "COMPLETED")],
                             "rollout/ep_rew_mean", curves=True, cache=cache)
    assert got["points"][0]["mean"] == 12.5
    assert got["metrics"] == ["rollout/ep_rew_mean", "time/fps"]
    assert got["curves"][0]["steps"] == [5.0]


def test_the_cache_serves_unchanged_files_and_sees_a_file_grow(tmp_path: Path) -> None:
    cache = FileCache(entries=8)
    path = write(tmp_path, rid(0, 0), [(0, {"ret": 1.0})])
    cells = [CellRef(0, 0, rid(0, 0), "COMPLETED")]
    first = experiment_results(str(tmp_path), [{}], cells, "ret", cache=cache)
    assert (cache.misses, cache.hits) == (1, 0)
    assert experiment_results(str(tmp_path), [{}], cells, "ret", cache=cache) == first
    assert (cache.misses, cache.hits) == (1, 1)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"run_id": rid(0, 0), "step": 1, "ts": 2.0,
                             "values": {"ret": 7.0}}) + "\n")
    grown = experiment_results(str(tmp_path), [{}], cells, "ret", cache=cache)
    assert grown["points"][0]["finals"][0]["value"] == 7.0
    assert cache.misses == 2
    for i in range(20):                                           # bounded
        er.read_metrics(str(path), f"m{i}", cache=cache)
    assert len(cache) == 8


def test_the_tail_read_finds_a_record_far_from_the_end(tmp_path: Path) -> None:
    # ~6 MB after the last record holding "eval": several growing chunks back.
    records = [(0, {"eval": 1.0}), (1, {"eval": 42.0})]
    records += [(s, {"loss": 0.5, "pad": "x" * 1000}) for s in range(2, 6_000)]
    path = write(tmp_path, rid(0, 0), records, tail='{"torn')
    size = os.path.getsize(path)
    assert size > 5_000_000
    got = er.read_tail(str(path), size, "eval")
    assert (got.final, got.final_step, got.skipped) == (42.0, 1, 1)
    near = er.read_tail(str(path), size, "loss")
    assert (near.final, near.final_step) == (0.5, 5_999)
    assert near.names == {"loss", "pad"}              # only the tail was read
    whole = er.read_whole(str(path), size, "eval")
    assert whole.final == 42.0 and whole.steps is not None and list(whole.steps) == [0, 1]
    absent = er.read_tail(str(path), size, "nothing")
    assert absent.final is None and not absent.found and absent.names == {"eval", "loss",
                                                                          "pad"}


def test_a_line_longer_than_a_chunk_is_read_whole(tmp_path: Path) -> None:
    path = write(tmp_path, rid(0, 0), [(3, {"ret": 8.0, "blob": "y" * (3 * er.CHUNK)}),
                                       (4, {"loss": 1.0})])
    got = er.read_tail(str(path), os.path.getsize(path), "ret")
    assert (got.final, got.final_step, got.skipped) == (8.0, 3, 0)


def test_refusals_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"cells\[0\]\.point"):
        experiment_results(str(tmp_path), [{}], [CellRef(1, 0, rid(0, 0), "COMPLETED")], "m")
    with pytest.raises(ValidationError, match=r"cells\[0\]\.run_id"):
        experiment_results(str(tmp_path), [{}], [CellRef(0, 0, "../etc", "COMPLETED")], "m")
    with pytest.raises(ValidationError, match=r"cells\[0\]\.status"):
        experiment_results(str(tmp_path), [{}], [CellRef(0, 0, rid(0, 0), "DONE")], "m")
    with pytest.raises(ValidationError, match="metric"):
        experiment_results(str(tmp_path), [{}], [], "")


def test_an_unreadable_file_is_reported_not_fatal(tmp_path: Path, cache: FileCache) -> None:
    (tmp_path / rid(0, 0) / "metrics.jsonl").mkdir(parents=True)   # a folder: not readable
    got = experiment_results(str(tmp_path), [{}], [CellRef(0, 0, rid(0, 0), "COMPLETED")],
                             "ret", cache=cache)
    assert [u["run_id"] for u in got["unreadable"]] == [rid(0, 0)]
    assert got["points"][0]["missing"] == 1
