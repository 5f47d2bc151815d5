"""A run's liveness flags (RunRecord.flags, convert.flag dicts; docs/SUPERVISION.md):
the runs table's badge of the standing ones (``⚑ stalled``) with the evidence as its
tooltip, and FlagsView, the details' history of every flag: rule, action, when it was
raised and cleared, and what the rule saw."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable, Optional

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QHeaderView, QTreeWidget, QTreeWidgetItem, QWidget

MARK = "⚑"
STANDING_COLOUR = "#c0392b"
CLEARED_COLOUR = "#7f7f7f"
COLUMNS = ("rule", "action", "flagged", "cleared", "evidence")


def standing(flags: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The flags that still stand (no ``cleared_at``), oldest first."""
    return [f for f in flags if f.get("cleared_at") is None]


def badge(run: dict[str, Any]) -> str:
    """``⚑ stalled`` (``⚑ stalled, slowed`` for several rules), ``""`` when none stands."""
    rules = list(dict.fromkeys(f["rule"] for f in standing(run.get("flags") or ())))
    return f"{MARK} {', '.join(rules)}" if rules else ""


def evidence_text(evidence: dict[str, Any]) -> str:
    """``key=value`` pairs in key order (nested values as compact JSON)."""
    def value(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (dict, list)):
            return json.dumps(v, sort_keys=True, separators=(",", ":"))
        return str(v)
    return ", ".join(f"{k}={value(v)}" for k, v in sorted(evidence.items()))


def when(ts: Optional[float]) -> str:
    return "" if ts is None else time.strftime("%H:%M:%S", time.localtime(ts))


def flag_line(f: dict[str, Any]) -> str:
    """One flag as text: ``stalled (warn) since 12:00:01: step=120, window_s=5``."""
    head = f"{f['rule']} ({f['action']})"
    state = f"since {when(f.get('flagged_at'))}" if f.get("cleared_at") is None else \
        f"{when(f.get('flagged_at'))} - cleared {when(f.get('cleared_at'))}"
    ev = evidence_text(f.get("evidence") or {})
    return f"{head} {state}" + (f": {ev}" if ev else "")


def tooltip(run: dict[str, Any]) -> Optional[str]:
    """The standing flags, one a line, with their evidence (None when none stands)."""
    lines = [flag_line(f) for f in standing(run.get("flags") or ())]
    return "\n".join(lines) if lines else None


class FlagsView(QTreeWidget):
    """Every flag of the selected run, oldest first; standing ones in red."""

    def __init__(self, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setColumnCount(len(COLUMNS))
        self.setHeaderLabels(list(COLUMNS))
        self.setRootIsDecorated(False)
        self.setAlternatingRowColors(True)
        self.header().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.header().setStretchLastSection(True)
        self.flags: list[dict[str, Any]] = []

    def set_flags(self, flags: list[dict[str, Any]]) -> None:
        if flags == self.flags:
            return
        self.flags = list(flags)
        self.clear()
        for f in flags:
            cleared = f.get("cleared_at")
            ev = evidence_text(f.get("evidence") or {})
            if cleared is not None and f.get("cleared_evidence"):
                ev += f"; cleared: {evidence_text(f['cleared_evidence'])}"
            item = QTreeWidgetItem([f"{MARK} {f['rule']}", f["action"],
                                    when(f.get("flagged_at")),
                                    when(cleared) if cleared is not None else "standing", ev])
            item.setToolTip(4, ev)
            colour = QBrush(QColor(STANDING_COLOUR if cleared is None else CLEARED_COLOUR))
            for col in range(len(COLUMNS)):
                item.setForeground(col, colour)
            self.addTopLevelItem(item)

    def rows(self) -> list[list[str]]:
        """The shown text, row by row (for tests)."""
        return [[self.topLevelItem(i).text(c) for c in range(len(COLUMNS))]
                for i in range(self.topLevelItemCount())]
