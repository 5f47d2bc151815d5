"""The GUI's plots, on pyqtgraph: a plot widget set up the same way everywhere (white
background, grid, a legend, ``step`` on x) and BandsPlot, the experiments' curves: one
line per config point (the mean over its seeds on the common step grid) with its
band (a pg.FillBetweenItem between the low and high curves) and a legend of the
points' labels. The run details' plot (run_plot.RunPlot) is a StepPlot too."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

pg.setConfigOptions(antialias=True, background="w", foreground="#333333")

# Distinct colours (the tab10 palette) for the points of an experiment.
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def translucent(hex_colour: str, alpha: int = 60) -> tuple[int, int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha


class StepPlot(pg.PlotWidget):
    """A PlotWidget with the GUI's look: a title, a grid, ``step`` on x, a legend."""

    def __init__(self, title: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent=parent)
        item = self.getPlotItem()
        if title:
            item.setTitle(title)
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setLabel("bottom", "step")
        self.legend = item.addLegend(offset=(10, 10))
        self.setMinimumSize(240, 160)

    def legend_labels(self) -> list[str]:
        return [label.text for _, label in self.legend.items]


class BandsPlot(StepPlot):
    """The curves of one metric over an experiment's points: set_curves() replaces
    every line and band at once (a point with no curve, no seed with the metric, is
    left out)."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__("", parent)
        self.lines: dict[int, pg.PlotDataItem] = {}   # point -> its mean line
        self.bands: dict[int, pg.FillBetweenItem] = {}
        self.metric = ""
        self.setMinimumSize(240, 180)

    def clear_curves(self) -> None:
        self.getPlotItem().clear()      # the items, and the legend's entries with them
        self.lines.clear()
        self.bands.clear()

    def set_curves(self, metric: str, curves: Sequence[dict[str, Any]],
                   labels: Mapping[int, str], best: Sequence[int] = ()) -> None:
        """``curves``: dicts with point, steps, mean, low, high, n (convert.results);
        ``labels``: each point's label by its index; ``best``: the best points (a thicker
        line)."""
        self.clear_curves()
        self.metric = metric
        self.getPlotItem().setTitle(metric)
        self.getPlotItem().setLabel("left", metric)
        for c in curves:
            if not c["steps"]:
                continue
            p = c["point"]
            hue = colour(p)
            label = labels.get(p, f"point {p}")
            low = pg.PlotDataItem(c["steps"], c["low"], pen=pg.mkPen(None))
            high = pg.PlotDataItem(c["steps"], c["high"], pen=pg.mkPen(None))
            band = pg.FillBetweenItem(low, high, brush=pg.mkBrush(*translucent(hue)))
            self.addItem(low)
            self.addItem(high)
            self.addItem(band)
            line = self.plot(c["steps"], c["mean"], name=f"{label} (n={c['n']})",
                             pen=pg.mkPen(hue, width=3 if p in best else 1.6))
            self.lines[p], self.bands[p] = line, band
        self.getPlotItem().enableAutoRange()

    def curve_count(self) -> int:
        return len(self.lines)
