"""``python -m services.dispatcher.slurmstep RUN_DIR``: a SLURM job's batch step, the
shim (spawner.py) of one run on a compute node. The SLURM launcher
(shell/slurmlauncher.py) writes what to start in ``RUN_DIR/slurm-step.json``
(owner-only: the worker's environment) before it submits the job; the run folder lies
on a file system that the dispatcher's host and the compute nodes share
(docs/SLURM.md).

The step records what SLURM gave the job (``slurm-job.json``: job id, node, GPUs),
sets the worker's CUDA_VISIBLE_DEVICES to the GPUs SLURM allocated (none when the run
asked for none) and runs the shim in this process, relaying the signals the launcher
sends through ``scancel --batch`` to the worker (spawner.RELAYED): the shim lives to
write the worker's true exit record. SLURM's own TERM at a cancel or time limit goes
to every process of the job, the worker's included, and is relayed again
(idempotent)."""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

from services.dispatcher import spawner

STEP_FILE = "slurm-step.json"
JOB_FILE = "slurm-job.json"


def job_record(environ: dict[str, str]) -> dict[str, Any]:
    """What SLURM gave the job, from the variables it sets in the batch step."""
    return {"job_id": environ.get("SLURM_JOB_ID", ""),
            "node": environ.get("SLURMD_NODENAME") or socket.gethostname(),
            "gpus": environ.get("SLURM_JOB_GPUS", ""),
            "cuda_visible_devices": environ.get("CUDA_VISIBLE_DEVICES", "")}


def placement(record: dict[str, Any]) -> dict[str, Any]:
    """A job record (``job_record``, read back) as the run's RunStarted fields: host
    (the node), job_id, job_gpus (SLURM_JOB_GPUS "0,1" as ("0", "1"))."""
    gpus = record.get("gpus")
    return {"host": str(record.get("node") or "?"), "job_id": str(record.get("job_id") or ""),
            "job_gpus": tuple(g.strip() for g in gpus.split(",") if g.strip())
            if isinstance(gpus, str) else ()}


def worker_env(env: dict[str, str], gpus: int, environ: dict[str, str]) -> dict[str, str]:
    """The worker's environment: the launcher's, with SLURM's job variables and the
    GPUs SLURM allocated (its CUDA_VISIBLE_DEVICES; "" for a run without GPUs)."""
    out = dict(env)
    out.update({k: v for k, v in environ.items() if k.startswith("SLURM")})
    out["CUDA_VISIBLE_DEVICES"] = environ.get("CUDA_VISIBLE_DEVICES", "") if gpus else ""
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m services.dispatcher.slurmstep RUN_DIR", file=sys.stderr)
        return 2
    run_dir = argv[1]
    spec = spawner.read_json(os.path.join(run_dir, STEP_FILE))
    if spec is None or not isinstance(spec.get("argv"), list) or \
            not isinstance(spec.get("env"), dict):
        print(f"slurmstep: {run_dir}/{STEP_FILE} is missing or not a step spec "
              "(is the run folder on a file system shared with this node?)", file=sys.stderr)
        return 1
    environ = dict(os.environ)
    spawner.write_atomic(os.path.join(run_dir, JOB_FILE), job_record(environ),
                         durable=False)
    env = worker_env({str(k): str(v) for k, v in spec["env"].items()},
                     int(spec.get("gpus") or 0), environ)
    return spawner._shim(run_dir, [str(a) for a in spec["argv"]], env, relay=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
