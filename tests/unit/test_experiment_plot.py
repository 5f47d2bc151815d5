"""trainer.experiments.plot: the PNG of an experiment's curves (and its performance
profile), drawn headless."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from core.errors import ValidationError
from runtime.experimentresults import CellRef, FileCache, experiment_results
from trainer.experiments import plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def results(tmp_path: Path) -> dict:
    cells = []
    for point in range(2):
        for seed in range(3):
            run_id = f"r{point:06x}{seed:06x}"
            (tmp_path / run_id).mkdir()
            lines = [json.dumps({"run_id": run_id, "step": s, "ts": 0.0,
                                 "values": {"ret": (point + 1) * s + seed}}) + "\n"
                     for s in range(0, 200, 10)]
            (tmp_path / run_id / "metrics.jsonl").write_text("".join(lines))
            cells.append(CellRef(point, seed, run_id, "COMPLETED" if seed < 2 else "RUNNING"))
    return experiment_results(str(tmp_path), [{"a.lr": 0.1}, {"a.lr": 0.2}], cells, "ret",
                              curves=True, reps=200, cache=FileCache())


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_plot_writes_a_png_of_the_curves(results: dict, tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    assert plot.plot_curves(results, str(out), title="sweep") == str(out)
    assert png_size(out) == (800, 500)
    assert out.stat().st_size > 10_000
    fig = plot.figure(results)
    [ax] = fig.axes
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "ret"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["lr=0.1 (n=3)",
                                                                   "lr=0.2 (n=3)"]
    assert len(ax.lines) == 2 and len(ax.collections) == 2          # curves and bands


def test_profile_adds_a_second_panel(results: dict, tmp_path: Path) -> None:
    out = tmp_path / "profile.png"
    plot.plot_curves(results, str(out), profile=True)
    assert png_size(out) == (1300, 500)
    fig = plot.figure(results, profile=True)
    assert len(fig.axes) == 2
    prof = fig.axes[1]
    assert len(prof.lines) == 2                                     # one per point
    for line in prof.lines:
        y = list(line.get_ydata())
        assert y[0] == 1.0 and y[-1] == 0.0                         # spans the finals
    legend = [t.get_text() for t in prof.get_legend().get_texts()]
    assert legend == ["lr=0.1 (n=2)", "lr=0.2 (n=2)"]               # completed only


def test_plot_without_curves_is_refused(results: dict, tmp_path: Path) -> None:
    bare = {k: v for k, v in results.items() if k != "curves"}
    with pytest.raises(ValidationError, match="results.curves"):
        plot.plot_curves(bare, str(tmp_path / "x.png"))
    empty = {**results, "curves": [], "points": []}
    plot.plot_curves(empty, str(tmp_path / "empty.png"), profile=True)
    assert png_size(tmp_path / "empty.png") == (1300, 500)
