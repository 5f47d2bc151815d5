"""A whole system under supervisord (``trainer up``), driven through the `trainer`
command as a user drives it (the ``system`` fixture of tests/system/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO, free_port


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
