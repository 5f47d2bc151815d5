"""The main window: health strip, then two tabs: the runs (a table with a filter box,
the selected run's details, a submit dialog; several rows selected are compared on
the details' plot) and the experiments (experiments_view;
double-clicking a cell there selects its run here). Network work happens in
TrainerQBridgeThread (the watch), LogThread and the Calls pool; this thread only
updates widgets in slots."""

from __future__ import annotations

import sys
from typing import Any, Optional

from PySide6.QtCore import QItemSelection, QItemSelectionModel, Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (QAbstractItemView, QApplication, QHBoxLayout, QHeaderView, QLineEdit,
                               QMainWindow, QPushButton, QSplitter, QTableView, QTabWidget,
                               QVBoxLayout, QWidget)

from trainer.client import default_address, default_token
from trainer.gui import convert
from trainer.gui.bridge import TrainerQBridgeThread
from trainer.gui.qtcalls import Calls
from trainer.gui.convert import STATUS, TERMINAL
from trainer.gui.details import RunDetails
from trainer.gui.experiments_view import ExperimentsView
from trainer.gui.health_strip import HealthStrip
from trainer.gui.runs_model import RUN_ID_ROLE, RunsFilter, RunsModel
from trainer.gui.submit_dialog import SubmitDialog

Q = Qt.ConnectionType.QueuedConnection
ACTIVE = [k for k, v in STATUS.items() if v not in TERMINAL]


class MainWindow(QMainWindow):
    def __init__(self, address: Optional[str] = None, token: Optional[str] = None,
                 refresh_ms: int = 1000) -> None:
        super().__init__()
        self.address = address or default_address()
        self.token = token if token is not None else default_token()
        self.setWindowTitle(f"trainer — {self.address}")
        self.calls = Calls(self.address, self.token, parent=self)
        self.model = RunsModel(self)
        self.proxy = RunsFilter(self.model, self)
        self.health = HealthStrip(self.calls)
        self.details = RunDetails(self.calls, self.address, self.token)
        self.details.record.connect(lambda run: self.model.upsert([run]))
        self.details.returned.connect(self.model.set_return)
        self.filter = QLineEdit(placeholderText="filter runs (id, status, worker, env…)")
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.submit_button = QPushButton("Submit…")
        self.submit_button.clicked.connect(self.open_submit)
        self.table = QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.verticalHeader().hide()
        self.table.setWordWrap(False)
        self.table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._selected)
        self.dialog: Optional[SubmitDialog] = None
        top = QHBoxLayout()
        top.addWidget(self.filter, 1)
        top.addWidget(self.submit_button)
        left = QWidget()
        left_lay = QVBoxLayout(left)
        left_lay.setContentsMargins(0, 0, 0, 0)
        left_lay.addLayout(top)
        left_lay.addWidget(self.table)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.details)
        split.setSizes([560, 720])
        self.runs_view = split
        self.experiments = ExperimentsView(self.calls, refresh_ms=2 * refresh_ms)
        self.experiments.open_run.connect(self.open_run)
        self.tabs = QTabWidget()
        self.tabs.addTab(split, "Runs")
        self.tabs.addTab(self.experiments, "Experiments")
        central = QWidget()
        lay = QVBoxLayout(central)
        lay.addWidget(self.health)
        lay.addWidget(self.tabs, 1)
        self.setCentralWidget(central)
        self.resize(1280, 720)
        self.bridge = TrainerQBridgeThread(self.address, self.token, parent=self)
        self.bridge.snapshot_page.connect(self.model.upsert, Q)
        self.bridge.events.connect(self.on_events, Q)
        self.bridge.snapshot_done.connect(self.on_snapshot_done, Q)
        self.bridge.connection.connect(self.health.set_connection, Q)
        self.bridge.failed.connect(self.on_watch_failed, Q)
        self.refresh = QTimer(self, interval=refresh_ms)
        self.refresh.timeout.connect(self.refresh_active)
        self.refreshing = False
        self.closed = False
        self.bridge.start()
        self.refresh.start()

    # --- watch -------------------------------------------------------------------------
    def on_events(self, events: list[dict[str, Any]]) -> None:
        self.model.apply_events(events)
        run = self.model.run(self.details.run_id) if self.details.run_id else None
        if run is not None and any(e["run_id"] == run["run_id"] for e in events):
            self.details.update_header(run)

    def on_snapshot_done(self, seq: int) -> None:
        self.model.seq = max(self.model.seq, seq)
        self.statusBar().showMessage(f"{self.model.rowCount()} runs as of seq {seq}", 5000)
        if self.table.currentIndex().row() < 0 and self.proxy.rowCount():
            self.table.selectRow(0)

    def on_watch_failed(self, err: dict[str, Any]) -> None:
        self.health.set_connection(False, err["code"])
        self.statusBar().showMessage(f"watch ended: {err['code']}: {err['message']}")

    # --- heartbeats of active runs (progress, return) --------------------------------------
    def refresh_active(self) -> None:
        self.table.viewport().update()   # the age column
        if self.refreshing or not any(r["status"] not in TERMINAL for r in self.model.runs):
            return
        self.refreshing = True

        def fetch(client: Any) -> list[dict[str, Any]]:
            return [convert.run(r) for r in client.list(statuses=ACTIVE, page_size=200).runs]
        self.calls.start(fetch, self._refreshed, self._refresh_failed)

    def _refreshed(self, runs: list[dict[str, Any]]) -> None:
        self.refreshing = False
        self.model.upsert(runs)

    def _refresh_failed(self, err: dict[str, Any]) -> None:
        self.refreshing = False

    # --- selection, submit -------------------------------------------------------------------
    def _selected(self, _: QItemSelection, __: QItemSelection) -> None:
        """The current row's run in the details, with every selected run on its plot."""
        ids = [ix.data(RUN_ID_ROLE) for ix in self.table.selectionModel().selectedRows()]
        runs = [r for r in (self.model.run(i) for i in ids) if r is not None]
        if not runs:
            return
        current = self.table.currentIndex().data(RUN_ID_ROLE)
        main = next((r for r in runs if r["run_id"] == current), runs[0])
        self.details.show_run(main, runs)

    def compare_runs(self, run_ids: list[str]) -> int:
        """Add these runs to the selection (as ctrl-clicks would): they join the plot;
        how many were found."""
        found = 0
        flags = QItemSelectionModel.SelectionFlag.Select | \
            QItemSelectionModel.SelectionFlag.Rows
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(RUN_ID_ROLE) in run_ids:
                self.table.selectionModel().select(self.proxy.index(row, 0), flags)
                found += 1
        return found

    def select_run(self, run_id: str) -> bool:
        for row in range(self.proxy.rowCount()):
            if self.proxy.index(row, 0).data(RUN_ID_ROLE) == run_id:
                self.table.selectRow(row)
                return True
        return False

    def open_run(self, run_id: str) -> None:
        """Show the runs view with ``run_id`` selected (the experiments' click-through):
        the filter is cleared if it hides the run; a run the table has not seen yet is
        fetched first."""
        self.tabs.setCurrentWidget(self.runs_view)
        if self.select_run(run_id):
            return
        if self.filter.text():
            self.filter.setText("")
            if self.select_run(run_id):
                return

        def got(run: dict[str, Any]) -> None:
            self.model.upsert([run])
            self.select_run(run_id)
        self.calls.start(lambda c: convert.run(c.get(run_id)), got,
                         lambda err: self.statusBar().showMessage(
                             f"run {run_id}: {err['code']}: {err['message']}", 5000))

    def open_submit(self) -> SubmitDialog:
        if self.dialog is None:
            self.dialog = SubmitDialog(self.calls, self)
            self.dialog.submitted.connect(self._submitted)
        self.dialog.clear_errors()
        self.dialog.show()
        return self.dialog

    def _submitted(self, run: dict[str, Any]) -> None:
        self.model.upsert([run])
        self.select_run(run["run_id"])

    # --- shutdown ----------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel the streams and join every thread (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self.refresh.stop()
        self.health.shutdown()
        self.experiments.shutdown()
        self.details.shutdown()
        self.bridge.stop()
        self.calls.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)


def main(address: Optional[str] = None, token: Optional[str] = None,
         argv: Optional[list[str]] = None) -> int:
    app = QApplication.instance() or QApplication(argv if argv is not None else sys.argv[:1])
    window = MainWindow(address, token)
    window.show()
    code = app.exec()
    window.shutdown()
    return int(code)
