"""A small line chart drawn with QPainter (QtCharts is not in PySide6-Essentials):
named series of (step, value) points, shared axes, a legend."""

from __future__ import annotations

from typing import Optional

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QWidget

Points = list[tuple[float, float]]


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v) >= 100 or v == int(v) else f"{v:.2f}"


class CurveWidget(QWidget):
    def __init__(self, title: str = "", parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.title = title
        self.series: dict[str, Points] = {}
        self.colours: dict[str, QColor] = {}
        self.setMinimumSize(240, 160)

    def sizeHint(self) -> QSize:
        return QSize(480, 240)

    def clear(self) -> None:
        self.series.clear()
        self.update()

    def add(self, name: str, points: Points, colour: str = "#2e7dd7") -> None:
        """Append points (kept in step order, one value per step)."""
        if not points:
            return
        self.colours[name] = QColor(colour)
        merged = dict(self.series.get(name, []))
        merged.update((float(x), float(y)) for x, y in points)
        self.series[name] = sorted(merged.items())
        self.update()

    def point_count(self) -> int:
        return sum(len(p) for p in self.series.values())

    def _bounds(self) -> tuple[float, float, float, float]:
        xs = [x for pts in self.series.values() for x, _ in pts]
        ys = [y for pts in self.series.values() for _, y in pts]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        if x1 == x0:
            x1 = x0 + 1
        if y1 == y0:
            y0, y1 = y0 - 1, y1 + 1
        return x0, x1, y0, y1

    def paintEvent(self, event: QPaintEvent) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.fillRect(self.rect(), QColor("#ffffff"))
        fm = p.fontMetrics()
        left, bottom, top, right = fm.horizontalAdvance("00000.00") + 8, fm.height() + 8, \
            fm.height() + 8, 10
        plot = QRectF(left, top, self.width() - left - right, self.height() - top - bottom)
        p.setPen(QColor("#333333"))
        p.drawText(QPointF(plot.left(), fm.ascent() + 2), self.title)
        p.setPen(QPen(QColor("#bbbbbb"), 1))
        p.drawRect(plot)
        if not any(self.series.values()) or plot.width() < 10 or plot.height() < 10:
            p.setPen(QColor("#888888"))
            p.drawText(plot, Qt.AlignmentFlag.AlignCenter, "no points yet")
            p.end()
            return
        x0, x1, y0, y1 = self._bounds()

        def at(x: float, y: float) -> QPointF:
            return QPointF(plot.left() + (x - x0) / (x1 - x0) * plot.width(),
                           plot.bottom() - (y - y0) / (y1 - y0) * plot.height())
        p.setPen(QColor("#555555"))
        for y in (y0, (y0 + y1) / 2, y1):
            pt = at(x0, y)
            p.drawText(QRectF(0, pt.y() - fm.height() / 2, left - 4, fm.height()),
                       Qt.AlignmentFlag.AlignRight, _fmt(y))
        for x, align in ((x0, Qt.AlignmentFlag.AlignLeft), (x1, Qt.AlignmentFlag.AlignRight)):
            pt = at(x, y0)
            box = QRectF(pt.x() - 100 if align == Qt.AlignmentFlag.AlignRight else pt.x(),
                         plot.bottom() + 2, 100, fm.height())
            p.drawText(box, align, f"step {_fmt(x)}" if x == x1 else _fmt(x))
        legend_x = plot.left() + fm.horizontalAdvance(self.title) + 16
        for name, pts in self.series.items():
            colour = self.colours.get(name, QColor("#2e7dd7"))
            p.setPen(QPen(colour, 2))
            p.drawPolyline(QPolygonF([at(x, y) for x, y in pts]))
            for x, y in pts[-1:]:
                p.drawEllipse(at(x, y), 2.5, 2.5)
            p.drawText(QPointF(legend_x, fm.ascent() + 2), name)
            legend_x += fm.horizontalAdvance(name) + 16
        p.end()
