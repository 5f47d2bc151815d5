"""The GPU inventory as the dispatcher last read it (the shell reads NVML or fakes)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional


class GpuSource(str, enum.Enum):
    NVML = "nvml"
    FAKE = "fake"
    NONE = "none"       # no driver, no device, or the read failed: zero GPUs


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int
    memory_free: int
    foreign_pids: tuple[int, ...] = ()   # processes on it that we did not start
    # NVML's utilisation (%) when read (the gpu_idle rule); not compared: a new reading
    # alone does not make a new inventory
    utilization_pct: Optional[float] = field(default=None, compare=False)

    def to_map(self) -> dict:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_total": self.memory_total, "memory_free": self.memory_free,
                "foreign_pids": list(self.foreign_pids)}


@dataclass(frozen=True)
class Inventory:
    gpus: tuple[Gpu, ...] = ()
    source: GpuSource = GpuSource.NONE
    error: str = ""

    @property
    def uuids(self) -> tuple[str, ...]:
        return tuple(g.uuid for g in self.gpus)

    def refreshed(self, fresh: "Inventory") -> Optional["Inventory"]:
        """``fresh`` if it differs (free memory, foreign processes), None to keep this
        one; also None when the re-read changed source (a passing NVML error must not
        make every queued GPU run unschedulable)."""
        if fresh.source != self.source or fresh.gpus == self.gpus:
            return None
        return fresh

    def gone(self, gpus: tuple[str, ...]) -> str:
        """Why a run holding ``gpus`` cannot start here ("" if it can): a GPU claimed
        for it is no longer in the inventory (not judged when none could be read)."""
        if self.source is GpuSource.NONE:
            return ""
        missing = [g for g in gpus if g not in self.uuids]
        if not missing:
            return ""
        return (f"GPU(s) {', '.join(missing)} claimed for the run are no longer in the "
                f"GPU inventory ({self.source.value}: {len(self.gpus)} GPU(s)); "
                "the worker was not started")
