"""The selected run: a header, its liveness flags (flags_view), its metrics with the
runs it is compared with (run_plot), its videos (video_pane), its log (log_pane), its
other artifacts (opened with QDesktopServices) and a cancel button with a reason. The
record and the artifacts are polled off the GUI thread (a Calls job) until the run
has ended."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPushButton, QSplitter, QVBoxLayout, QWidget)

from trainer.client import Client
from trainer.gui import convert
from trainer.gui.flags_view import FlagsView
from trainer.gui.log_pane import LogPane
from trainer.gui.qtcalls import Calls
from trainer.gui.run_plot import RETURNS, RunPlot
from trainer.gui.video_pane import VideoPane



def runs_dir() -> str:
    home = os.environ.get("TRAINER_HOME") or os.path.join(
        os.environ.get("HOME", "/tmp"), ".local/share/trainer")
    return os.path.join(home, "runs")


def run_label(run: dict[str, Any]) -> str:
    """How a run is named in the plot's legend: id, name, seed."""
    seed = (run.get("config") or {}).get("seed")
    if isinstance(seed, float) and seed.is_integer():
        seed = int(seed)           # a config read back from a Struct: numbers are floats
    return " ".join(b for b in (run["run_id"], run.get("name") or "",
                                f"seed {seed}" if seed is not None else "") if b)


def titled(title: str, widget: QWidget) -> tuple[QWidget, QLabel]:
    """``widget`` under a bold title label."""
    box, label = QWidget(), QLabel(f"<b>{title}</b>")
    lay = QVBoxLayout(box)
    lay.setContentsMargins(0, 2, 0, 0)
    lay.setSpacing(2)
    lay.addWidget(label)
    lay.addWidget(widget, 1)
    return box, label


def _fetch(run_id: str) -> Callable[[Client], dict[str, Any]]:
    def fetch(client: Client) -> dict[str, Any]:
        run = convert.run(client.get(run_id))
        arts = [convert.artifact(a) for a in client.artifacts(run_id)]
        return {"run_id": run_id, "run": run, "artifacts": arts}
    return fetch


class RunDetails(QWidget):
    record = Signal(dict)     # a fresher record of a run (for the table)
    returned = Signal(str, float)  # a run's last evaluation (the table's return)

    def __init__(self, calls: Calls, address: str, token: Optional[str],
                 parent: Optional[QWidget] = None, poll_ms: int = 1000) -> None:
        super().__init__(parent)
        self.calls, self.address, self.token = calls, address, token
        self.run_id = ""
        self.run: Optional[dict[str, Any]] = None
        self.compared: list[dict[str, Any]] = []   # the other runs on the plot
        self.status = ""
        self.shown_seq = -1  # last_seq of the record the header shows
        self.polling = False
        self.opener: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.header = QLabel("no run selected")
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.header.setWordWrap(True)
        self.flags = FlagsView()
        self.flags_box, self.flags_title = titled("Flags", self.flags)
        self.flags_box.setMaximumHeight(110)
        self.flags_box.hide()
        self.plot = RunPlot(calls, poll_ms=poll_ms)
        self.plot.read.connect(self._points_read)
        self.videos = VideoPane()
        self.videos.shown.connect(self._video_shown)
        self.videos_box, self.videos_title = titled("Videos", self.videos)
        self.log_pane = LogPane(address, token)
        self.artifacts = QListWidget()
        self.artifacts.itemActivated.connect(self.open_artifact)
        self.artifacts_box, self.artifacts_title = titled("Artifacts", self.artifacts)
        self.reason = QLineEdit(placeholderText="reason for cancelling")
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.message = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.reason, 1)
        row.addWidget(self.cancel_button)
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(self.videos_box)
        middle.addWidget(self.log_pane)
        middle.setSizes([420, 380])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.plot)
        split.addWidget(middle)
        split.addWidget(self.artifacts_box)
        split.setSizes([320, 300, 90])
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.flags_box)
        lay.addWidget(split, 1)
        lay.addLayout(row)
        lay.addWidget(self.message)
        self.timer = QTimer(self, interval=poll_ms)
        self.timer.timeout.connect(self.poll)
        self.setEnabled(False)

    # --- selection ------------------------------------------------------------------
    def show_run(self, run: dict[str, Any], compared: Optional[list[dict[str, Any]]] = None
                 ) -> None:
        """Show ``run``; ``compared``: other runs drawn with it on the plot."""
        if run["run_id"] != self.run_id:
            self._switch(run)
        self.compared = [r for r in compared or [] if r["run_id"] != run["run_id"]]
        self.plot.set_runs([(r["run_id"], run_label(r)) for r in [run, *self.compared]])
        self.update_header(run)

    def _switch(self, run: dict[str, Any]) -> None:
        self.run_id, self.status, self.run = run["run_id"], "", None
        self.shown_seq = -1
        self.artifacts.clear()
        self.message.clear()
        self.videos.clear()
        self.setEnabled(True)
        self.log_pane.show_run(self.run_id, run["status"])
        self.timer.start()
        self.poll()

    def update_header(self, run: dict[str, Any]) -> None:
        # A reply can come after the watch stream showed a later state of the run (a
        # cancel's answer after the CANCELLED event): an older record changes nothing.
        if run["run_id"] != self.run_id or run.get("last_seq", 0) < self.shown_seq:
            return
        self.shown_seq = run.get("last_seq", 0)
        self.run = run
        if run["status"] != self.status:
            self.log_pane.update_status(run["status"])
        self.status = run["status"]
        bits = [f"<b>{run['run_id']}</b> {run.get('name') or ''}",
                f"status <b>{run['status']}</b>" + (f" ({run['cause']})" if run.get("cause")
                                                   not in ("", run["status"]) else ""),
                f"{run.get('worker')} on {run.get('env')}, seed {run['config'].get('seed')}"]
        hb = run.get("heartbeat")
        if hb and run["status"] == "running":
            bits.append(f"step {hb['step']:,}" + (f", {hb['updates']:,} updates"
                                                   if hb.get("updates") else "")
                        + (f", {hb['phase']}" if hb.get("phase") else ""))
            if hb.get("metrics_finite") is False:
                bits.append("<span style='color:#c0392b'>non-finite metrics</span>")
        if convert.placement(run):
            bits.append(convert.placement(run))
        if run.get("exit_code") is not None:
            bits.append(f"exit code {run['exit_code']}")
        if run.get("waiting_reason"):
            bits.append(f"waiting: {run['waiting_reason']}")
        if run.get("cancel_reason"):
            bits.append(f"cancelled: {run['cancel_reason']}")
        if run.get("message"):
            bits.append(run["message"][-300:])
        self.header.setText(" · ".join(bits))
        self.cancel_button.setEnabled(run["status"] not in convert.TERMINAL)
        self._show_flags(run.get("flags") or [])

    def _show_flags(self, flags: list[dict[str, Any]]) -> None:
        self.flags.set_flags(flags)
        up = sum(1 for f in flags if f.get("cleared_at") is None)
        self.flags_title.setText(f"<b>Flags</b> ({up} standing, {len(flags) - up} cleared)")
        self.flags_box.setVisible(bool(flags))

    # --- polling (the record, artifacts) -----------------------------------------------
    def poll(self) -> None:
        if not self.run_id or self.polling:
            return
        self.polling = True
        self.calls.start(_fetch(self.run_id), self.polled, self._poll_failed)

    def _poll_failed(self, err: dict) -> None:
        self.polling = False
        self.message.setText(f"details: {err['code']}: {err['message']}")

    def polled(self, got: dict[str, Any]) -> None:
        self.polling = False
        if got["run_id"] != self.run_id:
            return
        run = self._with_return(got["run"])
        self._show_artifacts(got["artifacts"])
        self.update_header(run)
        self.record.emit(run)
        if run["status"] in convert.TERMINAL:
            self.timer.stop()   # ended: its artifacts were registered before its end

    def _with_return(self, run: dict[str, Any]) -> dict[str, Any]:
        """The run with ``metric_return``, its last evaluation (for the table)."""
        t = self.plot.runs.get(run["run_id"])
        for key in RETURNS:
            value = t.series.last(key) if t is not None else None
            if value is not None:
                return {**run, "metric_return": value}
        return run

    def _points_read(self, run_id: str) -> None:
        t = self.plot.runs.get(run_id)
        value = next((v for v in (t.series.last(k) for k in RETURNS) if v is not None),
                     None) if t is not None else None
        if value is not None:
            self.returned.emit(run_id, value)

    def _video_shown(self, a: Optional[dict[str, Any]]) -> None:
        step = (a.get("meta") or {}).get("step") if a is not None else None
        self.plot.mark_step(step, f"▶ {os.path.basename(a['path'])}" if a else "")

    def _show_artifacts(self, arts: list[dict[str, Any]]) -> None:
        self.videos.set_videos(os.path.join(runs_dir(), self.run_id), arts)
        videos = sum(1 for a in arts if a["kind"] == "video")
        self.videos_title.setText(f"<b>Videos</b> ({videos})")
        self.artifacts_title.setText(f"<b>Artifacts</b> ({len(arts)}; activate one to "
                                     "open it with the system's viewer)")
        if self.artifacts.count() == len(arts):
            return
        self.artifacts.clear()
        for a in arts:
            item = QListWidgetItem(f"{a['kind']:<11} {a['path']}  ({a['size']:,} bytes)")
            item.setData(Qt.ItemDataRole.UserRole, a)
            self.artifacts.addItem(item)

    def open_artifact(self, item: QListWidgetItem) -> None:
        a = item.data(Qt.ItemDataRole.UserRole)
        path = a["path"] if os.path.isabs(a["path"]) else \
            os.path.join(runs_dir(), self.run_id, a["path"])
        self.opener(QUrl.fromLocalFile(path))

    # --- cancel ---------------------------------------------------------------------
    def cancel_run(self) -> None:
        run_id, reason = self.run_id, self.reason.text().strip()
        self.cancel_button.setEnabled(False)
        self.message.setText(f"cancelling {run_id}…")
        self.calls.start(lambda c: convert.run(c.cancel(run_id, reason, requested_by="gui")),
                         self._cancelled, self._cancel_failed)

    def _cancelled(self, run: dict[str, Any]) -> None:
        self.message.setText(f"cancel requested for {run['run_id']}")
        self.record.emit(run)
        self.update_header(run)

    def _cancel_failed(self, err: dict) -> None:
        self.message.setText(f"cancel failed: {err['code']}: {err['message']}")
        self.cancel_button.setEnabled(self.status not in convert.TERMINAL)

    def shutdown(self, wait_ms: int = 5000) -> None:
        self.timer.stop()
        self.plot.shutdown()
        self.videos.shutdown()
        self.log_pane.shutdown(wait_ms)
