"""What ``log_metrics`` saw between two heartbeats, for the liveness rules
(docs/SUPERVISION.md): whether every value was finite, the first that was not, and the
newest return logged (a heartbeat's ``last_return`` when ``progress()`` gave none)."""

from __future__ import annotations

import math
import threading
from typing import Any, Optional

# Metric names taken as a return (the SDK's examples, SB3's and CleanRL's names).
RETURN_METRICS = frozenset({"return", "episode_return", "return_mean", "mean_return",
                            "ep_rew_mean", "rollout/ep_rew_mean", "charts/episodic_return"})


class MetricNotes:
    """``note`` (log_metrics, any thread) and ``take`` (the heartbeat thread) under one
    lock: a non-finite value noted as a beat is taken goes with this beat or the next."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.finite: Optional[bool] = None   # None: nothing logged since the last beat
        self.nonfinite = ""                  # the first value that was not finite
        self.latest_return: Optional[float] = None

    def note(self, values: dict[str, Any]) -> None:
        with self._lock:
            self._note(values)

    def _note(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            if isinstance(value, float) and not math.isfinite(value):
                if self.finite is not False:
                    self.nonfinite = name
                self.finite = False
                continue
            if name in RETURN_METRICS and isinstance(value, (int, float)) \
                    and not isinstance(value, bool):
                self.latest_return = float(value)
        if self.finite is None:
            self.finite = True

    def take(self) -> tuple[Optional[bool], str]:
        """(metrics_finite, nonfinite_metric) since the last call, and start again."""
        with self._lock:
            out = (self.finite, self.nonfinite)
            self.finite, self.nonfinite = None, ""
        return out
