"""The submit dialog: worker, env, seed, steps, GPUs, priority, hyperparameters (JSON).
The call runs off the GUI thread; an INVALID_ARGUMENT error is shown next to the field
TrainerError.field names (``resources.gpus`` -> GPUs, ``hyperparameters.x`` -> the
hyperparameters box), anything else under the form."""

from __future__ import annotations

import json
from typing import Any, Optional

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFormLayout, QLabel, QLineEdit,
                               QSpinBox, QVBoxLayout, QWidget)

from trainer.gui import convert
from trainer.gui.qtcalls import Calls

FIELDS = ("worker", "env", "seed", "steps", "gpus", "priority", "hyperparameters")
ALIASES = {"resources": "gpus", "resources.gpus": "gpus"}


def form_field(api_field: str) -> str:
    """The form row for an API field name (``hyperparameters.seconds`` -> hyperparameters)."""
    if api_field in ALIASES:
        return ALIASES[api_field]
    top = api_field.split(".", 1)[0]
    return ALIASES.get(top, top) if top in FIELDS or top in ALIASES else ""


def _spin(low: int, high: int, value: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


class SubmitDialog(QDialog):
    submitted = Signal(dict)   # the run dict of the submitted (or already existing) run

    def __init__(self, calls: Calls, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Submit a run")
        self.calls = calls
        self.inputs: dict[str, Any] = {
            "worker": QLineEdit("cartpole"), "env": QLineEdit("CartPole-v1"),
            "seed": _spin(0, 2**31 - 1, 0), "steps": _spin(1, 2**31 - 1, 100000),
            "gpus": _spin(0, 64, 0), "priority": _spin(-1000, 1000, 0),
            "hyperparameters": QLineEdit("{}")}
        self.errors: dict[str, QLabel] = {}
        form = QFormLayout()
        for name in FIELDS:
            err = QLabel("")
            err.setStyleSheet("color: #d03030")
            err.setObjectName(f"error_{name}")
            err.hide()
            self.errors[name] = err
            box = QVBoxLayout()
            box.setSpacing(0)
            box.addWidget(self.inputs[name])
            box.addWidget(err)
            form.addRow(name, box)
        self.general = QLabel("")
        self.general.setStyleSheet("color: #d03030")
        self.general.setWordWrap(True)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                        | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Submit")
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.general)
        lay.addWidget(self.buttons)

    def set_values(self, **values: Any) -> None:
        for name, value in values.items():
            box = self.inputs[name]
            if isinstance(box, QSpinBox):
                box.setValue(int(value))
            else:
                box.setText(value if isinstance(value, str) else json.dumps(value))

    def config(self) -> dict[str, Any]:
        """The config map; raises ValueError (field, reason) on bad hyperparameters JSON."""
        i = self.inputs
        try:
            hp = json.loads(i["hyperparameters"].text() or "{}")
        except ValueError as exc:
            raise ValueError("hyperparameters", f"not JSON: {exc}") from None
        return {"worker": i["worker"].text().strip(), "env": i["env"].text().strip(),
                "seed": i["seed"].value(), "steps": i["steps"].value(),
                "resources": {"gpus": i["gpus"].value()}, "priority": i["priority"].value(),
                "hyperparameters": hp}

    def clear_errors(self) -> None:
        for err in self.errors.values():
            err.clear()
            err.hide()
        self.general.clear()

    def show_error(self, err: dict[str, Any]) -> None:
        self.buttons.setEnabled(True)
        name = form_field(err.get("field", ""))
        text = err.get("reason") or err.get("message", "")
        if name:
            self.errors[name].setText(text)
            self.errors[name].show()
        else:
            self.general.setText(f"{err.get('code')}: {err.get('message')}")

    def submit(self) -> None:
        self.clear_errors()
        try:
            cfg = self.config()
        except ValueError as exc:
            self.show_error({"field": exc.args[0], "reason": exc.args[1]})
            return
        self.buttons.setEnabled(False)
        self.general.setText("submitting…")
        self.calls.start(lambda c: convert.run(c.submit(cfg, submitted_by="gui").run),
                         self._done, self._failed)

    def _failed(self, err: dict[str, Any]) -> None:
        self.general.clear()
        self.show_error(err)

    def _done(self, run: dict[str, Any]) -> None:
        self.buttons.setEnabled(True)
        self.general.clear()
        self.submitted.emit(run)
        self.accept()
