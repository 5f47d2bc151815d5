"""`trainer up` creates a missing TRAINER_HOME readable by its owner only (its logs,
sockets, token and event log live there). The services are not started: the test
stands in for supervisord, which `up` only talks to."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from trainer.cli import stack

pytestmark = pytest.mark.timeout(30)


def test_up_creates_a_missing_home_for_its_owner_only(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "new" / "home"
    monkeypatch.setenv("TRAINER_HOME", str(home))
    monkeypatch.setattr(stack, "supervisord_pid", lambda h: 1)  # "already running"
    monkeypatch.setattr(stack, "health_once", lambda: None)       # nobody answers
    monkeypatch.setattr(stack, "supervisor", lambda *a: subprocess.CompletedProcess(a, 0, "", ""))
    got = CliRunner().invoke(stack.up, ["--timeout", "0"])
    assert got.exit_code == 1  # nothing came up, as arranged
    assert os.stat(home).st_mode & 0o777 == 0o700
    assert os.stat(home / "logs").st_mode & 0o777 == 0o700
