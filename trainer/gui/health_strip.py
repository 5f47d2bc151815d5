"""The health strip: the connection state, services up/down, the GPU inventory and
the event log's size (GetHealth, polled off the GUI thread)."""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from trainer.gui import convert
from trainer.gui.qtcalls import Calls

UP, DOWN = "#2e9e4e", "#d03030"


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


class HealthStrip(QWidget):
    def __init__(self, calls: Calls, parent: Optional[QWidget] = None,
                 poll_ms: int = 2000) -> None:
        super().__init__(parent)
        self.calls = calls
        self.connected: Optional[bool] = None
        self.health: Optional[dict[str, Any]] = None
        self.in_flight = False
        self.connection = QLabel("connecting…")
        self.services = QLabel("")
        self.gpus = QLabel("")
        self.log = QLabel("")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        for w in (self.connection, self.services, self.gpus, self.log):
            lay.addWidget(w)
        lay.addStretch(1)
        self.timer = QTimer(self, interval=poll_ms)
        self.timer.timeout.connect(self.poll)
        self.timer.start()
        self.poll()

    def set_connection(self, up: bool, state: str) -> None:
        self.connected = up
        colour = UP if up else DOWN
        text = "connected" if up else f"disconnected ({state.lower()}), reconnecting…"
        self.connection.setText(f"<b style='color:{colour}'>● {text}</b>")
        if up:
            self.poll()

    def poll(self) -> None:
        if self.in_flight:
            return
        self.in_flight = True
        self.calls.start(lambda c: convert.health(c.health()), self.show_health, self.failed)

    def failed(self, err: dict[str, Any]) -> None:
        self.in_flight = False
        self.services.setText(f"<span style='color:{DOWN}'>health: {err['code']}</span>")

    def show_health(self, h: dict[str, Any]) -> None:
        self.in_flight = False
        self.health = h
        self.services.setText(" ".join(
            f"<span style='color:{UP if s['alive'] else DOWN}'>{s['name']} "
            f"{'up' if s['alive'] else 'down'}</span>" for s in h["services"]))
        busy = sum(1 for g in h["gpus"] if g["run_id"])
        self.gpus.setText(f"GPUs: {len(h['gpus']) - busy} free / {len(h['gpus'])} "
                          f"({h['gpu_source']})")
        self.log.setText(f"events: {h['last_seq']} ({_mib(h['db_bytes'])})")

    def shutdown(self) -> None:
        self.timer.stop()
