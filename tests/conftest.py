"""Shared by every tier: a temporary TRAINER_HOME, its service environment and settings,
a zmq context that fails on leaks; and the tier markers, applied by folder.

The tiers (README.md, "Tests"): tests/unit opens no socket and starts no process
(checked by tests/unit/conftest.py); tests/integration runs the code under test inside
the test process, with real sockets (zmq inproc/ipc) and stand-in processes; tests/system
starts the programs as users do (``python -m ...``: the services, workers, the fork
server, the CLI, the GUI against a stack). ``pytest -m unit`` is the fast tier."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Iterator

import pytest
import zmq

from core.settings import Settings

TESTS = Path(__file__).resolve().parent
# tests/<folder>/... -> the marker its tests get; the files at the top (test_docs.py)
# read files and run nothing, so they count as unit tests.
TIERS = {"unit": "unit", "integration": "integration", "system": "system"}


def tier_of(path: Path) -> str:
    parts = path.resolve().relative_to(TESTS).parts
    return TIERS.get(parts[0], "unit") if len(parts) > 1 else "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(Path(item.path)))


@pytest.fixture
def trainer_home() -> Iterator[str]:
    # Short path under /tmp: ipc socket paths are limited to ~107 bytes.
    home = tempfile.mkdtemp(prefix="th-", dir="/tmp")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def service_env(trainer_home: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(TRAINER_HOME=trainer_home, PYTHONUNBUFFERED="1", TRAINER_STATUS_INTERVAL="0.2",
               TRAINER_TEST_WORKERS="1")  # tests/workers' test-sleep, test-mark, ...
    return env


@pytest.fixture
def settings(service_env: dict[str, str]) -> Settings:
    return Settings.from_env(service_env)


@pytest.fixture
def ctx() -> Iterator[zmq.Context]:
    """A context whose sockets must all be closed by the test (else it fails)."""
    context = zmq.Context()
    yield context
    done = threading.Event()
    def term() -> None:
        context.term()
        done.set()
    threading.Thread(target=term, daemon=True).start()
    if not done.wait(5):
        context.destroy(linger=0)
        pytest.fail("a zmq socket was left open by the test")


