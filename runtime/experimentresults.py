"""An experiment's results from its cells' ``metrics.jsonl`` (issue 17; docs/EXPERIMENTS.md,
"Results: the statistics"): per config point, how many seeds are done, the final values
of one metric and their statistics (`runtime.seedstats`), the ranking by IQM, and on
request the curves of the metric on a common step grid with a bootstrap band.

Plain data in, plain data out (it becomes a gRPC reply and the CLI's JSON); files are
read, nothing else (no socket). A line that is not a metrics record (torn at the end of
a file being written, or malformed) is skipped and counted, never fatal.

- The final value of a run is the value of the metric in the *last record holding it*
  (file order: a resumed attempt's records come after the killed one's). It is read from
  the file's tail, backwards in growing chunks, until such a record is found, so a large
  file costs what its tail costs. A final value that is not a finite number (a diverged
  run's NaN) is no value: the run counts as missing, never as an earlier value.
- Statistics are over the COMPLETED seeds only: a running run's latest value is not final.
- Curves read whole files: COMPLETED and running (DISPATCHING, RUNNING) seeds.
- A metric no metrics.jsonl record holds is looked for among the TensorBoard scalars
  the worker wrote itself in its run folder (SB3's ``rollout/ep_rew_mean``:
  runtime.tbruns), with the same rules; ``metrics`` lists their tags too.
- Repeated calls on unchanged files are cheap: what a file gave is cached, keyed on
  (path, size, mtime_ns, metric, kind of read), in a bounded LRU (`CACHE`).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from core.errors import ValidationError
from core.ids import is_run_id
from core.rundir import METRICS_FILE
from core.runstate import RunStatus
from core.sweepspec import point_label
from runtime import seedstats, tbruns

CHUNK = 64 * 1024            # the first tail read; each further read doubles, up to:
MAX_CHUNK = 4 * 1024 * 1024
CACHE_ENTRIES = 1024
CACHE_BYTES = 128 * 1024 * 1024   # the curves' arrays held, at most
_loads = json.JSONDecoder().decode   # on str: json.loads less its per-call checks
RUNNING = frozenset({RunStatus.DISPATCHING.value, RunStatus.RUNNING.value})
CURVE_STATUSES = RUNNING | {RunStatus.COMPLETED.value}
STATUSES = frozenset(s.value for s in RunStatus)
FINISHED = STATUSES - RUNNING - {RunStatus.PENDING.value}


@dataclass(frozen=True)
class CellRef:
    """One cell of an experiment: the config point's index, the seed, its run."""
    point: int      # index into the experiment's points
    seed: int
    run_id: str
    status: str     # the run's status: PENDING DISPATCHING RUNNING COMPLETED FAILED CANCELLED


@dataclass
class FileRead:
    """What one read of one metrics file found (about one metric)."""
    final: Optional[float] = None   # None: no record holds the metric, or not finite
    final_step: Optional[int] = None
    found: bool = False             # a record holds the metric (finite or not)
    names: set[str] = field(default_factory=set)
    skipped: int = 0                # malformed lines among those read
    steps: Optional[np.ndarray] = None    # curves only: increasing steps
    values: Optional[np.ndarray] = None   # curves only: finite values at those steps


class FileCache:
    """An LRU of `FileRead`s bounded in entries and in the bytes of their curves,
    thread-safe (the gateway reads in a pool)."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES) -> None:
        self.entries = entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[tuple[Any, ...], FileRead] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> Optional[FileRead]:
        with self._lock:
            got = self._data.get(key)
            if got is None:
                self.misses += 1
                return None
            self.hits += 1
            self._data.move_to_end(key)
            return got

    def put(self, key: tuple[Any, ...], value: FileRead) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self.bytes -= _weight(old)
            self._data[key] = value
            self.bytes += _weight(value)
            while len(self._data) > self.entries or (self.bytes > self.max_bytes
                                                     and len(self._data) > 1):
                _, dropped = self._data.popitem(last=False)
                self.bytes -= _weight(dropped)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self.bytes = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


def _weight(read: FileRead) -> int:
    arrays = (read.steps, read.values)
    return sum(a.nbytes for a in arrays if a is not None)


CACHE = FileCache()


# --- one line, one file ---------------------------------------------------------------

def _record(line: str) -> Optional[tuple[int, dict[str, Any]]]:
    """(step, values) of one metrics line, or None when it is not a record."""
    try:
        record = _loads(line)
    except ValueError:  # torn, or not JSON
        return None
    if not isinstance(record, dict):
        return None
    step, values = record.get("step"), record.get("values")
    if isinstance(step, bool) or not isinstance(step, int) or not isinstance(values, dict):
        return None
    return step, values


def _number(value: Any) -> Optional[float]:
    """A finite float, or None (bool, string, null, NaN, infinite, too large)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _take_final(out: FileRead, step: int, values: dict[str, Any], metric: str) -> None:
    if not out.found and metric in values:
        out.found = True
        out.final = _number(values[metric])
        out.final_step = step


def read_tail(path: str, size: int, metric: str) -> FileRead:
    """The final value of ``metric``: lines read backwards from ``size`` in chunks
    (64 KiB, doubling) until a record holding it is found (or the file's start)."""
    out = FileRead()
    with open(path, "rb") as fh:
        pos, rest, chunk = size, b"", CHUNK
        while pos > 0 and not out.found:
            n = min(chunk, pos)
            pos -= n
            fh.seek(pos)
            lines = (fh.read(n) + rest).split(b"\n")
            rest = lines.pop(0) if pos > 0 else b""   # may be the end of a longer line
            for line in reversed(lines):
                if not line.strip():
                    continue
                got = _record(line.decode("utf-8", "replace"))
                if got is None:
                    out.skipped += 1
                    continue
                out.names.update(got[1])
                _take_final(out, got[0], got[1], metric)
            chunk = min(chunk * 2, MAX_CHUNK)
    return out


def read_whole(path: str, size: int, metric: str) -> FileRead:
    """The curve of ``metric`` (a step written twice, as a resumed attempt does, keeps
    its last value) and its final value, from the first ``size`` bytes."""
    out = FileRead()
    by_step: dict[int, float] = {}
    last: Optional[tuple[int, dict[str, Any]]] = None
    with open(path, "rb") as fh:
        text = fh.read(size).decode("utf-8", "replace")   # a bad byte: U+FFFD, then JSON
    names = out.names
    for line in text.split("\n"):
        if not line or line.isspace():
            continue
        got = _record(line)
        if got is None:
            out.skipped += 1
            continue
        step, values = got
        names.update(values)
        if metric in values:
            last = got
            number = _number(values[metric])
            if number is None:
                by_step.pop(step, None)
            else:
                by_step[step] = number
    if last is not None:
        _take_final(out, last[0], last[1], metric)
    steps = sorted(by_step)
    out.steps = np.asarray(steps, dtype=float)
    out.values = np.asarray([by_step[s] for s in steps], dtype=float)
    return out


def read_metrics(path: str, metric: str, *, curve: bool = False,
                 cache: FileCache = CACHE) -> FileRead:
    """What ``path`` says about ``metric`` (an empty read for a file not there yet),
    from the cache while the file's size and mtime are unchanged."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return FileRead()
    key = (path, st.st_size, st.st_mtime_ns, metric, curve)
    got = cache.get(key)
    if got is None:
        got = (read_whole if curve else read_tail)(path, st.st_size, metric)
        cache.put(key, got)
    return got


# --- the results ----------------------------------------------------------------------

label = point_label   # the one naming of points (core.sweepspec)


def _check(points: list[dict[str, Any]], cells: list[CellRef]) -> None:
    for i, point in enumerate(points):
        if not isinstance(point, dict):
            raise ValidationError(f"points[{i}]", f"a {type(point).__name__}, not a map")
    for i, cell in enumerate(cells):
        if isinstance(cell.point, bool) or not isinstance(cell.point, int) \
                or not 0 <= cell.point < len(points):
            raise ValidationError(f"cells[{i}].point", f"{cell.point!r} is not an index"
                                  f" into the {len(points)} points")
        if not is_run_id(cell.run_id):
            raise ValidationError(f"cells[{i}].run_id",
                                  f"{str(cell.run_id)[:40]!r} is not a run id")
        if cell.status not in STATUSES:
            raise ValidationError(f"cells[{i}].status",
                                  f"{cell.status!r} is not one of {', '.join(sorted(STATUSES))}")


def _seed_counts(cells: list[CellRef]) -> dict[str, int]:
    statuses = [c.status for c in cells]
    return {"total": len(cells),
            "completed": statuses.count(RunStatus.COMPLETED.value),
            "failed": statuses.count(RunStatus.FAILED.value),
            "cancelled": statuses.count(RunStatus.CANCELLED.value),
            "running": sum(s in RUNNING for s in statuses),
            "pending": statuses.count(RunStatus.PENDING.value)}


_STAT_FIELDS = ("mean", "std", "median", "iqm", "ci_low", "ci_high")


def _curve(reads: list[tuple[FileRead, bool]], grid_points: int, confidence: float,
           reps: int, seed: int) -> Optional[dict[str, Any]]:
    """Mean and band per step of a grid from the earliest first step to the latest last
    step; at each grid step, over the seeds whose curve covers it. A COMPLETED seed's
    curve covers the grid to its end: it stopped at its budget (the runs of a point end
    a few steps apart) and its last value is its final one, the value the table counts.
    A running seed's curve ends at its last step (nothing of it is extrapolated)."""
    curves = [(r.steps, r.values, done) for r, done in reads
              if r.steps is not None and r.values is not None and r.steps.size]
    if not curves:
        return None
    start = min(float(s[0]) for s, _, _ in curves)
    end = max(float(s[-1]) for s, _, _ in curves)
    grid = np.array([start]) if start == end else np.linspace(start, end, grid_points)
    cover = np.stack([(grid >= s[0]) & ((grid <= s[-1]) | done)
                      for s, _, done in curves])  # (seeds, grid)
    on_grid = np.stack([np.interp(grid, s, v) for s, v, _ in curves])  # (held past the end)
    mean, low, high = (np.full(grid.size, np.nan) for _ in range(3))
    counts = cover.sum(axis=0)
    groups: dict[bytes, list[int]] = {}
    for j in range(grid.size):
        if counts[j]:
            groups.setdefault(cover[:, j].tobytes(), []).append(j)
    for group in groups.values():
        columns = np.asarray(group, dtype=np.intp)
        rows = np.flatnonzero(cover[:, group[0]])
        got = seedstats.band(on_grid[np.ix_(rows, columns)], confidence=confidence,
                             reps=reps, rng=seed)
        mean[columns], low[columns], high[columns] = got.mean, got.low, got.high
    keep = counts > 0
    return {"steps": grid[keep].tolist(), "mean": mean[keep].tolist(),
            "low": low[keep].tolist(), "high": high[keep].tolist(), "n": len(curves),
            "n_per_step": counts[keep].astype(int).tolist()}


def experiment_results(runs_dir: str, points: list[dict[str, Any]], cells: list[CellRef],
                       metric: str, *, curves: bool = False,
                       grid_points: int = seedstats.DEFAULT_GRID_POINTS,
                       confidence: float = seedstats.DEFAULT_CONFIDENCE,
                       reps: int = seedstats.DEFAULT_REPS, seed: int = 0,
                       higher_is_better: bool = True,
                       cache: FileCache = CACHE) -> dict[str, Any]:
    """The results of one experiment for ``metric`` as plain data (docs/EXPERIMENTS.md,
    "Results: the statistics", lists the fields). Deterministic: every bootstrap draws
    from a generator seeded with ``seed`` (each point's own, so a point's interval does
    not depend on the others)."""
    if not isinstance(metric, str) or not metric:
        raise ValidationError("metric", "empty (name the metric to summarise)")
    _check(points, cells)
    by_point: list[list[CellRef]] = [[] for _ in points]
    for cell in cells:
        by_point[cell.point].append(cell)
    names: set[str] = set()
    skipped = 0
    unreadable: list[dict[str, str]] = []
    rows: list[dict[str, Any]] = []
    summaries: dict[str, seedstats.Summary] = {}
    curve_rows: list[dict[str, Any]] = []
    for i, point_cells in enumerate(by_point):
        point_cells = sorted(point_cells, key=lambda c: (c.seed, c.run_id))
        finals, done, curve_reads = [], [], []
        for cell in point_cells:
            path = os.path.join(runs_dir, cell.run_id, METRICS_FILE)
            want_curve = curves and cell.status in CURVE_STATUSES
            try:
                got = read_metrics(path, metric, curve=want_curve, cache=cache)
            except OSError as exc:   # unreadable, not absent: said, never a silent gap
                unreadable.append({"run_id": cell.run_id, "error": f"{type(exc).__name__}:"
                                   f" {exc.strerror or exc}"})
                got = FileRead()
            try:
                got, errors = tbruns.with_tensorboard(got, os.path.dirname(path), metric,
                                                      curve=want_curve,
                                                      finished=cell.status in FINISHED)
            except OSError as exc:
                errors = [f"{type(exc).__name__}: {exc.strerror or exc}"]
            unreadable += [{"run_id": cell.run_id, "error": e} for e in errors]
            names |= got.names
            skipped += got.skipped
            finals.append({"seed": cell.seed, "run_id": cell.run_id, "status": cell.status,
                           "value": got.final, "step": got.final_step})
            if cell.status == RunStatus.COMPLETED.value and got.final is not None:
                done.append(got.final)
            if want_curve:
                curve_reads.append((got, cell.status == RunStatus.COMPLETED.value))
        counts = _seed_counts(point_cells)
        row: dict[str, Any] = {"point": i, "values": dict(points[i]),
                               "label": label(points[i]), "seeds": counts, "n": len(done),
                               "missing": counts["completed"] - len(done)}
        if done:
            s = seedstats.summary(done, "iqm", confidence=confidence, reps=reps, rng=seed)
            summaries[f"{i:09d}"] = s
            row.update({f: float(getattr(s, f)) for f in _STAT_FIELDS})
        else:
            row.update({f: None for f in _STAT_FIELDS})
        row.update({"rank": None, "best": False, "finals": finals})
        rows.append(row)
        if curves:
            curve = _curve(curve_reads, grid_points, confidence, reps, seed)
            if curve is not None:
                curve_rows.append({"point": i, **curve})
    if summaries:
        order = seedstats.rank(summaries, by="iqm", higher_is_better=higher_is_better)
        for place, name in enumerate(order, start=1):
            rows[int(name)]["rank"] = place
        rows[int(order[0])]["best"] = True
    out: dict[str, Any] = {"metric": metric, "metrics": sorted(names),
                           "higher_is_better": higher_is_better, "statistic": "iqm",
                           "confidence": confidence, "points": rows,
                           "skipped_lines": skipped, "unreadable": unreadable}
    if curves:
        out["curves"] = curve_rows
    return out
