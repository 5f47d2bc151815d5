"""The run details' log: a title (``Log of <run> — stderr, following``), a
stdout/stderr chooser and the text, followed by a bridge.LogThread
(StreamLogs(follow=True)) until the run ends. A failed run opens on stderr (its
traceback; the built-in workers write nothing to stdout); a run seen failing while its
log is shown switches to stderr too, unless the user chose a stream for it."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QSizePolicy,
                               QVBoxLayout, QWidget)

from trainer.gui.bridge import LogThread

STREAMS = ("stdout", "stderr")


def default_stream(status: str) -> str:
    """stderr for a failed run, stdout otherwise."""
    return "stderr" if status == "failed" else "stdout"


class LogPane(QWidget):
    def __init__(self, address: str, token: Optional[str],
                 parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.address, self.token = address, token
        self.run_id = ""
        self.chosen_by_user = False
        self.ended = False
        self.error: Optional[dict] = None
        self.thread: Optional[LogThread] = None
        self.retired: list[LogThread] = []
        self.title = QLabel("<b>Log</b>")
        self.title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.stream = QComboBox()
        self.stream.addItems(STREAMS)
        self.stream.setToolTip("the stream shown: the worker's stdout or stderr")
        self.stream.currentTextChanged.connect(self._user_chose)
        self.text = QPlainTextEdit(readOnly=True)
        self.text.setMaximumBlockCount(5000)
        self.text.setFont(QFont("monospace", 9))
        self.text.setPlaceholderText("(nothing written)")
        row = QHBoxLayout()
        row.addWidget(self.title, 1)
        row.addWidget(QLabel("stream"))
        row.addWidget(self.stream)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.text, 1)

    def stream_name(self) -> str:
        return self.stream.currentText()

    def show_run(self, run_id: str, status: str) -> None:
        """Follow ``run_id`` from offset 0, on its status' default stream."""
        self.run_id, self.chosen_by_user = run_id, False
        self._set_stream(default_stream(status))
        self.follow()

    def update_status(self, status: str) -> None:
        """The shown run's status changed: a failure brings up stderr (unless chosen)."""
        if status == "failed" and not self.chosen_by_user and self.stream_name() != "stderr":
            self._set_stream("stderr")
            self.follow()

    def _set_stream(self, name: str) -> None:
        self.stream.blockSignals(True)
        self.stream.setCurrentText(name)
        self.stream.blockSignals(False)

    def _user_chose(self, _: str) -> None:
        self.chosen_by_user = True
        self.follow()

    def _retitle(self) -> None:
        state = "complete" if self.ended else "following"
        self.title.setText(f"<b>Log</b> of {self.run_id} — {self.stream_name()}, {state}"
                           if self.run_id else "<b>Log</b>")

    def follow(self) -> None:
        """(Re)start following the chosen stream of the run from offset 0."""
        self._retire()
        self.text.clear()
        self.ended, self.error = False, None
        self._retitle()
        if not self.run_id:
            return
        t = LogThread(self.address, self.token, self.run_id, self.stream_name(), parent=self)
        t.text.connect(self.append, Qt.ConnectionType.QueuedConnection)
        t.ended.connect(self._ended, Qt.ConnectionType.QueuedConnection)
        t.failed.connect(self._failed, Qt.ConnectionType.QueuedConnection)
        self.thread = t
        t.start()

    def _retire(self) -> None:
        t, self.thread = self.thread, None
        if t is not None:
            t.cancel()        # closes its channel; joined at shutdown if still running
            self.retired = [r for r in self.retired if not r.isFinished()] + [t]

    def _current(self, run_id: str, stream: str) -> bool:
        t = self.thread
        return t is not None and (run_id, stream) == (t.run_id, t.stream_name)

    @Slot(str, str, str)
    def append(self, run_id: str, stream: str, text: str) -> None:
        if self._current(run_id, stream):
            self.text.moveCursor(self.text.textCursor().MoveOperation.End)
            self.text.insertPlainText(text)
            self.text.ensureCursorVisible()

    @Slot(str)
    def _ended(self, run_id: str) -> None:
        if run_id == self.run_id:
            self.ended = True
            self._retitle()

    @Slot(dict)
    def _failed(self, err: dict) -> None:
        self.error = err
        self.title.setText(f"<b>Log</b> of {self.run_id} — {self.stream_name()}: "
                           f"{err['code']}: {err['message']}")

    def clear(self) -> None:
        self._retire()
        self.run_id = ""
        self.text.clear()
        self._retitle()

    def shutdown(self, wait_ms: int = 5000) -> None:
        self._retire()
        for t in list(self.retired):
            t.stop(wait_ms)
        self.retired.clear()
