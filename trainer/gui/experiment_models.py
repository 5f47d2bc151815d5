"""The experiments view's table models, plain Qt models over dicts (convert.experiment,
convert.results), no network: ExperimentsModel (ListExperiments), ResultsModel (the
statistics per config point, the best point in bold on green) and CellsModel (each
cell's run, from GetExperiment). Each replaces its rows with set_rows(); a row's key
(the name, the point, the run id) is under KEY_ROLE."""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont

from trainer.gui.runs_model import COLOURS

KEY_ROLE = Qt.ItemDataRole.UserRole + 3
Index = QModelIndex | QPersistentModelIndex
Row = dict[str, Any]
COUNT_ORDER = ("PENDING", "DISPATCHING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED")
BEST = "#dff3e3"


def num(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


def counts_text(counts: dict[str, int]) -> str:
    """``2 COMPLETED, 1 RUNNING`` in the statuses' order (others after, by name)."""
    parts = [f"{counts[s]} {s}" for s in COUNT_ORDER if counts.get(s)]
    parts += [f"{n} {s}" for s, n in sorted(counts.items()) if s not in COUNT_ORDER and n]
    return ", ".join(parts) or "none"


class DictTable(QAbstractTableModel):
    """Rows of dicts shown through ``columns``: (header, text of a row)."""

    columns: Sequence[tuple[str, Callable[[Row], str]]] = ()
    key = ""

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.rows: list[Row] = []

    def set_rows(self, rows: list[Row]) -> None:
        if [r.get(self.key) for r in rows] == [r.get(self.key) for r in self.rows]:
            self.rows = rows    # the same rows: only their values changed
            if rows:
                self.dataChanged.emit(self.index(0, 0),
                                      self.index(len(rows) - 1, len(self.columns) - 1))
            return
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def row_of(self, key: Any) -> int:
        for i, r in enumerate(self.rows):
            if r.get(self.key) == key:
                return i
        return -1

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.columns[section][0]
        return None

    def text(self, row: int, column: str) -> str:
        """The text shown at ``row`` under the header ``column`` (for tests)."""
        names = [c for c, _ in self.columns]
        return self.columns[names.index(column)][1](self.rows[row])

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self.rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.columns[index.column()][1](row)
        if role == KEY_ROLE:
            return row.get(self.key)
        return self.style(row, self.columns[index.column()][0], role)

    def style(self, row: Row, column: str, role: int) -> Any:
        return None


class ExperimentsModel(DictTable):
    key = "name"
    columns = (("name", lambda e: e["name"]), ("status", lambda e: e["status"]),
               ("rev", lambda e: str(e["revision"])),
               ("cells", lambda e: str(e["cell_count"])),
               ("runs", lambda e: counts_text(e["run_counts"])))

    def style(self, row: Row, column: str, role: int) -> Any:
        if role == Qt.ItemDataRole.ToolTipRole:
            return row.get("description") or None
        return None


def _stat(name: str) -> Callable[[Row], str]:
    return lambda p: num(p[name])


def _iqm(p: Row) -> str:
    if p["iqm"] is None:
        return "–"
    return f"{num(p['iqm'])} [{num(p['ci_low'])}, {num(p['ci_high'])}]"


class ResultsModel(DictTable):
    key = "point"
    columns = (("point", lambda p: p["label"]),
               ("done", lambda p: f"{p['completed']}/{p['seeds_total']}"),
               ("failed", lambda p: str(p["failed"] + p["cancelled"])),
               ("running", lambda p: str(p["running"])),
               ("pending", lambda p: str(p["pending"])),
               ("n", lambda p: str(p["n"])),
               ("mean ± std", lambda p: "–" if p["mean"] is None
                else f"{num(p['mean'])} ± {num(p['std'])}"),
               ("median", _stat("median")),
               ("IQM [95% CI]", _iqm),
               ("rank", lambda p: str(p["rank"]) if p["rank"] else "–"))

    def style(self, row: Row, column: str, role: int) -> Any:
        if row["best"] and role == Qt.ItemDataRole.BackgroundRole:
            return QBrush(QColor(BEST))
        if row["best"] and role == Qt.ItemDataRole.FontRole:
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole and row["missing"]:
            return f"{row['missing']} completed seeds reported no value of the metric"
        return None

    def best_points(self) -> list[int]:
        return [p["point"] for p in self.rows if p["best"]]


class CellsModel(DictTable):
    key = "run_id"
    columns = (("point", lambda c: c["label"]), ("seed", lambda c: str(c["seed"])),
               ("run", lambda c: c["run_id"]),
               ("status", lambda c: c["status"] + (f" ({c['cause']})" if c["cause"]
                                                   and c["status"] == "failed" else "")),
               ("attempt", lambda c: str(c["attempt"])))

    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.experiment: Row = {"point_labels": [], "cells": []}
        self.labels: dict[int, str] = {}

    def set_cells(self, experiment: Row) -> None:
        """The cells of a GetExperiment answer, each with its point's label."""
        self.experiment = experiment
        given = experiment["point_labels"]
        self.set_rows([{**c, "label": self.labels.get(c["point"]) or (
            given[c["point"]] if c["point"] < len(given) else str(c["point"]))}
            for c in experiment["cells"]])

    def set_labels(self, labels: dict[int, str]) -> None:
        """The points' labels of the statistics (GetExperimentResults), in place of the
        experiment's own, so that both tables and the plot name a point the same way."""
        if labels != self.labels:
            self.labels = labels
            self.set_cells(self.experiment)

    def style(self, row: Row, column: str, role: int) -> Any:
        if column == "status" and role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(QColor(COLOURS.get(row["status"], "#000000")))
        return None
