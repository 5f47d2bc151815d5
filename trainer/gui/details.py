"""The selected run: a header, its return curve (GetMetrics points and heartbeats,
polled off the GUI thread), its followed stdout (a LogThread), its artifacts (opened
with QDesktopServices) and a cancel button with a reason."""

from __future__ import annotations

import os
from typing import Any, Callable, Optional

from PySide6.QtCore import Qt, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QFont
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QLineEdit, QListWidget,
                               QListWidgetItem, QPlainTextEdit, QPushButton, QSplitter,
                               QVBoxLayout, QWidget)

from trainer.client import Client
from trainer.gui import convert
from trainer.gui.bridge import LogThread
from trainer.gui.qtcalls import Calls
from trainer.gui.curve import CurveWidget

# The SDK's built-in workers' names, then what a worker's own TensorBoard logs call the
# return (SB3's rollout/ep_rew_mean, CleanRL's charts/episodic_return: GetMetrics with
# tensorboard, docs/WORKERS.md "TensorBoard").
METRIC_KEYS = ("return_mean", "eval_return_mean", "rollout/ep_rew_mean",
               "charts/episodic_return", "eval/mean_reward")
SERIES = {"return_mean": "#2e7dd7", "eval_return_mean": "#2e9e4e", "heartbeat": "#f0a030",
          "rollout/ep_rew_mean": "#7d3ed7", "charts/episodic_return": "#d73e7d",
          "eval/mean_reward": "#3ec7d7"}


METRIC_ORDER = ("eval_return_mean", "return_mean", "eval/mean_reward", "rollout/ep_rew_mean",
                "charts/episodic_return")   # which a point's return is, first found


def runs_dir() -> str:
    home = os.environ.get("TRAINER_HOME") or os.path.join(
        os.environ.get("HOME", "/tmp"), ".local/share/trainer")
    return os.path.join(home, "runs")


def _fetch(run_id: str, offset: int, cursor: str) -> Callable[[Client], dict[str, Any]]:
    def fetch(client: Client) -> dict[str, Any]:
        run = convert.run(client.get(run_id))
        metrics = convert.metrics(client.metrics(run_id, offset, keys=METRIC_KEYS,
                                                 tensorboard=True, tensorboard_cursor=cursor))
        arts = [convert.artifact(a) for a in client.artifacts(run_id)]
        return {"run_id": run_id, "run": run, "metrics": metrics, "artifacts": arts,
                "offset": offset, "cursor": cursor}
    return fetch


class RunDetails(QWidget):
    record = Signal(dict)     # a fresher record of a run (for the table)

    def __init__(self, calls: Calls, address: str, token: Optional[str],
                 parent: Optional[QWidget] = None, poll_ms: int = 1000) -> None:
        super().__init__(parent)
        self.calls, self.address, self.token = calls, address, token
        self.run_id = ""
        self.metric_return: Optional[float] = None
        self.status = ""
        self.shown_seq = -1  # last_seq of the record the header shows
        self.offset = 0
        self.tb_cursor = ""   # GetMetrics' next_tensorboard_cursor
        self.polling = False
        self.log_thread: Optional[LogThread] = None
        self.retired: list[LogThread] = []
        self.log_error: Optional[dict] = None
        self.opener: Callable[[QUrl], Any] = QDesktopServices.openUrl
        self.header = QLabel("no run selected")
        self.header.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.header.setWordWrap(True)
        self.curve = CurveWidget("return")
        self.log = QPlainTextEdit(readOnly=True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFont("monospace", 9))
        self.stream = QComboBox()
        self.stream.addItems(["stdout", "stderr"])
        self.stream.currentTextChanged.connect(lambda _: self._follow_log())
        self.artifacts = QListWidget()
        self.artifacts.itemActivated.connect(self.open_artifact)
        self.reason = QLineEdit(placeholderText="reason for cancelling")
        self.cancel_button = QPushButton("Cancel run")
        self.cancel_button.clicked.connect(self.cancel_run)
        self.message = QLabel("")
        row = QHBoxLayout()
        row.addWidget(self.reason, 1)
        row.addWidget(self.cancel_button)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.curve)
        split.addWidget(self.log)
        split.addWidget(self.artifacts)
        split.setSizes([260, 200, 80])
        lay = QVBoxLayout(self)
        lay.addWidget(self.header)
        lay.addWidget(self.stream)
        lay.addWidget(split, 1)
        lay.addLayout(row)
        lay.addWidget(self.message)
        self.timer = QTimer(self, interval=poll_ms)
        self.timer.timeout.connect(self.poll)
        self.setEnabled(False)

    # --- selection ------------------------------------------------------------------
    def show_run(self, run: dict[str, Any]) -> None:
        if run["run_id"] != self.run_id:
            self._switch(run["run_id"])
        self.update_header(run)

    def _switch(self, run_id: str) -> None:
        self._retire_log()
        self.run_id, self.offset, self.tb_cursor, self.status = run_id, 0, "", ""
        self.shown_seq = -1
        self.metric_return = None
        self.curve.clear_series()
        self.log.clear()
        self.artifacts.clear()
        self.message.clear()
        self.setEnabled(True)
        self._follow_log()
        self.timer.start()
        self.poll()

    def _follow_log(self) -> None:
        """(Re)start following the chosen stream of the selected run from offset 0."""
        self._retire_log()
        self.log.clear()
        if not self.run_id:
            return
        t = LogThread(self.address, self.token, self.run_id, self.stream.currentText(),
                      parent=self)
        t.text.connect(self.append_log, Qt.ConnectionType.QueuedConnection)
        t.failed.connect(self.log_failed, Qt.ConnectionType.QueuedConnection)
        self.log_thread = t
        t.start()

    def _retire_log(self) -> None:
        t, self.log_thread = self.log_thread, None
        if t is not None:
            t.cancel()        # closes its channel; joined at shutdown if still running
            self.retired = [r for r in self.retired if not r.isFinished()] + [t]

    def update_header(self, run: dict[str, Any]) -> None:
        # A reply can come after the watch stream showed a later state of the run (a
        # cancel's answer after the CANCELLED event): an older record changes nothing.
        if run["run_id"] != self.run_id or run.get("last_seq", 0) < self.shown_seq:
            return
        self.shown_seq = run.get("last_seq", 0)
        self.status = run["status"]
        bits = [f"<b>{run['run_id']}</b> {run.get('name') or ''}",
                f"status <b>{run['status']}</b>" + (f" ({run['cause']})" if run.get("cause")
                                                   not in ("", run["status"]) else ""),
                f"{run.get('worker')} on {run.get('env')}, seed {run['config'].get('seed')}"]
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

    # --- polling (metrics, heartbeat, artifacts) -----------------------------------------
    def poll(self) -> None:
        if not self.run_id or self.polling:
            return
        self.polling = True
        self.calls.start(_fetch(self.run_id, self.offset, self.tb_cursor), self.polled,
                         self._poll_failed)

    def _poll_failed(self, err: dict) -> None:
        self.polling = False

    def polled(self, got: dict[str, Any]) -> None:
        self.polling = False
        if (got["run_id"], got["offset"], got["cursor"]) != (self.run_id, self.offset,
                                                              self.tb_cursor):
            return
        run, metrics = got["run"], got["metrics"]
        self.offset = metrics["next_offset"]
        self.tb_cursor = metrics["next_tensorboard_cursor"]
        for key in METRIC_KEYS:
            pts = [(p["step"], p["values"][key]) for p in metrics["points"] if key in p["values"]]
            self.curve.add(key, pts, SERIES[key])
        hb = run.get("heartbeat")
        if hb and hb.get("mean_return") is not None:
            self.curve.add("heartbeat mean_return", [(hb["step"], hb["mean_return"])],
                           SERIES["heartbeat"])
        for point in metrics["points"]:
            for key in METRIC_ORDER:   # eval_return_mean first
                if key in point["values"]:
                    self.metric_return = point["values"][key]
                    break
        if self.metric_return is not None:
            run = {**run, "metric_return": self.metric_return}
        self._show_artifacts(got["artifacts"])
        self.update_header(run)
        self.record.emit(run)
        if run["status"] in convert.TERMINAL and not metrics["points"]:
            self.timer.stop()   # ended, and every point has been read

    def _show_artifacts(self, arts: list[dict[str, Any]]) -> None:
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

    # --- log, cancel ----------------------------------------------------------------
    @Slot(str, str, str)
    def append_log(self, run_id: str, stream: str, text: str) -> None:
        t = self.log_thread
        if t is not None and (run_id, stream) == (t.run_id, t.stream_name):
            self.log.moveCursor(self.log.textCursor().MoveOperation.End)
            self.log.insertPlainText(text)
            self.log.ensureCursorVisible()

    @Slot(dict)
    def log_failed(self, err: dict) -> None:
        self.log_error = err
        self.message.setText(f"log: {err['code']}: {err['message']}")

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
        self._retire_log()
        for t in list(self.retired):
            t.stop(wait_ms)
        self.retired.clear()
