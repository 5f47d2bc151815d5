"""The GUI's widgets and models without a network: Qt offscreen (set before anything
imports Qt; pytest-qt's ``qtbot`` makes the QApplication)."""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"
