"""Which workers are installed: the entry points in the group ``trainer.workers``
(standard library only: ``importlib.metadata``), and, only where the setting
TRAINER_TEST_WORKERS=1 says so (the test suite), those in ``trainer.test_workers``
(tests/workers). Used by the registry (a config naming another worker is refused at
submit), the dispatcher (one uninstalled since is refused at start), the worker
launcher (which entry point to run) and ``trainer workers``.

A registered Python environment (``trainer env add``) has its own workers: those of
the distributions on its interpreter's sys.path, read from their metadata in this
process (``WorkerCatalog(path=...)``: nothing of that environment is run or imported).
"""

from __future__ import annotations

import time
from importlib import metadata
from typing import Callable, Iterable, Optional, Sequence

WORKER_GROUP = "trainer.workers"
TEST_WORKER_GROUP = "trainer.test_workers"
# A worker that resumes from a checkpoint says so with an entry point of its name here
# (read from the metadata: nothing is imported): a retry policy resuming from the last
# checkpoint is refused at submit for the others (docs/WORKERS.md, "Resuming").
RESUMES_GROUP = "trainer.resumes"


def groups(test_workers: bool) -> tuple[str, ...]:
    """The entry-point groups whose names are workers."""
    return (WORKER_GROUP, TEST_WORKER_GROUP) if test_workers else (WORKER_GROUP,)


def installed(test_workers: bool) -> list[metadata.EntryPoint]:
    """Every worker entry point, the first of a name winning, in group order."""
    found: dict[str, metadata.EntryPoint] = {}
    for group in groups(test_workers):
        for ep in metadata.entry_points(group=group):
            found.setdefault(ep.name, ep)
    return list(found.values())


def entry_points_on(path: Sequence[str], wanted: Iterable[str]) -> dict[str, list[str]]:
    """The names of the entry points in each group of ``wanted`` of the distributions
    found on ``path`` (another interpreter's sys.path), the first distribution of a
    name winning, as ``importlib.metadata.entry_points`` does for this one's."""
    groups_wanted = set(wanted)
    out: dict[str, list[str]] = {g: [] for g in groups_wanted}
    seen: set[str] = set()
    for dist in metadata.distributions(path=list(path)):
        name = getattr(dist, "_normalized_name", None) or str(dist.metadata["Name"] or "")
        if name in seen:
            continue
        seen.add(name)
        for ep in dist.entry_points:
            if ep.group in groups_wanted:
                out[ep.group].append(ep.name)
    return out


def find(name: str, test_workers: bool) -> metadata.EntryPoint | None:
    """The entry point of the worker ``name``, or None where none is installed."""
    for ep in installed(test_workers):
        if ep.name == name:
            return ep
    return None


class WorkerCatalog:
    """Read again when a name is asked and the last read is ``reload_s`` old, so that
    a worker installed or uninstalled meanwhile is seen within seconds; never more
    often (a scan of the installed packages costs ms, inside the registry's batch: a
    client that keeps submitting an unknown name must not stall the others)."""

    def __init__(self, reload_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 test_workers: bool = False, path: Optional[Sequence[str]] = None,
                 where: str = "") -> None:
        """``path``: read the distributions there (another interpreter's sys.path)
        instead of this interpreter's; ``where``: how a refusal names that place."""
        self.path = tuple(path) if path is not None else None
        self.where = where
        self._names: set[str] = set()
        self._resumes: set[str] = set()
        self.reload_s = reload_s
        self.clock = clock
        self.test_workers = test_workers
        self._loaded_at: float | None = None
        self.loads = 0

    def _load(self) -> None:
        if self.path is not None:
            found = entry_points_on(self.path, (*groups(self.test_workers), RESUMES_GROUP))
            self._names = {n for g in groups(self.test_workers) for n in found[g]}
            self._resumes = set(found[RESUMES_GROUP])
        else:
            self._names = {ep.name for ep in installed(self.test_workers)}
            self._resumes = {ep.name for ep in metadata.entry_points(group=RESUMES_GROUP)}
        self._loaded_at = self.clock()
        self.loads += 1

    def names(self) -> list[str]:
        """The installed workers' names as last read (for an error message)."""
        if self._loaded_at is None:
            self._load()
        return sorted(self._names)

    def refusal(self, name: str) -> str:
        """The message for a config naming ``name``, which is not installed."""
        names = self.names()
        return (f"{name!r} is not a registered entry point in the group "
                f"{' or '.join(groups(self.test_workers))}"
                f"{' ' + self.where if self.where else ''}; installed workers: "
                f"{', '.join(names) if names else 'none'}")

    def __call__(self, name: str) -> bool:
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.reload_s:
            self._load()
        return name in self._names

    def resumes(self, name: str) -> bool:
        """Does the worker ``name`` declare that it resumes from a checkpoint?"""
        if self._loaded_at is None or self.clock() - self._loaded_at >= self.reload_s:
            self._load()
        return name in self._resumes
