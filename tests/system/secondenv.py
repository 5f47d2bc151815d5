"""A second Python environment for the tests of ``python_env`` (the ``second_env``
fixture, tests/system/conftest.py): a venv made with ``python -m venv --without-pip``
(never --system-site-packages: it must not see the orchestrator's packages), into
which the main venv's pip installs, offline, the SDK's wheel (sdk/pyproject.toml) and
the wheel of tests/envworker (the worker ``env-probe``, which exists only there), with
the SDK's dependencies (pyzmq, msgpack, tensorboardX and theirs) as wheels of the
versions installed here (downloaded once into
.venv/.sdk-wheels, then reused)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from tests.helpers import REPO

WHEELHOUSE = Path(REPO) / ".venv" / ".sdk-wheels"   # the SDK's deps: kept between runs
# sdk/pyproject.toml's dependencies and theirs (tensorboardX needs numpy, packaging and
# protobuf), the versions installed here
SDK_DEPENDENCIES = ("pyzmq", "msgpack", "tensorboardX", "google-crc32c", "numpy",
                    "packaging", "protobuf")
SDK_PACKAGES = ("core", "bus", "runtime", "worker")
TIMEOUT_S = 180


class Unavailable(Exception):
    """The dependencies' wheels cannot be had (no index reachable, no wheel cached)."""


def _pip(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q",
                           *args], capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise RuntimeError(f"pip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")


def dependency_wheels() -> Path:
    """The SDK's dependencies, the versions installed here, as wheels in WHEELHOUSE."""
    have = [p.name.lower() for p in WHEELHOUSE.glob("*.whl")] if WHEELHOUSE.exists() else []
    missing = []
    for name in SDK_DEPENDENCIES:   # a wheel's name: the project's, - . _ as _, lower case
        version = metadata.version(name)
        prefix = f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"
        if not any(h.startswith(prefix) for h in have):
            missing.append(f"{name}=={version}")
    if missing:
        try:
            _pip("download", "--no-deps", "--only-binary=:all:", "-d", str(WHEELHOUSE),
                 *missing)
        except RuntimeError as exc:
            raise Unavailable(f"cannot download {missing}: {exc}") from None
    return WHEELHOUSE


def build(root: Path) -> Path:
    """The second environment under ``root``; returns its interpreter (bin/python)."""
    wheels = dependency_wheels()
    src = root / "src"
    for name in SDK_PACKAGES:   # a copy: the build writes its egg-info beside the sources
        shutil.copytree(Path(REPO) / name, src / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(Path(REPO) / "sdk", src / "sdk", ignore=shutil.ignore_patterns("build"))
    shutil.copytree(Path(REPO) / "tests" / "envworker", src / "envworker",
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    built = root / "wheels"
    _pip("wheel", "--no-index", "--no-deps", "--no-build-isolation", "-w", str(built),
         str(src / "sdk"), str(src / "envworker"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=TIMEOUT_S)
    python = venv / "bin" / "python"
    _pip("--python", str(python), "install", "--no-index", "--find-links", str(built),
         "--find-links", str(wheels), "trainer-env-worker")
    return python


def clean_env() -> dict[str, str]:
    """This process's environment without what would point another Python at ours."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
