"""A run's own TensorBoard scalars by tag, for the experiment results (issue 19;
docs/EXPERIMENTS.md, "Metrics from TensorBoard"): the event files the worker wrote in
its run folder (runtime.tbevents.event_files: SB3, CleanRL; not the SDK's copies of
metrics.jsonl), their scalars in file order (files in the order they started, records
in file order), so that the last point of a tag is its final value.

Reading is incremental: what a file gave is kept (``FILES``, a bounded LRU keyed on the
path and the file's inode) with the offset read up to, so a file that grew is read on
from there and an unchanged one costs one ``stat``. A file that shrank or was replaced
is read again from its start. The list of a run folder's event files is kept too for a
run that has ended (its folder no longer changes): ``finished=True``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from runtime import tbevents

FILE_ENTRIES = 2048
FOLDER_ENTRIES = 8192


@dataclass
class FileTags:
    inode: int = -1
    offset: int = 0
    size: int = -1
    mtime_ns: int = -1
    points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    error: Optional[str] = None


@dataclass
class RunTags:
    """One run folder's worker-written scalars: per tag, (step, value) in file order."""
    points: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    files: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def names(self) -> set[str]:
        return set(self.points)


class _Lru:
    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.data: OrderedDict[tuple, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: tuple) -> object:
        with self.lock:
            got = self.data.get(key)
            if got is not None:
                self.data.move_to_end(key)
            return got

    def put(self, key: tuple, value: object) -> None:
        with self.lock:
            self.data[key] = value
            self.data.move_to_end(key)
            while len(self.data) > self.entries:
                self.data.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.data.clear()


FILES = _Lru(FILE_ENTRIES)
FOLDERS = _Lru(FOLDER_ENTRIES)


def _read_file(path: str) -> FileTags:
    """The file's scalars by tag, read on from what the cache holds."""
    st = os.stat(path)
    got = FILES.get((path,))
    if not isinstance(got, FileTags) or got.inode != st.st_ino or st.st_size < got.offset:
        got = FileTags(inode=st.st_ino)
    elif (got.mtime_ns, got.size) == (st.st_mtime_ns, st.st_size) or got.error:
        return got
    fresh = FileTags(inode=got.inode, offset=got.offset,
                     points={tag: list(pts) for tag, pts in got.points.items()})
    while True:
        read = tbevents.read_scalars(path, fresh.offset)
        for s in read.scalars:
            fresh.points.setdefault(s.tag, []).append((s.step, s.value))
        fresh.offset = read.next_offset
        if read.error:
            fresh.error = f"{path}: {read.error}"
        if not read.more or read.error:
            break
    fresh.mtime_ns, fresh.size = st.st_mtime_ns, st.st_size
    FILES.put((path,), fresh)
    return fresh


def run_tags(run_dir: str, *, finished: bool = False) -> RunTags:
    """The worker-written scalars of the run folder ``run_dir`` (empty without any).
    Raises OSError for a file that cannot be read (a missing one is skipped: it went
    between the listing and the read)."""
    files = FOLDERS.get((run_dir,)) if finished else None
    if not isinstance(files, list):
        files = tbevents.event_files(run_dir) if os.path.isdir(run_dir) else []
        if finished:
            FOLDERS.put((run_dir,), files)
    out = RunTags()
    for rel in files:
        try:
            got = _read_file(os.path.join(run_dir, rel))
        except FileNotFoundError:
            continue
        out.files += 1
        if got.error:
            out.errors.append(got.error)
        for tag, pts in got.points.items():
            out.points.setdefault(tag, []).extend(pts)
    return out


def _finite(value: float) -> Optional[float]:
    return value if math.isfinite(value) else None


def with_tensorboard(got: Any, run_dir: str, metric: str, *, curve: bool,
                     finished: bool) -> tuple[Any, list[str]]:
    """``got`` (a runtime.experimentresults.FileRead of the run's metrics.jsonl) with
    the tags of the worker's own TensorBoard scalars among its names and, where no jsonl
    record holds ``metric``, its final value and curve from those scalars (the same
    rules: a step written twice keeps its last value, a final NaN is no value); and the
    errors met reading them."""
    tags = run_tags(run_dir, finished=finished)
    if not tags.points:
        return got, tags.errors
    out = dataclasses.replace(got, names=got.names | tags.names)
    points = tags.points.get(metric)
    if got.found or not points:
        return out, tags.errors
    out.found, out.final_step, out.final = True, points[-1][0], _finite(points[-1][1])
    if curve:
        by_step: dict[int, float] = {}
        for step, value in points:
            number = _finite(value)
            if number is None:
                by_step.pop(step, None)
            else:
                by_step[step] = number
        steps = sorted(by_step)
        out.steps = np.asarray(steps, dtype=float)
        out.values = np.asarray([by_step[s] for s in steps], dtype=float)
    return out, tags.errors
