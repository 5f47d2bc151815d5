"""The runs table: a model of run dicts (convert.run), kept current by the watch's
snapshot and events (each applied once: an event at or below the watch position is
counted as a duplicate, one at or below its run's last_seq as already shown, and
both are skipped), and a filter proxy. The ``flags`` column shows the run's standing
liveness flags (flags_view.badge), their evidence as its tooltip."""

from __future__ import annotations

import time
from typing import Any, Optional

from PySide6.QtCore import (QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex,
                            QSortFilterProxyModel, Qt)
from PySide6.QtGui import QBrush, QColor

from trainer.gui import flags_view
from trainer.gui.convert import TERMINAL

COLUMNS = ("run", "status", "flags", "worker", "env", "progress", "return", "GPUs", "age")
COLOURS = {"pending": "#9e9e9e", "dispatching": "#f0a030", "running": "#2e7dd7",
           "completed": "#2e9e4e", "failed": "#d03030", "cancelled": "#8a5a9e"}
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2
Index = QModelIndex | QPersistentModelIndex


def age_text(seconds: float) -> str:
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"


def progress_text(run: dict[str, Any]) -> str:
    if run["status"] == "completed":
        return "100%"
    hb, steps = run.get("heartbeat"), run.get("steps") or 0
    if not hb or not steps:
        return ""
    return f"{min(100.0, 100.0 * hb['step'] / steps):.0f}%"


def return_text(run: dict[str, Any]) -> str:
    hb = run.get("heartbeat") or {}
    value = hb.get("mean_return")
    if value is None:
        value = run.get("metric_return")   # the selected run's last evaluation (details)
    return "" if value is None else f"{value:.1f}"


class RunsModel(QAbstractTableModel):
    def __init__(self, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.runs: list[dict[str, Any]] = []
        self.rows: dict[str, int] = {}
        self.seq = 0                 # the highest event seq applied
        self.applied: list[int] = []  # seqs of the events applied, in order (for tests)
        self.duplicates = 0     # events the watch delivered twice
        self.already_shown = 0  # events a newer record of their run already reflected

    # --- Qt ---------------------------------------------------------------------
    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation,
                   role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        run = self.runs[index.row()]
        col = COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return self.text(run, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == "status":
            return QBrush(QColor(COLOURS.get(run["status"], "#000000")))
        if role == Qt.ItemDataRole.ForegroundRole and col == "flags":
            return QBrush(QColor(flags_view.STANDING_COLOUR))
        if role == Qt.ItemDataRole.ToolTipRole and col == "flags":
            return flags_view.tooltip(run)
        if role == Qt.ItemDataRole.ToolTipRole:
            return run.get("message") or run.get("waiting_reason") or None
        if role == SORT_ROLE:
            return run.get("submitted_at") or 0.0
        if role == RUN_ID_ROLE:
            return run["run_id"]
        return None

    @staticmethod
    def text(run: dict[str, Any], col: str) -> str:
        if col == "run":
            return run["run_id"] + (f" {run['name']}" if run.get("name") else "")
        if col == "status":
            return run["status"] + (f" ({run['cause']})" if run["status"] in
                                    ("failed",) and run.get("cause") else "")
        if col == "flags":
            return flags_view.badge(run)
        if col in ("worker", "env"):
            return str(run.get(col, ""))
        if col == "progress":
            return progress_text(run)
        if col == "return":
            return return_text(run)
        if col == "GPUs":
            return str(len(run["gpus"]) or run.get("gpus_wanted") or "")
        if col == "age":
            return age_text(time.time() - run["submitted_at"]) if run.get("submitted_at") \
                else ""
        return ""

    # --- updates ------------------------------------------------------------------
    def run(self, run_id: str) -> Optional[dict[str, Any]]:
        row = self.rows.get(run_id)
        return None if row is None else self.runs[row]

    def _changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def _put(self, run: dict[str, Any]) -> None:
        row = self.rows.get(run["run_id"])
        if row is None:
            row = len(self.runs)
            self.beginInsertRows(QModelIndex(), row, row)
            self.runs.append(run)
            self.rows[run["run_id"]] = row
            self.endInsertRows()
        else:
            self.runs[row] = run
            self._changed(row)

    def upsert(self, runs: list[dict[str, Any]]) -> None:
        """Records (snapshot pages, GetRun/ListRuns answers): a record replaces the row
        unless the row has seen later events; then only its heartbeat is taken."""
        for run in runs:
            old = self.run(run["run_id"])
            if old is not None and "metric_return" not in run and "metric_return" in old:
                run = {**run, "metric_return": old["metric_return"]}
            if old is None or run["last_seq"] >= old["last_seq"]:
                self._put(run)
            elif run.get("heartbeat"):
                self._put({**old, "heartbeat": run["heartbeat"]})

    def set_return(self, run_id: str, value: float) -> None:
        """A run's last evaluation (read by the details' plot): the return column when
        its heartbeat has no ``mean_return``."""
        run = self.run(run_id)
        if run is not None and run.get("metric_return") != value:
            self._put({**run, "metric_return": value})

    def apply_events(self, events: list[dict[str, Any]]) -> None:
        for e in events:
            old = self.run(e["run_id"])
            if e["seq"] <= self.seq:
                self.duplicates += 1  # the watch sent it again: never expected
                continue
            if old is not None and e["seq"] <= old["last_seq"]:
                self.already_shown += 1  # a record (GetRun, a snapshot) was newer
                self.seq = e["seq"]
                continue
            self.seq = e["seq"]
            self.applied.append(e["seq"])
            run = self._applied(old, e)
            if run is not None:
                self._put(run)

    @staticmethod
    def _applied(old: Optional[dict[str, Any]], e: dict[str, Any]) -> Optional[dict]:
        p, kind = e["payload"], e["type"]
        if old is None:
            if kind != "RunSubmitted":
                return None   # a run this table never saw (the snapshot will bring it)
            config = p.get("config") or {}
            old = {"run_id": e["run_id"], "status": "pending", "cause": "", "config": config,
                   "worker": config.get("worker", ""), "env": config.get("env", ""),
                   "steps": config.get("steps", 0), "gpus": [],
                   "gpus_wanted": (config.get("resources") or {}).get("gpus", 0),
                   "exit_code": None, "waiting_reason": "", "message": "",
                   "submitted_at": e["recorded_at"], "started_at": None,
                   "finished_at": None, "priority": int(p.get("priority", 0)),
                   "heartbeat": None, "artifact_count": 0, "last_seq": 0,
                   "name": config.get("name", ""), "tags": config.get("tags", []),
                   "cancel_reason": "", "cancel_requested_by": "", "pid": None, "host": "",
                   "launcher": "", "job_id": "", "job_gpus": [], "flags": []}
        run = {**old, "last_seq": e["seq"]}
        if e["status"]:
            run["status"] = e["status"]
        if kind == "GpusClaimed":
            run["gpus"] = list(p.get("gpu_uuids") or [])
        elif kind == "RunWaiting":
            run["waiting_reason"] = p.get("reason", "")
        elif kind == "RunStarted":
            run["started_at"], run["pid"] = e["recorded_at"], p.get("pid")
            run.update(host=p.get("host", ""), launcher=p.get("launcher", ""),
                       job_id=p.get("job_id", ""), job_gpus=list(p.get("job_gpus") or []))
        elif kind == "ArtifactRegistered":
            run["artifact_count"] = run.get("artifact_count", 0) + 1
        elif kind == "CancelRequested":
            run["cancel_reason"] = p.get("reason", "")
        elif kind in ("RunFlagged", "RunFlagCleared"):
            run["flags"] = flagged(run.get("flags") or [], e)
        if run["status"] in TERMINAL and old["status"] not in TERMINAL:
            run["finished_at"] = e["recorded_at"]
            run["message"] = p.get("message", run.get("message", ""))
            run["cause"] = str(p.get("cause", run.get("cause", "")))
        return run


def flagged(flags: list[dict[str, Any]], e: dict[str, Any]) -> list[dict[str, Any]]:
    """The flags after a RunFlagged (a new standing flag) or a RunFlagCleared (the
    standing flag of its rule cleared) event; the next record (GetRun, ListRuns) brings
    the registry's own list."""
    p = e["payload"]
    if e["type"] == "RunFlagged":
        return [*flags, {"rule": p.get("rule", ""), "action": p.get("action", ""),
                         "flagged_at": e["recorded_at"], "cleared_at": None,
                         "standing": True, "evidence": p.get("evidence") or {},
                         "cleared_evidence": {}, "seq": e["seq"],
                         "attempt": int(p.get("attempt", 0))}]
    out = list(flags)
    for i in reversed(range(len(out))):
        if out[i]["rule"] == p.get("rule") and out[i].get("cleared_at") is None:
            out[i] = {**out[i], "cleared_at": e["recorded_at"], "standing": False,
                      "cleared_evidence": p.get("evidence") or {}}
            break
    return out


class RunsFilter(QSortFilterProxyModel):
    """Newest first; the filter text matches any column (case-insensitive)."""

    def __init__(self, source: RunsModel, parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.setFilterKeyColumn(-1)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setDynamicSortFilter(True)
        self.sort(0, Qt.SortOrder.DescendingOrder)
