"""Every `trainer` command that needs the services, run with a TRAINER_HOME where
none runs: each exits non-zero within seconds with one line that names the address
(the gateway's, or the bus's for `tail`) and `trainer up`; no traceback, no hang.
In-process (one import for all), and one real process for the exit path."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from tests.helpers import REPO
from tests.helpers import free_port
from trainer.cli import tail as cli_tail
from trainer.cli.main import cli

pytestmark = pytest.mark.timeout(60)

COMMANDS = (("ls",), ("ls", "--tag", "a", "--tag", "b"), ("show", "r000000000000"),
            ("submit", "--worker", "test-sleep"), ("submit", "--wait"),
            ("cancel", "r000000000000"), ("logs", "r000000000000"),
            ("logs", "-f", "r000000000000"), ("logs", "--stderr", "-f", "rnosuchrun"),
            ("watch",), ("health",), ("tail",), ("tail", "event.", "--count", "1"))


def test_every_command_says_the_stack_is_not_up(trainer_home: str,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    addr = f"127.0.0.1:{free_port()}"
    monkeypatch.setenv("TRAINER_HOME", trainer_home)
    monkeypatch.setenv("TRAINER_GATEWAY_ADDR", addr)
    monkeypatch.setattr(cli_tail, "CONNECT_WAIT_S", 1.0)  # (3 s by default)
    bus = os.path.join(trainer_home, "sock", "bus-out")
    for args in COMMANDS:
        started = time.monotonic()
        got = CliRunner().invoke(cli, list(args))
        took = time.monotonic() - started
        where = bus if args[0] == "tail" else addr
        assert got.exit_code == 1 and isinstance(got.exception, SystemExit), \
            (args, got.output, got.exception)
        assert got.stdout == "" and len(got.stderr.strip().splitlines()) == 1, \
            (args, got.output)
        assert where in got.stderr and "`trainer up`" in got.stderr, (args, got.stderr)
        assert took < 5, (args, took)  # tail waits 1 s for the bus; the others < 1 s
    real = subprocess.run([sys.executable, "-m", "trainer.cli.main", "logs", "-f",
                           "r000000000000"], env={**os.environ}, cwd=REPO,
                          capture_output=True, text=True, timeout=30, check=False)
    assert real.returncode == 1 and addr in real.stderr and "Traceback" not in real.stderr
