"""A whole system under supervisord, driven through the `trainer` command."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Iterator

import pytest

from tests.helpers import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class System:
    def __init__(self, home: str) -> None:
        self.home = home
        self.env = {**os.environ, "TRAINER_HOME": home,
                    "TRAINER_GATEWAY_ADDR": f"127.0.0.1:{free_port()}",
                    "TRAINER_STATUS_INTERVAL": "0.5", "TRAINER_CPU_SLOTS": "2",
                    "TRAINER_TEST_WORKERS": "1",
                    "PYTHONUNBUFFERED": "1"}

    def trainer(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=self.env,
                              cwd=REPO, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def ok(self, *args: str, timeout: float = 60) -> str:
        result = self.trainer(*args, timeout=timeout)
        assert result.returncode == 0, f"trainer {' '.join(args)}: {result.stdout}{result.stderr}"
        return result.stdout

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "supervisor.supervisorctl", "-c",
                               os.path.join(REPO, "supervisor.conf"), *args], env=self.env,
                              capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def system(trainer_home: str) -> Iterator[System]:
    s = System(trainer_home)
    try:
        s.ok("up", timeout=90)
        yield s
    finally:
        s.trainer("down", timeout=90)
