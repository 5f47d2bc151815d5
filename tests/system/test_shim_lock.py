"""A run's worker is started at most once: each shim holds the run's lock while it
starts and watches its worker, and a second shim of the same run (a stale spawn
request served after a dispatcher restart) waits for it, then leaves the run alone.
Real shims, forked by a real fork server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from services.dispatcher.forkserver import ForkServer
from core.rundir import EXIT_FILE, WORKER_FILE
from services.dispatcher.spawner import read_json, shim_holds
from tests.helpers import wait_until


def test_two_shims_of_one_run_start_its_worker_once(tmp_path: Path) -> None:
    run_dir = str(tmp_path)
    assert shim_holds(run_dir) is False  # no shim ever ran for it
    argv = ["/bin/sh", "-c", "echo $$ >> starts.txt; sleep 0.3"]
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    forks = ForkServer()
    try:
        forks.spawn(run_dir, argv, env)
        forks.spawn(run_dir, argv, env)  # the same run asked for twice
        wait_until(lambda: read_json(os.path.join(run_dir, WORKER_FILE)), 10,
                   message="worker.json")
        assert shim_holds(run_dir) is True
        exited: list[dict[str, Any]] = []
        def both_ended() -> bool:
            exited.extend(n for n in forks.notices() if "exited" in n)
            return len(exited) == 2
        wait_until(both_ended, 10, message="both shims to end")
    finally:
        forks.close()
    assert (tmp_path / "starts.txt").read_text().count("\n") == 1
    assert (read_json(os.path.join(run_dir, EXIT_FILE)) or {}).get("exit_code") == 0
    assert shim_holds(run_dir) is False  # the lock goes with the shim
