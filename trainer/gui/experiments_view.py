"""The experiments view (a tab of the main window): the experiments (ListExperiments,
refreshed while the view is shown), and for the selected one the statistics per config
point (GetExperimentResults for the metric of the picker), its cells' runs
(GetExperiment) and the points' curves with their bands (GetExperimentResults with
curves). Double-clicking a cell emits ``open_run`` with its run id (the main window
selects that run in the runs view). Every call goes through the Calls pool; an answer
for another experiment or metric than the one shown now is dropped."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QItemSelection, QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QHeaderView, QLabel, QSplitter,
                               QTableView, QVBoxLayout, QWidget)

from trainer.client import Client
from trainer.gui import convert
from trainer.gui.experiment_models import (KEY_ROLE, CellsModel, ExperimentsModel,
                                           ResultsModel, counts_text)
from trainer.gui.metric_picker import MetricPicker
from trainer.gui.plots import BandsPlot
from trainer.gui.qtcalls import Calls

ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})


def table_view(model: Any) -> QTableView:
    t = QTableView()
    t.setModel(model)
    t.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    t.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    t.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    t.verticalHeader().hide()
    t.setWordWrap(False)
    t.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    t.horizontalHeader().setStretchLastSection(True)
    return t


def _all_ended(exp: dict[str, Any]) -> bool:
    counts = exp["run_counts"]
    return sum(counts.values()) >= exp["cell_count"] and all(s in ENDED for s, n in
                                                              counts.items() if n)


class ExperimentsView(QWidget):
    open_run = Signal(str)     # a cell was double-clicked: its run id

    def __init__(self, calls: Calls, parent: Optional[QWidget] = None,
                 refresh_ms: int = 2000) -> None:
        super().__init__(parent)
        self.calls = calls
        self.name = ""                  # the experiment shown
        self.seen_counts: dict[str, int] = {}   # its run counts at the last detail fetch
        self.dirty = False              # its details must be fetched again
        self.busy: set[str] = set()     # kinds of call in flight: list, experiment, results
        self.results_error: Optional[dict] = None
        self.experiments = ExperimentsModel(self)
        self.results = ResultsModel(self)
        self.cells = CellsModel(self)
        self.list_table = table_view(self.experiments)
        self.list_table.selectionModel().selectionChanged.connect(self._selected)
        self.results_table = table_view(self.results)
        self.cells_table = table_view(self.cells)
        self.cells_table.doubleClicked.connect(self._cell_activated)
        self.cells_table.setToolTip("double-click a cell to show its run")
        self.header = QLabel("no experiment selected")
        self.header.setWordWrap(True)
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.picker = MetricPicker()
        self.picker.chosen.connect(self._metric_chosen)
        self.plot = BandsPlot()
        pick_row = QHBoxLayout()
        pick_row.addWidget(QLabel("metric"))
        pick_row.addWidget(self.picker, 1)
        plot_box = QWidget()
        plot_lay = QVBoxLayout(plot_box)
        plot_lay.setContentsMargins(0, 0, 0, 0)
        plot_lay.addLayout(pick_row)
        plot_lay.addWidget(self.plot, 1)
        lower = QSplitter()
        lower.addWidget(self.cells_table)
        lower.addWidget(plot_box)
        lower.setSizes([380, 560])
        right_split = QSplitter(Qt.Orientation.Vertical)
        right_split.addWidget(self.results_table)
        right_split.addWidget(lower)
        right_split.setSizes([180, 420])
        right = QWidget()
        right_lay = QVBoxLayout(right)
        right_lay.setContentsMargins(0, 0, 0, 0)
        right_lay.addWidget(self.header)
        right_lay.addWidget(right_split, 1)
        right_lay.addWidget(self.message)
        split = QSplitter()
        split.addWidget(self.list_table)
        split.addWidget(right)
        split.setSizes([330, 950])
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)
        self.timer = QTimer(self, interval=refresh_ms)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()

    # --- the list ------------------------------------------------------------------
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        """List the experiments (while shown), and fetch the shown one's details again
        while its runs have not all ended."""
        if not self.isVisible():
            return
        if "list" not in self.busy:
            self.busy.add("list")
            self.calls.start(lambda c: [convert.experiment(e) for e in c.experiments()],
                             self._listed, self._list_failed)
        if self.dirty:
            self.fetch_details()

    def _listed(self, experiments: list[dict[str, Any]]) -> None:
        self.busy.discard("list")
        self.experiments.set_rows(experiments)   # a new row resets the selection
        row = self.experiments.row_of(self.name) if self.name else -1
        if not self.list_table.selectionModel().hasSelection() and experiments:
            self.list_table.selectRow(max(row, 0))
        if row >= 0:
            exp = self.experiments.rows[row]
            if exp["run_counts"] != self.seen_counts or not _all_ended(exp):
                self.dirty = True

    def _list_failed(self, err: dict) -> None:
        self.busy.discard("list")
        self.message.setText(f"experiments: {err['code']}: {err['message']}")

    def select_experiment(self, name: str) -> bool:
        row = self.experiments.row_of(name)
        if row >= 0:
            self.list_table.selectRow(row)
        return row >= 0

    def _selected(self, selected: QItemSelection, _: QItemSelection) -> None:
        rows = selected.indexes()
        if not rows:
            return
        name = rows[0].data(KEY_ROLE)
        if name != self.name:
            self.name = name
            self.seen_counts = {}
            self.results_error = None
            self.results.set_rows([])
            self.cells.labels = {}
            self.cells.set_cells({"point_labels": [], "cells": []})
            self.plot.clear_curves()
            self.message.clear()
            self.header.setText(f"<b>{name}</b>")
        self.fetch_details()

    # --- the selected experiment -------------------------------------------------------
    def fetch_details(self) -> None:
        if not self.name:
            return
        self.dirty = False
        name, metric = self.name, self.picker.selected_metric()
        if "experiment" not in self.busy:
            self.busy.add("experiment")
            self.calls.start(lambda c: convert.experiment(c.experiment(name)),
                             self._got_experiment, self._experiment_failed)
        self.fetch_results(name, metric)

    def fetch_results(self, name: str, metric: str) -> None:
        if "results" in self.busy:
            self.dirty = True        # again when this one is answered
            return
        self.busy.add("results")

        def fetch(c: Client) -> dict[str, Any]:
            got = convert.results(c.experiment_results(name, metric, curves=True))
            return {**got, "name": name, "asked": metric}
        self.calls.start(fetch, self._got_results, self._results_failed)

    def _got_experiment(self, exp: dict[str, Any]) -> None:
        self.busy.discard("experiment")
        if exp["name"] != self.name:
            return
        self.seen_counts = exp["run_counts"]
        if not _all_ended(exp):
            self.dirty = True
        self.cells.set_cells(exp)
        bits = [f"<b>{exp['name']}</b>", exp["status"], f"revision {exp['revision']}",
                f"{len(exp['point_labels'])} points, {exp['cell_count']} cells: "
                f"{counts_text(exp['run_counts'])}"]
        if exp["max_concurrent"]:
            bits.append(f"at most {exp['max_concurrent']} at once")
        if exp["description"]:
            bits.append(exp["description"][:200])
        self.header.setText(" · ".join(bits))

    def _experiment_failed(self, err: dict) -> None:
        self.busy.discard("experiment")
        self.message.setText(f"experiment: {err['code']}: {err['message']}")

    def _got_results(self, got: dict[str, Any]) -> None:
        self.busy.discard("results")
        if got["name"] != self.name or got["asked"] != self.picker.selected_metric():
            self.dirty = True        # the selection or the metric changed meanwhile
            return
        self.results_error = None
        self.picker.set_metrics(got["metrics"])
        if got["metric"] != self.picker.selected_metric():
            self.dirty = True        # the picker chose another of the reported metrics
            return
        self.results.set_rows(got["points"])
        labels = {p["point"]: p["label"] for p in got["points"]}
        self.cells.set_labels(labels)
        self.plot.set_curves(got["metric"], got["curves"], labels,
                             self.results.best_points())
        missing = got["metrics"] and got["metric"] not in got["metrics"]
        self.message.setText(f"no run reports {got['metric']!r}" if missing else "")

    def _results_failed(self, err: dict) -> None:
        self.busy.discard("results")
        self.results_error = err
        self.dirty = self.dirty or bool(err.get("retryable"))   # again at the next tick
        self.message.setText(f"results: {err['code']}: {err['message']}")

    def _metric_chosen(self, metric: str) -> None:
        if self.name:
            self.fetch_results(self.name, metric)

    # --- click-through -------------------------------------------------------------------
    def _cell_activated(self, index: QModelIndex) -> None:
        run_id = index.siblingAtColumn(0).data(KEY_ROLE)
        if run_id:
            self.open_run.emit(run_id)

    def shutdown(self) -> None:
        self.timer.stop()
