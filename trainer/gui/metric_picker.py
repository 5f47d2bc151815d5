"""MetricPicker: a combo box of the metric names a run or an experiment reports
(GetExperimentResults.metrics, or the keys seen in GetMetrics points: metric_names).
Feeding it again keeps the user's choice when it is still offered; otherwise it picks
the preferred name (eval_return_mean by default), else the first of ``also`` offered,
else the name shown, else the first name (so a preferred name that arrives after
others, a run's evaluation after its first training points, takes over from a pick
the picker made itself). ``chosen`` is emitted when the choice changes, by the user or by a feed."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QWidget

DEFAULT_METRIC = "eval_return_mean"


def metric_names(points: Iterable[dict[str, Any]]) -> list[str]:
    """The keys of GetMetrics points (convert.metrics' ``points``), sorted."""
    return sorted({k for p in points for k in p["values"]})


class MetricPicker(QComboBox):
    chosen = Signal(str)

    def __init__(self, preferred: str = DEFAULT_METRIC,
                 parent: Optional[QWidget] = None, also: Iterable[str] = ()) -> None:
        super().__init__(parent)
        self.preferred = preferred
        self.also = tuple(also)
        self.setMinimumContentsLength(16)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self._feeding = False
        self._last = ""
        self.user_choice = ""      # what the user (or choose()) picked
        self.currentTextChanged.connect(self._user_changed)

    def metrics(self) -> list[str]:
        return [self.itemText(i) for i in range(self.count())]

    def selected_metric(self) -> str:
        """The chosen name, or the preferred one while nothing is offered."""
        return self.currentText() or self.preferred

    def set_metrics(self, names: Iterable[str]) -> None:
        names = list(dict.fromkeys(names))
        if names == self.metrics():
            return
        keep = self.currentText()
        liked = [n for n in (self.preferred, *self.also) if n in names]
        pick = self.user_choice if self.user_choice in names else liked[0] if liked \
            else keep if keep in names else (names[0] if names else "")
        self._feeding = True
        try:
            self.clear()
            self.addItems(names)
            if pick:
                self.setCurrentIndex(names.index(pick))
        finally:
            self._feeding = False
        self._changed(self.currentText())

    def choose(self, name: str) -> bool:
        """Choose ``name`` if offered (as a user would)."""
        i = self.findText(name)
        if i >= 0:
            self.setCurrentIndex(i)
        return i >= 0

    def _user_changed(self, text: str) -> None:
        if not self._feeding:
            self.user_choice = text
            self._changed(text)

    def _changed(self, text: str) -> None:
        if self._feeding or text == self._last:
            return
        self._last = text
        if text:
            self.chosen.emit(text)
