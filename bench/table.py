"""A benchmark's result row, and the markdown table of all rows."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    ours: Optional[float]
    raw: Optional[float]
    target: str                  # human-readable target, e.g. ">= 50% of raw"
    passed: Optional[bool]       # None: informational, no target
    notes: str = ""
    ours_text: str = ""          # overrides the formatted number when set
    raw_text: str = ""

    @property
    def ratio(self) -> Optional[float]:
        if self.ours is None or not self.raw:
            return None
        return self.ours / self.raw


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def fmt_num(value: Optional[float], unit: str = "") -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 10:
        text = f"{value:.1f}"
    else:
        text = f"{value:.2f}"
    return f"{text} {unit}".strip()


def render(rows: Sequence[Row], header: str = "") -> str:
    lines = []
    if header:
        lines += [header, ""]
    lines += ["| benchmark | ours | raw baseline (same run) | ours/raw | target | result | notes |",
              "|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        ours = r.ours_text or fmt_num(r.ours, r.unit)
        raw = r.raw_text or fmt_num(r.raw, r.unit)
        ratio = "-" if r.ratio is None else f"{r.ratio:.1%}"
        result = "-" if r.passed is None else ("PASS" if r.passed else "**FAIL**")
        lines.append(f"| {r.name} | {ours} | {raw} | {ratio} | {r.target} | {result} | "
                     f"{r.notes} |")
    return "\n".join(lines) + "\n"
