"""scripts/gpu_check.py end to end on a machine without a GPU: the real services, the
test-gpu-hold worker, the cancel and the clean-up. ``--without-gpu`` as it is; the
GPU path with tests/fixtures/fake_cuda (stand-ins for pynvml and torch that emulate
one GPU) first on PYTHONPATH. The real check needs an NVIDIA machine (docs/WORKERS.md)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.timeout(120)
FAKE_CUDA = os.path.join(REPO, "tests", "fixtures", "fake_cuda")
FAKE_UUID = "GPU-0fa6e000-0000-4000-8000-00000000c0de"


def gpu_check(home: str, *args: str, fake_cuda: str = "") -> tuple[int, str, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    if fake_cuda:
        env.update(FAKE_CUDA_DIR=fake_cuda, PYTHONPATH=os.pathsep.join(
            p for p in (FAKE_CUDA, env.get("PYTHONPATH", "")) if p))
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "gpu_check.py"),
                             "--home", home, *args], env=env, cwd=REPO, capture_output=True,
                            text=True, timeout=100, check=False)
    out = result.stdout + result.stderr
    with open(os.path.join(home, "gpu_check.json"), encoding="utf-8") as fh:
        report = json.load(fh)
    assert "services stopped, exit codes {'dispatcher': 0, 'registry': 0, 'bus': 0}" in out, out
    assert "Traceback" not in out, out
    return result.returncode, out, report


def statuses(report: dict) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_without_gpu_runs_the_whole_path_and_stops_everything(trainer_home: str) -> None:
    code, out, report = gpu_check(trainer_home, "--without-gpu")
    assert code == 0, out
    checks = statuses(report)
    for name in ("services up", "worker running and holding", "no GPU given", "heartbeat",
                 "cancelled", "worker released and exited cleanly", "worker processes gone",
                 "GPU slot free in the registry"):
        assert checks.get(name) == "PASS", out
    assert checks["GPU memory taken"] == "SKIP" and report["failed"] == 0
    assert "gpu check PASSED" in out and f"logs: {trainer_home}/logs/" in out


def test_gpu_path_with_an_emulated_gpu(trainer_home: str, tmp_path: Path) -> None:
    code, out, report = gpu_check(trainer_home, "--gib", "1", fake_cuda=str(tmp_path))
    assert code == 0, out
    checks = statuses(report)
    for name in ("dispatcher inventory", "registry claim",
                 "CUDA_VISIBLE_DEVICES is the claimed GPU", "worker sees exactly 1 GPU (torch)",
                 "worker's GPU is the claimed one", "GPU memory taken (NVML)",
                 "worker among compute processes", "heartbeat", "cancelled",
                 "GPU memory free again (NVML)", "worker not on the GPU any more",
                 "GPU slot free in the registry"):
        assert checks.get(name) == "PASS", f"{name}: {out}"
    assert report["worker_seen"]["cuda_visible_devices"] == FAKE_UUID
    assert report["inventory_source"] == "nvml" and report["failed"] == 0


def test_a_failing_worker_fails_the_check_and_still_stops_everything(
        trainer_home: str, tmp_path: Path) -> None:
    # the emulated GPU has no libcuda: the worker cannot allocate and exits 3
    code, out, report = gpu_check(trainer_home, "--gib", "1", "--via", "libcuda",
                                  fake_cuda=str(tmp_path))
    assert code == 1, out
    assert statuses(report)["worker running and holding"] == "FAIL"
    assert "test-gpu-hold: no CUDA device visible or usable" in out
    assert "gpu check FAILED" in out
