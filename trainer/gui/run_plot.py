"""The run details' curves: a metric picker over every metric name the shown runs
report (GetMetrics without keys, with the worker's own TensorBoard scalars; the names
gathered as points arrive) and one line per run on a plots.StepPlot (a colour each,
the legend naming the run), so several runs can be compared on one metric. Each run
is read on from its own ``next_offset`` and ``next_tensorboard_cursor`` by a Calls
job (off the GUI thread) until it has ended and every point is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from trainer.client import Client
from trainer.gui import convert
from trainer.gui.metric_picker import MetricPicker
from trainer.gui.plots import StepPlot, colour

# A run's return by the names workers give it, in preference: the built-in workers'
# evaluation and training returns, then what a worker's own TensorBoard logs call it
# (SB3's eval/mean_reward and rollout/ep_rew_mean, CleanRL's charts/episodic_return).
RETURNS = ("eval_return_mean", "return_mean", "eval/mean_reward", "rollout/ep_rew_mean",
           "charts/episodic_return")


class RunSeries:
    """Every metric of one run: name -> {step: value}, one value per step (a point read
    twice changes nothing)."""

    def __init__(self) -> None:
        self.values: dict[str, dict[float, float]] = {}

    def add(self, points: list[dict[str, Any]]) -> int:
        """Merge GetMetrics points (convert.metrics' ``points``); how many were read."""
        for p in points:
            for name, v in p["values"].items():
                self.values.setdefault(name, {})[float(p["step"])] = float(v)
        return len(points)

    def names(self) -> list[str]:
        return sorted(self.values)

    def curve(self, name: str) -> tuple[list[float], list[float]]:
        pts = sorted(self.values.get(name, {}).items())
        return [x for x, _ in pts], [y for _, y in pts]

    def last(self, name: str) -> Optional[float]:
        pts = self.values.get(name)
        return pts[max(pts)] if pts else None


@dataclass
class Tracked:
    run_id: str
    label: str
    series: RunSeries = field(default_factory=RunSeries)
    offset: int = 0
    cursor: str = ""         # GetMetrics' next_tensorboard_cursor
    done: bool = False       # ended, and every point read


def _fetch(wanted: dict[str, tuple[int, str]]) -> Callable[[Client], dict[str, Any]]:
    """Per run: its status first, then its points from ``offset`` and its TensorBoard
    ``cursor`` (so a run seen ended with no new point has had every point read)."""
    def fetch(client: Client) -> dict[str, Any]:
        out = {}
        for run_id, (offset, cursor) in wanted.items():
            status = convert.STATUS.get(client.get(run_id).status, "unknown")
            m = convert.metrics(client.metrics(run_id, offset, tensorboard=True,
                                               tensorboard_cursor=cursor))
            out[run_id] = {"offset": offset, "cursor": cursor,
                           "terminal": status in convert.TERMINAL, **m}
        return out
    return fetch


class RunPlot(QWidget):
    """``set_runs([(run_id, label), ...])``: the runs shown, the first the selected one;
    ``read(run_id)`` is emitted when points of a run have arrived."""

    read = Signal(str)

    def __init__(self, calls: Any, parent: Optional[QWidget] = None,
                 poll_ms: int = 1000) -> None:
        super().__init__(parent)
        self.calls = calls
        self.runs: dict[str, Tracked] = {}
        self.order: list[str] = []
        self.items: dict[str, pg.PlotDataItem] = {}
        self.marker: Optional[pg.InfiniteLine] = None   # the step of the video shown
        self.polling = False
        self.error = ""
        self.picker = MetricPicker(RETURNS[0], also=RETURNS[1:])
        self.picker.chosen.connect(lambda _: self.redraw())
        self.caption = QLabel("")
        self.plot = StepPlot("")
        row = QHBoxLayout()
        row.addWidget(QLabel("<b>Metric</b>"))
        row.addWidget(self.picker)
        row.addWidget(self.caption, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(row)
        lay.addWidget(self.plot, 1)
        self.timer = QTimer(self, interval=poll_ms)
        self.timer.timeout.connect(self.poll)

    # --- which runs ------------------------------------------------------------------
    def set_runs(self, runs: list[tuple[str, str]]) -> None:
        """Show these runs (kept ones keep what was read; new ones are read from 0)."""
        ids = [r for r, _ in runs]
        if ids == self.order and all(self.runs[r].label == lab for r, lab in runs):
            return
        self.runs = {r: self.runs.get(r) or Tracked(r, lab) for r, lab in runs}
        for r, lab in runs:
            self.runs[r].label = lab
        self.order = ids
        self.caption.setText(f"{len(ids)} runs compared (ctrl-click rows to add)"
                             if len(ids) > 1 else "")
        self._offer()
        self.redraw(rebuild=True)
        if ids:
            self.timer.start()
            self.poll()
        else:
            self.timer.stop()

    # --- reading ---------------------------------------------------------------------
    def poll(self) -> None:
        wanted = {r: (t.offset, t.cursor) for r, t in self.runs.items() if not t.done}
        if self.polling or not wanted:
            if not wanted:
                self.timer.stop()
            return
        self.polling = True
        self.calls.start(_fetch(wanted), self.polled, self._poll_failed)

    def _poll_failed(self, err: dict) -> None:
        self.polling = False
        self.error = f"{err['code']}: {err['message']}"

    def polled(self, got: dict[str, Any]) -> None:
        self.polling = False
        self.error = ""
        changed = False
        for run_id, m in got.items():
            t = self.runs.get(run_id)
            if t is None or (m["offset"], m.get("cursor", "")) != (t.offset, t.cursor):
                continue            # no longer shown, or already read past
            t.offset, t.cursor = m["next_offset"], m.get("next_tensorboard_cursor", "")
            if t.series.add(m["points"]):
                changed = True
                self.read.emit(run_id)
            elif m["terminal"]:
                t.done = True
        if changed:
            self._offer()
            self.redraw()

    def _offer(self) -> None:
        names = sorted({n for t in self.runs.values() for n in t.series.names()})
        self.picker.set_metrics(names)

    # --- drawing ---------------------------------------------------------------------
    def metric(self) -> str:
        return self.picker.selected_metric()

    def redraw(self, rebuild: bool = False) -> None:
        metric = self.metric()
        item = self.plot.getPlotItem()
        if rebuild or set(self.items) != set(self.order):
            item.clear()                   # the lines, and the legend's entries
            self.items.clear()
            if self.marker is not None:
                item.addItem(self.marker)
        offered = bool(self.picker.metrics())
        item.setTitle(metric if offered else "no metrics reported yet")
        item.setLabel("left", metric if offered else "")
        for i, run_id in enumerate(self.order):
            t = self.runs[run_id]
            xs, ys = t.series.curve(metric)
            line = self.items.get(run_id)
            if line is None:
                hue = colour(i)
                line = self.plot.plot(xs, ys, name=t.label,
                                      pen=pg.mkPen(hue, width=2.5 if i == 0 else 1.6),
                                      symbol="o", symbolSize=4, symbolBrush=hue,
                                      symbolPen=pg.mkPen(hue))
                self.items[run_id] = line
            else:
                line.setData(xs, ys)

    def mark_step(self, step: Optional[float], text: str = "video") -> None:
        """A dashed vertical line at ``step`` (the evaluation of the video shown), or
        none (``step`` None)."""
        item = self.plot.getPlotItem()
        if self.marker is not None:
            item.removeItem(self.marker)
            self.marker = None
        if step is None:
            return
        self.marker = pg.InfiniteLine(
            pos=float(step), angle=90, movable=False,
            pen=pg.mkPen("#555555", width=1, style=Qt.PenStyle.DashLine),
            label=text, labelOpts={"position": 0.92, "color": "#555555"})
        item.addItem(self.marker)

    def point_count(self, run_id: Optional[str] = None) -> int:
        """Points of the chosen metric drawn (for ``run_id``, or all runs)."""
        ids = [run_id] if run_id else self.order
        return sum(len(self.runs[r].series.curve(self.metric())[0])
                   for r in ids if r in self.runs)

    def legend_labels(self) -> list[str]:
        return self.plot.legend_labels()

    def shutdown(self) -> None:
        self.timer.stop()
