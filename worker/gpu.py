"""GPU memory of the run's own devices, for heartbeats, through NVML (the
``nvidia-ml-py`` package provides ``pynvml``).

Never raises: no library, no driver, no device, a device that is not visible or any
NVML error all read as None. The devices are those in ``CUDA_VISIBLE_DEVICES`` (GPU
UUIDs as the dispatcher sets them, or indices); an empty value means none, an unset
one means every device. The figure is the memory in use on those devices: a run owns
its GPUs, so that is the run's footprint (per-process figures are not visible inside
most containers).
"""

from __future__ import annotations

from typing import Any, Optional


class GpuProbe:
    def __init__(self, visible: Optional[str]) -> None:
        self.visible = visible
        self._nvml: Any = None
        self._handles: Optional[list[Any]] = None   # None: not initialised yet

    def memory_used(self) -> Optional[int]:
        """Bytes in use on the visible devices, or None when there is nothing to read."""
        if self.visible is not None and not self.visible.strip():
            return None
        if self._handles is None:
            self._handles = self._open()
        if not self._handles:
            return None
        try:
            return sum(int(self._nvml.nvmlDeviceGetMemoryInfo(h).used) for h in self._handles)
        except Exception:  # noqa: BLE001 - a heartbeat must never fail for NVML
            return None

    def _open(self) -> list[Any]:
        try:
            import pynvml
            pynvml.nvmlInit()
        except Exception:  # noqa: BLE001 - ImportError, NVMLError_LibraryNotFound, ...
            return []
        self._nvml = pynvml
        handles = []
        try:
            if self.visible is None:
                ids: list[str] = [str(i) for i in range(pynvml.nvmlDeviceGetCount())]
            else:
                ids = [part.strip() for part in self.visible.split(",") if part.strip()]
            for ident in ids:
                try:
                    if ident.isdigit():
                        handles.append(pynvml.nvmlDeviceGetHandleByIndex(int(ident)))
                    else:
                        handles.append(pynvml.nvmlDeviceGetHandleByUUID(ident))
                except Exception:  # noqa: BLE001 - a fake or vanished device
                    continue
        except Exception:  # noqa: BLE001
            handles = []
        if not handles:
            self.close()
        return handles

    def close(self) -> None:
        self._handles = []
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:  # noqa: BLE001
                pass
            self._nvml = None
