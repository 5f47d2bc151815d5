"""trainer.experiments.table: the CLI's text table, CSV and JSON of an experiment's
results, against hand-computed numbers."""

from __future__ import annotations

import csv as csvmod
import io
import json
from pathlib import Path

import pytest

from runtime.experimentresults import CellRef, FileCache, experiment_results
from trainer.experiments import table


@pytest.fixture()
def results(tmp_path: Path) -> dict:
    # point 0: finals 1, 2, 3, 6 (mean 3, median 2.5, IQM 2.5); point 1: 10, 20 and a
    # running seed; point 2: one failed seed.
    finals = {0: [1.0, 2.0, 3.0, 6.0], 1: [10.0, 20.0]}
    cells = []
    for point, values in finals.items():
        for seed, value in enumerate(values):
            run_id = f"r{point:06x}{seed:06x}"
            (tmp_path / run_id).mkdir()
            (tmp_path / run_id / "metrics.jsonl").write_text(
                json.dumps({"run_id": run_id, "step": 5, "ts": 0.0,
                            "values": {"ret": value}}) + "\n")
            cells.append(CellRef(point, seed, run_id, "COMPLETED"))
    cells += [CellRef(1, 7, "r000001000007", "RUNNING"), CellRef(2, 0, "r000002000000", "FAILED")]
    points = [{"hp.lr": 0.1}, {"hp.lr": 0.01}, {"hp.lr": 1.0}]
    return experiment_results(str(tmp_path), points, cells, "ret", reps=300,
                              cache=FileCache())


def test_text_has_one_aligned_row_per_point(results: dict) -> None:
    out = table.text(results)
    lines = out.splitlines()
    assert lines[0].startswith("metric ret:") and "higher is better" in lines[0]
    header = lines[2]
    for column in ("point", "label", "done", "failed", "running", "mean ± std", "median",
                   "IQM [95% CI]", "rank", "best"):
        assert column in header
    rows = lines[4:7]
    assert rows[0].split()[:9] == ["0", "lr=0.1", "4/4", "0", "0", "4", "3", "±", "2.16"]
    assert "2.5 [" in rows[0]                                 # median and IQM are 2.5
    # point 1: mean 15 ± 7.071, IQM 15, the best, rank 1, one seed running.
    assert rows[1].split()[:10] == ["1", "lr=0.01", "2/3", "0", "1", "2", "15", "±", "7.071",
                                    "15"]
    assert rows[1].rstrip().endswith("*") and not rows[0].rstrip().endswith("*")
    assert rows[2].split() == ["2", "lr=1.0", "0/1", "1", "0", "0", "-", "-", "-", "-"]
    # aligned: the "rank" column ends at one place on every row
    end = header.index("rank") + len("rank")
    assert rows[0][end - 1] == "2" and rows[1][end - 1] == "1" and rows[2][end - 1] == "-"


def test_text_notes_missing_values_and_skipped_lines(results: dict) -> None:
    results = {**results, "skipped_lines": 3}
    results["points"][0] = {**results["points"][0], "missing": 1}
    out = table.text(results)
    assert "note: 1 completed seed(s) reported no final value of ret" in out
    assert "note: 3 malformed line(s) skipped" in out


def test_csv_one_row_per_point_with_the_same_fields(results: dict) -> None:
    rows = list(csvmod.DictReader(io.StringIO(table.csv(results))))
    assert list(rows[0]) == [*table.CSV_FIELDS, "hp.lr"]
    assert [r["point"] for r in rows] == ["0", "1", "2"]
    first = rows[0]
    assert float(first["mean"]) == 3.0 and float(first["median"]) == 2.5
    assert float(first["iqm"]) == 2.5
    assert float(first["std"]) == pytest.approx((14 / 3) ** 0.5)   # values 1,2,3,6
    assert (first["completed"], first["total"], first["rank"], first["best"]) == \
        ("4", "4", "2", "False")
    assert (rows[1]["running"], rows[1]["rank"], rows[1]["best"]) == ("1", "1", "True")
    assert rows[2]["mean"] == "" and rows[2]["rank"] == "" and rows[2]["failed"] == "1"
    assert [r["hp.lr"] for r in rows] == ["0.1", "0.01", "1.0"]


def test_json_is_the_data_itself(results: dict) -> None:
    assert json.loads(table.json(results)) == results
