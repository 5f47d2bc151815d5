"""The GPU inventory, from pynvml. No driver or no device means zero GPUs: a normal
state, logged once. TRAINER_FAKE_GPUS=N declares N fake GPUs (tests, development)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

if TYPE_CHECKING:
    from services.dispatcher.service import DispatcherService

FAKE_GPU_MEMORY = 16 * 1024**3


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_total: int
    memory_free: int
    foreign_pids: tuple[int, ...] = ()   # processes on it that we did not start

    def to_map(self) -> dict:
        return {"index": self.index, "uuid": self.uuid, "name": self.name,
                "memory_total": self.memory_total, "memory_free": self.memory_free,
                "foreign_pids": list(self.foreign_pids)}


@dataclass
class Inventory:
    gpus: list[Gpu] = field(default_factory=list)
    source: str = "none"      # nvml | fake | none
    error: str = ""

    @property
    def uuids(self) -> list[str]:
        return [g.uuid for g in self.gpus]


def fake_inventory(count: int) -> Inventory:
    return Inventory([Gpu(i, f"GPU-fake-{i:04d}", "Fake GPU", FAKE_GPU_MEMORY, FAKE_GPU_MEMORY)
                      for i in range(count)], source="fake")


def refreshed(current: Inventory, fresh: Inventory) -> Optional[Inventory]:
    """The inventory to use after a re-read: ``fresh`` if it differs (free memory,
    processes we did not start), None to keep ``current``; also None when the re-read
    failed (a passing NVML error must not make every queued GPU run unschedulable)."""
    if fresh.source != current.source or fresh.gpus == current.gpus:
        return None
    return fresh


def read_inventory(fake_gpus: int, our_pids: set[int] = frozenset()) -> Inventory:  # type: ignore[assignment]
    if fake_gpus > 0:
        return fake_inventory(fake_gpus)
    try:
        import pynvml
    except ImportError as exc:
        return Inventory(source="none", error=f"pynvml is not installed: {exc}")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Inventory(source="none", error=f"no NVIDIA driver or device: {exc}")
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            uuid = pynvml.nvmlDeviceGetUUID(h)
            name = pynvml.nvmlDeviceGetName(h)
            try:
                procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                foreign = tuple(p.pid for p in procs if p.pid not in our_pids)
            except pynvml.NVMLError:
                foreign = ()
            gpus.append(Gpu(i, _text(uuid), _text(name), int(mem.total), int(mem.free),
                            foreign))
        return Inventory(gpus, source="nvml")
    except pynvml.NVMLError as exc:
        return Inventory(source="none", error=f"NVML query failed: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class BackgroundRead:
    """One inventory read in a daemon thread: a slow or hung NVML call blocks neither
    the dispatcher's loop nor its exit."""

    def __init__(self, read: Callable[[], Inventory]) -> None:
        self.result: Optional[Inventory] = None
        self.error: Optional[BaseException] = None
        self._done = threading.Event()
        threading.Thread(target=self._run, args=(read,), name="gpu-read", daemon=True).start()

    def _run(self, read: Callable[[], Inventory]) -> None:
        try:
            self.result = read()
        except Exception as exc:  # noqa: BLE001 - reported by the loop, which keeps going
            self.error = exc
        finally:
            self._done.set()

    def done(self) -> bool:
        return self._done.is_set()


def refresh_in_background(svc: "DispatcherService", start: bool) -> None:
    """While a run waits for GPUs: their free memory and the processes on them that
    are not of our runs, read again (both change under us), in a thread. A finished
    read is applied here, on the loop; with ``start``, the next one begins."""
    from services.dispatcher import spawner
    read = svc.gpu_read
    if read is not None and read.done():
        svc.gpu_read = None
        if read.error is not None:  # a bug in the read: keep what we have, say so
            svc.log.error("gpus.read_failed", error=repr(read.error))
        fresh = refreshed(svc.inventory, read.result) if read.result is not None else None
        if fresh is not None:
            svc.inventory, svc.dirty = fresh, True
    if not start or svc.read_gpus is None or svc.gpu_read is not None or \
            not any(p.gpus for p in svc.pending.values()):
        return
    pgids, reader = {r.pgid for r in svc.active.values() if r.pgid}, svc.read_gpus
    svc.gpu_read = BackgroundRead(lambda: reader(spawner.group_members(pgids)))
