"""The experiments view against a real stack: an experiment of 2 levels x 2 seeds of
the test-curves worker (final ``score`` = level + seed / 100, ``rollout/ep_rew_mean`` 10
times that) created through the client; the view lists it, its statistics table shows
the means computed by hand (level + 0.005) with the best point marked, the picker offers
the worker's two metric names, the plot has one curve and band per point, switching the
metric changes the table and the plot, and double-clicking a cell selects its run in
the runs view. A screenshot is saved to test-output/gui-experiments.png."""

from __future__ import annotations

import os
from typing import Any

import pytest
from pytestqt.exceptions import TimeoutError as QtTimeout
from PySide6.QtCore import Qt

from tests.helpers import REPO, wait_until
from tests.system.gui.guisystem import System
from trainer.gui.runs_model import RUN_ID_ROLE
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(90)
T = 20000  # ms
LEVELS = (1.0, 2.0)
SPEC = {"name": "gui-levels", "description": "two levels of test-curves, two seeds",
        "template": {"worker": "test-curves", "steps": 500, "heartbeat_interval_s": 0.2,
                     "heartbeat_timeout_s": 20.0, "hyperparameters": {"points": 4}},
        "axes": {"hyperparameters.level": list(LEVELS)}, "seeds": [0, 1]}


def means(view: Any) -> dict[str, float]:
    return {p["label"]: p["mean"] for p in view.results.rows if p["mean"] is not None}


def shows(view: Any, metric: str, scale: float) -> bool:
    """The table and the plot show ``metric``, with the expected means."""
    got = means(view)
    want = {f"level={lv}": scale * (lv + 0.005) for lv in LEVELS}
    return (view.plot.metric == metric and view.plot.curve_count() == len(LEVELS)
            and set(got) == set(want)
            and all(abs(got[k] - want[k]) < 1e-9 for k in want))


def test_the_experiments_view(system: System, window: Any, qtbot: Any) -> None:
    c = system.client()
    created = c.create_experiment(SPEC, submitted_by="gui-test")
    assert created.created_runs == 4
    wait_until(lambda: all(cell.status == pb.RUN_STATUS_COMPLETED
                           for cell in c.experiment("gui-levels").cells), 60,
               message="every cell of gui-levels to complete")
    view = window.experiments
    window.tabs.setCurrentWidget(view)
    qtbot.waitUntil(lambda: view.select_experiment("gui-levels"), timeout=T)
    assert view.experiments.text(view.experiments.row_of("gui-levels"), "runs") == \
        "4 COMPLETED"
    # no eval_return_mean here: the picker takes the first metric the cells report
    qtbot.waitUntil(lambda: set(view.picker.metrics()) == {"score", "rollout/ep_rew_mean"},
                    timeout=T)
    first = view.picker.selected_metric()
    assert first == view.picker.metrics()[0]
    try:
        qtbot.waitUntil(lambda: shows(view, first, 10.0 if first.startswith("rollout")
                                      else 1.0), timeout=T)
    except QtTimeout:
        raise AssertionError((first, means(view), view.plot.metric, view.plot.curve_count(),
                              view.message.text()))
    assert view.picker.choose("score")
    qtbot.waitUntil(lambda: shows(view, "score", 1.0), timeout=T)
    r = view.results
    best = r.row_of(1)                                  # level 2: the higher score
    assert r.best_points() == [1] and r.text(best, "rank") == "1"
    assert r.text(best, "mean ± std") == "2.005 ± 0.007071"
    assert r.text(best, "done") == "2/2" and r.text(best, "n") == "2"
    assert r.data(r.index(best, 0), Qt.ItemDataRole.FontRole).bold()
    assert r.text(r.row_of(0), "median") == "1.005"
    assert sorted(view.plot.legend_labels()) == ["level=1.0 (n=2)", "level=2.0 (n=2)"]
    band = view.plot.bands[1]
    assert band.curves[0].yData[-1] <= 2.005 <= band.curves[1].yData[-1]
    cells = view.cells
    qtbot.waitUntil(lambda: cells.rowCount() == 4, timeout=T)
    assert sorted((cells.text(i, "point"), cells.text(i, "seed")) for i in range(4)) == [
        ("level=1.0", "0"), ("level=1.0", "1"), ("level=2.0", "0"), ("level=2.0", "1")]
    assert {cells.text(i, "status") for i in range(4)} == {"completed"}
    qtbot.waitUntil(lambda: "4 COMPLETED" in view.header.text(), timeout=T)
    out = os.path.join(REPO, "test-output")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "gui-experiments.png")
    assert window.grab().save(path)
    assert os.path.getsize(path) > 10_000  # docs/gui-experiments.png is a copy, by hand

    assert view.picker.choose("rollout/ep_rew_mean")
    qtbot.waitUntil(lambda: shows(view, "rollout/ep_rew_mean", 10.0), timeout=T)
    assert r.text(r.row_of(1), "mean ± std") == "20.05 ± 0.07071"

    # the click-through: a double-click on a cell shows its run in the runs view
    row = next(i for i in range(4) if (cells.text(i, "point"), cells.text(i, "seed"))
               == ("level=2.0", "1"))
    run_id = cells.text(row, "run")
    table = view.cells_table
    table.scrollTo(cells.index(row, 1))
    rect = table.visualRect(cells.index(row, 1))
    # a press first: a view's doubleClicked needs the index pressed to be the one clicked
    qtbot.mouseClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: window.tabs.currentWidget() is window.runs_view, timeout=T)
    qtbot.waitUntil(lambda: window.details.run_id == run_id, timeout=T)
    selected = window.table.selectionModel().selectedRows()
    assert [i.data(RUN_ID_ROLE) for i in selected] == [run_id]
    qtbot.waitUntil(lambda: "seed 1" in window.details.header.text(), timeout=T)
