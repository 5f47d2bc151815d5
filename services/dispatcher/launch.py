"""Preparing a run for its worker: the run directory, the config file, the command
and the environment. Only entry points of the group ``trainer.workers`` are run (and of
``trainer.test_workers`` where TRAINER_TEST_WORKERS=1: the test suite)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from core.rundir import (CONFIG_FILE, EXIT_FILE, KILL_FILE, RESULT_FILE, SHIM_FILE,
                         WORKER_FILE)
from bus.curvekeys import KeyStore
from core.exposure import is_tcp
from core.settings import Settings
from runtime.workers import WorkerCatalog, groups
from services.dispatcher import procs, spawner


class UnknownWorker(Exception):
    """The run names a worker that is not a registered entry point."""


# Read again when asked and 5 s old: a worker installed or uninstalled since the
# dispatcher started is seen within seconds (a scan costs ~3 ms).
# One per value of TRAINER_TEST_WORKERS (the settings come with each call).
_catalogs = {flag: WorkerCatalog(test_workers=flag) for flag in (False, True)}


# Set to the run's resources.cpu_slots in its worker's environment, over any value the
# dispatcher's environment gives them: the run's slots win (docs/WORKERS.md, Resources).
# torch reads OMP_NUM_THREADS (its intra-op threads); numpy's BLAS (OpenBLAS, MKL,
# Accelerate), numexpr and OpenMP code read theirs.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
               "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


ATTEMPT_FILES = (WORKER_FILE, EXIT_FILE, KILL_FILE, SHIM_FILE, RESULT_FILE)


def run_dir(settings: Settings, run_id: str) -> str:
    return os.path.join(settings.runs_dir, run_id)


def set_aside(path: str, attempt: int) -> None:
    """What attempt ``attempt`` left in the run folder (its shim's worker and exit
    records, its kill record, its result) moved to ``attempt-<n>/``, so that the next
    attempt's shim starts (it leaves a run whose exit record is there alone) and its
    end is read from its own records. Logs, metrics and the manifest go on."""
    aside = os.path.join(path, f"attempt-{attempt}")
    for name in ATTEMPT_FILES:
        src = os.path.join(path, name)
        if os.path.exists(src):
            os.makedirs(aside, mode=0o700, exist_ok=True)
            os.replace(src, os.path.join(aside, name))


def prepare(settings: Settings, run: dict[str, Any], gpus: list[str], attempt: int = 1,
            resume_from: str = "", python: str = "") -> tuple[str, list[str], dict[str, str]]:
    """(run directory, argv, environment) for the worker of the run's ``attempt``
    (TRAINER_ATTEMPT; TRAINER_RESUME_CHECKPOINT: the absolute path of ``resume_from``,
    a checkpoint in the run folder, when it resumes). ``python``: the interpreter of
    the run's python_env (its workers were checked there by the registry at submit;
    "": this one's, whose workers are checked here). The thread variables are the run's
    cpu_slots unless its ``env_vars`` set them; the other variables set here for every
    worker win over ``env_vars``."""
    config = run["config"]
    name = config.get("worker", "cartpole")
    if python:
        if not os.access(python, os.X_OK) or not os.path.isfile(python):
            raise UnknownWorker(f"the interpreter {python} of python_env "
                                f"{config.get('python_env')!r} is not an executable file "
                                "(moved or deleted? trainer env add it again)")
    elif not _catalogs[settings.test_workers](name):
        raise UnknownWorker(f"worker {name!r} is not a registered entry point in "
                            f"{' or '.join(groups(settings.test_workers))}")
    path = run_dir(settings, run["run_id"])
    os.makedirs(path, mode=0o700, exist_ok=True)
    config_path = os.path.join(path, CONFIG_FILE)
    with open(config_path, "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=2, sort_keys=True)
    argv = [python or sys.executable, "-m", "worker.runner", name, "--run-id", run["run_id"],
            "--config", config_path]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINER_")}
    if python:
        # Another interpreter: no variable of ours that chooses what Python imports.
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
            env.pop(var, None)
    # The run's slots as thread counts (over the dispatcher's own values), then what
    # the run's env_vars say (a run that wants 4 OpenMP threads on 1 slot may).
    slots = str(config.get("resources", {}).get("cpu_slots", 1))
    env.update(dict.fromkeys(THREAD_VARS, slots))
    env.update(config.get("env_vars") or {})
    env.update({
        procs.RUN_ID_VAR: run["run_id"], "TRAINER_RUN_DIR": path,
        "TRAINER_BUS_PUB": settings.bus_pub, "TRAINER_HOME": settings.home,
        "TRAINER_HEARTBEAT_INTERVAL": str(config.get("heartbeat_interval_s", 1.0)),
        "CUDA_VISIBLE_DEVICES": ",".join(gpus), "PYTHONUNBUFFERED": "1",
        spawner.ATTEMPT_VAR: str(attempt),
    })
    if settings.bus_curve and is_tcp(settings.bus_pub):
        # The runs' CURVE pair, in the run folder (0600) for its worker's SDK.
        env.update(KeyStore(settings.home).issue_run_keys(path))
    if resume_from:
        env["TRAINER_RESUME_CHECKPOINT"] = os.path.join(path, resume_from)
    if settings.test_workers:
        env["TRAINER_TEST_WORKERS"] = "1"  # worker.runner looks in the same groups
    return path, argv, env
