"""The experiments view's models and widgets on hand-made answers (convert.results and
convert.experiment dicts): the statistics' text, the best point's style, the cells'
labels, the metric picker's choice across feeds, the plots' curves and bands."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt

from trainer.gui.experiment_models import (KEY_ROLE, CellsModel, ExperimentsModel,
                                           ResultsModel, counts_text, num)
from trainer.gui.metric_picker import MetricPicker, metric_names


def point(i: int, label: str, mean: float | None, best: bool = False, **more: Any) -> dict:
    stats = {"mean": mean, "std": 0.00707, "median": mean, "iqm": mean,
             "ci_low": None if mean is None else mean - 0.005,
             "ci_high": None if mean is None else mean + 0.005}
    if mean is None:
        stats = dict.fromkeys(stats)
    return {"point": i, "label": label, "seeds_total": 2, "completed": 2, "failed": 0,
            "cancelled": 0, "running": 0, "pending": 0, "n": 2 if mean is not None else 0,
            "missing": 0, "rank": 0 if mean is None else 2 - int(best), "best": best,
            **stats, **more}


def test_the_statistics_table_shows_each_point_and_marks_the_best() -> None:
    m = ResultsModel()
    m.set_rows([point(0, "level=1", 1.005), point(1, "level=2", 2.005, best=True),
                point(2, "level=3", None, completed=0, running=1, pending=1)])
    assert m.rowCount() == 3 and m.columnCount() == 10
    assert m.text(0, "point") == "level=1" and m.text(0, "done") == "2/2"
    assert m.text(0, "mean ± std") == "1.005 ± 0.00707"
    assert m.text(1, "IQM [95% CI]") == "2.005 [2, 2.01]"
    assert m.text(1, "rank") == "1" and m.text(2, "rank") == "–"
    assert m.text(2, "mean ± std") == "–" and m.text(2, "running") == "1"
    best = m.index(1, 0)
    assert m.data(best, Qt.ItemDataRole.FontRole).bold()
    assert m.data(best, Qt.ItemDataRole.BackgroundRole) is not None
    assert m.data(m.index(0, 0), Qt.ItemDataRole.BackgroundRole) is None
    assert m.best_points() == [1] and m.data(best, KEY_ROLE) == 1


def test_rows_of_the_same_keys_are_updated_in_place_and_others_reset() -> None:
    m = ResultsModel()
    m.set_rows([point(0, "a", 1.0)])
    changed: list[int] = []
    reset: list[int] = []
    m.dataChanged.connect(lambda *a: changed.append(1))
    m.modelReset.connect(lambda: reset.append(1))
    m.set_rows([point(0, "a", 2.0)])
    assert changed == [1] and reset == [] and m.text(0, "median") == "2"
    m.set_rows([point(0, "a", 2.0), point(1, "b", 3.0)])
    assert reset == [1] and m.row_of(1) == 1 and m.row_of(7) == -1


def test_the_experiments_and_the_cells() -> None:
    exps = ExperimentsModel()
    exps.set_rows([{"name": "levels", "status": "ACTIVE", "revision": 2, "cell_count": 4,
                    "run_counts": {"RUNNING": 1, "COMPLETED": 3}, "description": "d"}])
    assert [exps.text(0, c) for c in ("name", "status", "rev", "cells", "runs")] == \
        ["levels", "ACTIVE", "2", "4", "1 RUNNING, 3 COMPLETED"]
    assert exps.data(exps.index(0, 0), KEY_ROLE) == "levels"
    assert counts_text({}) == "none" and counts_text({"ODD": 1, "FAILED": 2}) == \
        "2 FAILED, 1 ODD"
    cells = CellsModel()
    cells.set_cells({"point_labels": ["level=1", "level=2"], "cells": [
        {"point": 1, "seed": 0, "run_id": "r-1", "status": "failed", "attempt": 2,
         "cause": "exit_code"},
        {"point": 0, "seed": 1, "run_id": "r-2", "status": "completed", "attempt": 1,
         "cause": ""}]})
    assert [cells.text(0, c) for c in ("point", "seed", "run", "status", "attempt")] == \
        ["level=2", "0", "r-1", "failed (exit_code)", "2"]
    assert cells.text(1, "status") == "completed"
    assert cells.data(cells.index(1, 3), KEY_ROLE) == "r-2"
    assert cells.data(cells.index(1, 3), Qt.ItemDataRole.ForegroundRole) is not None
    cells.set_labels({1: "level=2.0"})      # the statistics' labels, when known
    assert cells.text(0, "point") == "level=2.0" and cells.text(1, "point") == "level=1"
    assert num(None) == "–" and num(1234567.0) == "1.235e+06"


def test_the_picker_keeps_a_choice_still_offered(qtbot: Any) -> None:
    p = MetricPicker()
    qtbot.addWidget(p)
    seen: list[str] = []
    p.chosen.connect(seen.append)
    assert p.selected_metric() == "eval_return_mean"     # nothing offered yet
    p.set_metrics(["score", "rollout/ep_rew_mean"])      # no eval_return_mean: the first
    assert p.metrics() == ["score", "rollout/ep_rew_mean"] and seen == ["score"]
    assert p.choose("rollout/ep_rew_mean") and not p.choose("nope")
    p.set_metrics(["eval_return_mean", "rollout/ep_rew_mean", "score"])
    assert p.selected_metric() == "rollout/ep_rew_mean"  # the user's choice stays
    p.set_metrics(["eval_return_mean", "score"])
    assert p.selected_metric() == "eval_return_mean"     # gone: the preferred one
    assert seen == ["score", "rollout/ep_rew_mean", "eval_return_mean"]
    p.set_metrics(["eval_return_mean", "score"])         # the same list: no signal
    assert len(seen) == 3
    assert metric_names([{"step": 1, "values": {"b": 1.0, "a": 2.0}},
                         {"step": 2, "values": {"c": 0.0, "a": 1.0}}]) == ["a", "b", "c"]


def test_the_bands_plot(qtbot: Any) -> None:
    from trainer.gui.plots import BandsPlot, translucent
    plot = BandsPlot()
    qtbot.addWidget(plot)
    curve = {"steps": [100.0, 200.0], "mean": [1.0, 2.0], "low": [0.5, 1.5],
             "high": [1.5, 2.5], "n": 2}
    plot.set_curves("score", [{**curve, "point": 0}, {**curve, "point": 1},
                              {**curve, "point": 2, "steps": [], "n": 0}],
                    {0: "level=1", 1: "level=2"}, best=[1])
    assert plot.curve_count() == 2 and set(plot.bands) == {0, 1}
    assert plot.legend_labels() == ["level=1 (n=2)", "level=2 (n=2)"]
    assert plot.lines[1].opts["pen"].widthF() > plot.lines[0].opts["pen"].widthF()
    plot.set_curves("other", [{**curve, "point": 0}], {})
    assert plot.curve_count() == 1 and plot.legend_labels() == ["point 0 (n=2)"]
    assert translucent("#ff8000", 10) == (255, 128, 0, 10)
