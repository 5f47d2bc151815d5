"""The GPU inventory, read from pynvml (or faked), and re-read in the background.

No driver or no device means zero GPUs: a normal state, logged once at start-up.
TRAINER_FAKE_GPUS=N declares N fake GPUs (tests, development). A re-read (free memory,
processes on the GPUs that are not of our runs) runs in a daemon thread, so that a
slow or hung NVML call blocks neither the loop nor its exit; its result comes back
to the loop as a decide.inputs.GpusRead.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from services.dispatcher.decide.gpus import Gpu, GpuSource, Inventory
from services.dispatcher.decide.inputs import GpusRead

FAKE_GPU_MEMORY = 16 * 1024**3


def fake_inventory(count: int) -> Inventory:
    return Inventory(tuple(Gpu(i, f"GPU-fake-{i:04d}", "Fake GPU", FAKE_GPU_MEMORY,
                               FAKE_GPU_MEMORY) for i in range(count)), GpuSource.FAKE)


def read_inventory(fake_gpus: int, our_pids: frozenset[int] = frozenset()) -> Inventory:
    if fake_gpus > 0:
        return fake_inventory(fake_gpus)
    try:
        import pynvml
    except ImportError as exc:
        return Inventory(error=f"pynvml is not installed: {exc}")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return Inventory(error=f"no NVIDIA driver or device: {exc}")
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            try:
                procs = pynvml.nvmlDeviceGetComputeRunningProcesses(h)
                foreign = tuple(p.pid for p in procs if p.pid not in our_pids)
            except pynvml.NVMLError:
                foreign = ()
            try:
                busy: Optional[float] = float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu)
            except pynvml.NVMLError:
                busy = None   # not supported on this device: gpu_idle does not judge it
            gpus.append(Gpu(i, _text(pynvml.nvmlDeviceGetUUID(h)),
                            _text(pynvml.nvmlDeviceGetName(h)), int(mem.total),
                            int(mem.free), foreign, busy))
        return Inventory(tuple(gpus), GpuSource.NVML)
    except pynvml.NVMLError as exc:
        return Inventory(error=f"NVML query failed: {exc}")
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class GpuReader:
    """At most one re-read in flight; ``result()`` hands its GpusRead to the loop once."""

    def __init__(self, read: Optional[Callable[[frozenset[int]], Inventory]]) -> None:
        self.read = read     # None: nothing to re-read (fake GPUs)
        self._done = threading.Event()
        self._result: Optional[GpusRead] = None
        self._busy = False

    def start(self, our_pids: frozenset[int]) -> Optional[GpusRead]:
        """Begin a re-read; with nothing to re-read, the answer at once (the inventory
        is kept)."""
        if self.read is None:
            return GpusRead(None)
        if self._busy:
            return None
        self._busy = True
        self._done.clear()
        threading.Thread(target=self._run, args=(self.read, our_pids), name="gpu-read",
                         daemon=True).start()
        return None

    def _run(self, read: Callable[[frozenset[int]], Inventory], pids: frozenset[int]) -> None:
        try:
            self._result = GpusRead(read(pids))
        except Exception as exc:  # noqa: BLE001 - reported by the loop, which keeps going
            self._result = GpusRead(None, repr(exc))
        finally:
            self._done.set()

    def result(self) -> Optional[GpusRead]:
        if not self._busy or not self._done.is_set():
            return None
        self._busy = False
        return self._result
