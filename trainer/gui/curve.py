"""The run details' curves on pyqtgraph (plots.StepPlot): named series of (step,
value) points, each a line with its last point marked, one legend entry per series.
Points are merged by step (one value per step, kept in step order), so a poll that
reads a point again changes nothing. (PlotWidget binds ``clear`` and ``addItem`` of its
PlotItem on each instance, so this widget's own methods have other names.)"""

from __future__ import annotations

from typing import Optional

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from trainer.gui.plots import StepPlot

Points = list[tuple[float, float]]


class CurveWidget(StepPlot):
    def __init__(self, title: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(title, parent)
        self.title = title
        self.series: dict[str, Points] = {}
        self.items: dict[str, pg.PlotDataItem] = {}

    def clear_series(self) -> None:
        self.series.clear()
        self.items.clear()
        self.getPlotItem().clear()

    def add(self, name: str, points: Points, colour: str = "#2e7dd7") -> None:
        """Append points (kept in step order, one value per step)."""
        if not points:
            return
        merged = dict(self.series.get(name, []))
        merged.update((float(x), float(y)) for x, y in points)
        pts = sorted(merged.items())
        self.series[name] = pts
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        item = self.items.get(name)
        if item is None:
            item = self.plot(xs, ys, name=name, pen=pg.mkPen(colour, width=2),
                             symbol="o", symbolSize=4, symbolBrush=colour,
                             symbolPen=pg.mkPen(colour))
            self.items[name] = item
        else:
            item.setData(xs, ys)

    def point_count(self) -> int:
        return sum(len(p) for p in self.series.values())
