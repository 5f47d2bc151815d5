"""An experiment's results (the dict of `runtime.experimentresults.experiment_results`)
for the CLI: `text` (an aligned table, one row per config point), `csv` (one row per
point, the same fields and the point's axis values) and `json` (the data itself)."""

from __future__ import annotations

import csv as _csv
import io
import json as _json
from typing import Any, Optional

CSV_FIELDS = ("point", "label", "total", "completed", "failed", "cancelled", "running",
              "pending", "n", "missing", "mean", "std", "median", "iqm", "ci_low", "ci_high",
              "rank", "best")
SEED_FIELDS = ("total", "completed", "failed", "cancelled", "running", "pending")
# (header, left-aligned)
TEXT_COLUMNS = (("point", False), ("label", True), ("done", False), ("failed", False),
                ("running", False), ("n", False), ("mean ± std", False), ("median", False),
                ("IQM [CI]", False), ("rank", False), ("best", True))


def number(value: Optional[float]) -> str:
    """Four significant digits (whole numbers from 10,000 up); "-" for no value."""
    if value is None:
        return "-"
    if abs(value) >= 1e4:
        return f"{value:.0f}"
    return f"{value:.4g}"


def _row(point: dict[str, Any]) -> list[str]:
    seeds = point["seeds"]
    if point["n"]:
        spread = f"{number(point['mean'])} ± {number(point['std'])}"
        iqm = f"{number(point['iqm'])} [{number(point['ci_low'])}, {number(point['ci_high'])}]"
    else:
        spread = iqm = "-"
    return [str(point["point"]), point["label"], f"{seeds['completed']}/{seeds['total']}",
            str(seeds["failed"]), str(seeds["running"]), str(point["n"]), spread,
            number(point["median"]), iqm,
            "-" if point["rank"] is None else str(point["rank"]),
            "*" if point["best"] else ""]


def text(results: dict[str, Any]) -> str:
    """The results as an aligned table: per config point its seeds done (of all), failed
    and running, n (completed seeds that reported the metric), mean ± std, median, IQM
    with its confidence interval, its rank by IQM and "*" on the best point."""
    confidence = float(results.get("confidence", 0.95))
    better = "higher" if results.get("higher_is_better", True) else "lower"
    headers = [h for h, _ in TEXT_COLUMNS]
    headers[headers.index("IQM [CI]")] = f"IQM [{confidence:.0%} CI]"
    rows = [_row(p) for p in results["points"]]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if left else c.rjust(w)
                         for c, w, (_, left) in zip(cells, widths, TEXT_COLUMNS)).rstrip()

    out = [f"metric {results['metric']}: statistics over the completed seeds, ranked by IQM"
           f" ({better} is better)", "", line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in rows]
    notes = []
    missing = sum(p["missing"] for p in results["points"])
    if missing:
        notes.append(f"{missing} completed seed(s) reported no final value of "
                     f"{results['metric']} (not counted in n)")
    if results.get("skipped_lines"):
        notes.append(f"{results['skipped_lines']} malformed line(s) skipped")
    for bad in results.get("unreadable", []):
        notes.append(f"run {bad['run_id']}: metrics unreadable ({bad['error']})")
    if notes:
        out += [""] + [f"note: {n}" for n in notes]
    return "\n".join(out) + "\n"


def csv(results: dict[str, Any]) -> str:
    """One row per config point: CSV_FIELDS, then one column per axis (every axis of any
    point, in order of first appearance). No value is an empty cell."""
    axes: list[str] = []
    for point in results["points"]:
        axes += [a for a in point["values"] if a not in axes]
    buf = io.StringIO()
    writer = _csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_FIELDS, *axes])
    for point in results["points"]:
        flat = {**point, **{k: point["seeds"][k] for k in SEED_FIELDS}}
        cells = ["" if flat[f] is None else flat[f] for f in CSV_FIELDS]
        cells += [_cell(point["values"].get(a)) for a in axes]
        writer.writerow(cells)
    return buf.getvalue()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (list, dict, bool)):
        return _json.dumps(value, sort_keys=True)
    return value


def json(results: dict[str, Any]) -> str:
    """The results themselves, as indented JSON."""
    return _json.dumps(results, indent=2, allow_nan=False)
