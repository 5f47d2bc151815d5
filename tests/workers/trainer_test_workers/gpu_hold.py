"""test-gpu-hold: records what GPUs the worker sees, takes GPU memory and holds it
until it is stopped (scripts/gpu_check.py, the GPU check of issue 3).

Parameters (the run config's ``hyperparameters``):

- ``gib`` (default 2): GiB of device memory to allocate and hold; 0 holds nothing
  (the check's GPU-less smoke mode).
- ``via`` (default ``auto``): ``torch`` (``torch.empty(..., device="cuda")``),
  ``libcuda`` (``cuMemAlloc`` through ctypes on the driver library) or ``auto``
  (torch when it imports, else libcuda). Plain device allocations, never managed memory.

It writes ``gpu_seen.json`` in the run directory (atomically): ``state`` (``holding``,
``failed``, then ``released``), ``cuda_visible_devices``, ``pid``, ``nvidia_smi``
(``nvidia-smi -L``, which lists every GPU whatever CUDA_VISIBLE_DEVICES says),
``torch`` and ``driver`` (what each sees: ``device_count`` and ``devices`` with
``name`` and ``uuid``, or ``error``), ``allocated_bytes``, ``allocated_via``. Then it
heartbeats until SIGTERM (the SDK's stop flag), frees the memory and exits 0.

With ``gib`` > 0 and no CUDA device visible it exits 3 with
``test-gpu-hold: no CUDA device visible ...`` on stderr and ``failed`` in result.json.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from typing import Any, Callable, Optional

EXIT_NO_GPU = 3
SEEN_FILE = "gpu_seen.json"


class GpuUnavailable(Exception):
    pass


def _write_seen(run_dir: str, seen: dict[str, Any]) -> None:
    path = os.path.join(run_dir, SEEN_FILE)
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(seen, fh, indent=1, sort_keys=True)
    os.replace(path + ".tmp", path)


def _nvidia_smi() -> dict[str, Any]:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30,
                             check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"returncode": out.returncode, "lines": out.stdout.splitlines(),
            "stderr": out.stderr.strip()[-500:]}


def _torch_view() -> dict[str, Any]:
    try:
        import torch
    except ImportError as exc:
        return {"error": f"torch does not import: {exc}"}
    try:
        count = torch.cuda.device_count()
        devices = []
        for i in range(count):
            props = torch.cuda.get_device_properties(i)
            uuid = getattr(props, "uuid", None)
            devices.append({"index": i, "name": props.name,
                            "uuid": str(uuid) if uuid is not None else None,
                            "total_memory": int(props.total_memory)})
        return {"version": torch.__version__, "device_count": count, "devices": devices}
    except Exception as exc:  # noqa: BLE001 - any CUDA error is what the check reports
        return {"version": torch.__version__, "error": f"{type(exc).__name__}: {exc}"}


class Driver:
    """The CUDA driver API (libcuda) through ctypes: enough to list devices and take
    plain device memory with cuMemAlloc."""

    def __init__(self) -> None:
        self.lib = ctypes.CDLL("libcuda.so.1")
        self._call("cuInit", ctypes.c_uint(0))

    def _call(self, name: str, *args: Any) -> None:
        rc = getattr(self.lib, name)(*args)
        if rc != 0:
            text = ctypes.c_char_p()
            self.lib.cuGetErrorName(rc, ctypes.byref(text))
            raise GpuUnavailable(f"{name} failed: CUDA error {rc} "
                                 f"({(text.value or b'?').decode()})")

    def devices(self) -> list[dict[str, Any]]:
        count = ctypes.c_int()
        self._call("cuDeviceGetCount", ctypes.byref(count))
        out = []
        for i in range(count.value):
            dev = ctypes.c_int()
            self._call("cuDeviceGet", ctypes.byref(dev), i)
            name = ctypes.create_string_buffer(256)
            self._call("cuDeviceGetName", name, 256, dev)
            raw = (ctypes.c_ubyte * 16)()
            uuid_call = "cuDeviceGetUuid_v2" if hasattr(self.lib, "cuDeviceGetUuid_v2") \
                else "cuDeviceGetUuid"
            self._call(uuid_call, raw, dev)
            h = bytes(raw).hex()
            out.append({"index": i, "name": name.value.decode(),
                        "uuid": f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"})
        return out

    def allocate(self, nbytes: int) -> Callable[[], None]:
        """cuMemAlloc ``nbytes`` on device 0 and write every byte; returns the release."""
        dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
        self._call("cuDeviceGet", ctypes.byref(dev), 0)
        self._call("cuDevicePrimaryCtxRetain", ctypes.byref(ctx), dev)
        self._call("cuCtxSetCurrent", ctx)
        self._call("cuMemAlloc_v2", ctypes.byref(ptr), ctypes.c_size_t(nbytes))
        self._call("cuMemsetD8_v2", ptr, ctypes.c_ubyte(1), ctypes.c_size_t(nbytes))
        self._call("cuCtxSynchronize")

        def release() -> None:
            self._call("cuMemFree_v2", ptr)
            self._call("cuDevicePrimaryCtxRelease_v2", dev)
        return release


def _driver_view() -> tuple[Optional[Driver], dict[str, Any]]:
    try:
        driver = Driver()
        devices = driver.devices()
    except (OSError, AttributeError, GpuUnavailable) as exc:  # no library, no symbol, CUDA error
        return None, {"error": f"{type(exc).__name__}: {exc}"}
    return driver, {"device_count": len(devices), "devices": devices}


def _allocate(via: str, nbytes: int, seen: dict[str, Any],
              driver: Optional[Driver]) -> Callable[[], None]:
    if via == "auto":
        via = "libcuda" if "error" in seen["torch"] else "torch"
    view = seen["torch" if via == "torch" else "driver"]
    if "error" in view or not view.get("device_count"):
        raise GpuUnavailable(f"{via} sees no device: {view.get('error', '0 devices')}")
    seen["allocated_via"] = via
    if via == "torch":
        import torch
        block = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        block.fill_(1)
        torch.cuda.synchronize()
        seen["torch_memory_reserved"] = int(torch.cuda.memory_reserved())
        held = [block]

        def release() -> None:
            held.clear()
            torch.cuda.empty_cache()
        return release
    assert driver is not None
    return driver.allocate(nbytes)


def _params() -> dict[str, Any]:
    path = sys.argv[sys.argv.index("--config") + 1]
    with open(path, encoding="utf-8") as fh:
        return json.load(fh).get("hyperparameters", {})


def main() -> int:
    from worker.sdk import Run, catch_sigterm
    catch_sigterm()  # before torch's import: a cancel meanwhile is not lost
    p = _params()
    nbytes = int(float(p.get("gib", 2)) * 2**30)
    via = str(p.get("via", "auto"))
    with Run.from_env() as run:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        seen: dict[str, Any] = {"state": "probing", "pid": os.getpid(),
                                "cuda_visible_devices": visible, "requested_bytes": nbytes,
                                "allocated_bytes": 0, "allocated_via": None}
        seen["nvidia_smi"] = _nvidia_smi()
        seen["torch"] = _torch_view() if via in ("auto", "torch") else {"error": "not used"}
        driver, seen["driver"] = _driver_view()
        release: Optional[Callable[[], None]] = None
        if nbytes > 0:
            try:
                release = _allocate(via, nbytes, seen, driver)
            except Exception as exc:  # noqa: BLE001 - GpuUnavailable, torch/CUDA errors
                why = (f"test-gpu-hold: no CUDA device visible or usable "
                       f"(CUDA_VISIBLE_DEVICES={visible!r}): {exc}")
                seen.update(state="failed", error=why)
                _write_seen(run.run_dir, seen)
                print(why, file=sys.stderr, flush=True)
                run.finish("failed", why)
                return EXIT_NO_GPU
        seen.update(state="holding", allocated_bytes=nbytes if release else 0)
        _write_seen(run.run_dir, seen)
        print(f"holding {nbytes} bytes via {seen['allocated_via']}", flush=True)
        beats = 0
        run.progress(step=beats, held_bytes=seen["allocated_bytes"])
        while not run.wait_for_stop(0.5):
            beats += 1
            run.progress(step=beats, held_bytes=seen["allocated_bytes"])
        if release is not None:
            release()
        seen["state"] = "released"
        _write_seen(run.run_dir, seen)
        print("released", flush=True)
    return 0
