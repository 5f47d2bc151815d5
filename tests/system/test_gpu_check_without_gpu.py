"""The GPU check (scripts/gpu_check.py) and its worker test-gpu-hold where there is no
GPU: the check says so and exits 3 before it starts anything; the worker fails
cleanly. (With stand-in GPU libraries: tests/system/test_gpu_check.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.dispatcher.shell.gpuread import read_inventory
from tests.helpers import REPO

pytestmark = pytest.mark.timeout(30)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return {**env, **extra}


@pytest.mark.skipif(bool(read_inventory(0).gpus), reason="this machine has an NVIDIA GPU")
def test_without_a_gpu_the_check_says_so_and_exits_3() -> None:
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "gpu_check.py")],
                            env=_env(TRAINER_FAKE_GPUS="2"), cwd=REPO, capture_output=True,
                            text=True, timeout=20, check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "pynvml inventory (what the dispatcher reads): source=none, 0 GPU(s)" in result.stdout
    assert "gpu check: no NVIDIA GPU here" in result.stdout
    assert "nothing to check (exit 3)" in result.stdout
    assert result.stderr == ""           # no traceback, no warning
    assert "TRAINER_HOME=" not in result.stdout   # nothing was started


def test_gpu_hold_worker_fails_cleanly_without_a_visible_gpu(tmp_path: Path) -> None:
    config = str(tmp_path / "config.json")
    with open(config, "w", encoding="utf-8") as fh:
        json.dump({"worker": "test-gpu-hold", "hyperparameters": {"gib": 1}}, fh)
    result = subprocess.run([sys.executable, "-m", "worker.runner", "test-gpu-hold", "--run-id",
                             "t1", "--config", config],
                            env=_env(TRAINER_RUN_DIR=str(tmp_path), CUDA_VISIBLE_DEVICES="",
                                     TRAINER_TEST_WORKERS="1"),
                            cwd=tmp_path, capture_output=True, text=True, timeout=20,
                            check=False)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stderr.startswith("test-gpu-hold: no CUDA device visible or usable "
                                    "(CUDA_VISIBLE_DEVICES='')"), result.stderr
    assert "Traceback" not in result.stderr
    with open(tmp_path / "gpu_seen.json", encoding="utf-8") as fh:
        seen = json.load(fh)
    assert seen["state"] == "failed" and seen["cuda_visible_devices"] == ""
    assert seen["allocated_bytes"] == 0 and seen["requested_bytes"] == 2**30
    assert {"torch", "driver", "nvidia_smi", "pid"} <= set(seen)
    with open(tmp_path / "result.json", encoding="utf-8") as fh:
        record = json.load(fh)
    assert record["status"] == "failed" and "no CUDA device" in record["reason"]
