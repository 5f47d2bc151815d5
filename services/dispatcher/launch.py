"""Preparing a run for its worker: the run directory, the config file, the command
and the environment. Only entry points of the group ``trainer.workers`` are run (and of
``trainer.test_workers`` where TRAINER_TEST_WORKERS=1: the test suite)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from core.rundir import CONFIG_FILE
from core.settings import Settings
from runtime.workers import WorkerCatalog, groups
from services.dispatcher import spawner


class UnknownWorker(Exception):
    """The run names a worker that is not a registered entry point."""


# Read again when asked and 5 s old: a worker installed or uninstalled since the
# dispatcher started is seen within seconds (a scan costs ~3 ms).
# One per value of TRAINER_TEST_WORKERS (the settings come with each call).
_catalogs = {flag: WorkerCatalog(test_workers=flag) for flag in (False, True)}


def run_dir(settings: Settings, run_id: str) -> str:
    return os.path.join(settings.runs_dir, run_id)


def prepare(settings: Settings, run: dict[str, Any], gpus: list[str]) -> tuple[str, list[str],
                                                                               dict[str, str]]:
    """(run directory, argv, environment) for the run's worker."""
    config = run["config"]
    name = config.get("worker", "cartpole")
    if not _catalogs[settings.test_workers](name):
        raise UnknownWorker(f"worker {name!r} is not a registered entry point in "
                            f"{' or '.join(groups(settings.test_workers))}")
    path = run_dir(settings, run["run_id"])
    os.makedirs(path, mode=0o700, exist_ok=True)
    config_path = os.path.join(path, CONFIG_FILE)
    with open(config_path, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
    argv = [sys.executable, "-m", "worker.runner", name, "--run-id", run["run_id"],
            "--config", config_path]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    env.update({
        spawner.RUN_ID_VAR: run["run_id"], "TRAINER_RUN_DIR": path,
        "TRAINER_BUS_PUB": settings.bus_pub, "TRAINER_HOME": settings.home,
        "TRAINER_HEARTBEAT_INTERVAL": str(config.get("heartbeat_interval_s", 1.0)),
        "CUDA_VISIBLE_DEVICES": ",".join(gpus), "PYTHONUNBUFFERED": "1",
    })
    if settings.test_workers:
        env["TRAINER_TEST_WORKERS"] = "1"  # worker.runner looks in the same groups
    return path, argv, env
