"""SLURM's command-line tools as pure functions: the argv of each call the SLURM
launcher makes (slurmlauncher.py) and the parsing of their machine-readable output.
No subprocess here (the unit tests cover it all).

A job of ours is tagged (``JobTag``): its name is ``trainer.<run_id>`` and its comment
``trainer:<home>:<run_id>:<attempt>:<token>``, where ``home`` is a digest of the
installation's TRAINER_HOME (two installations sharing a user never take each other's
jobs) and ``token`` a fresh random value per submission, written in the run folder
before sbatch is called: a restarted dispatcher finds its jobs by their comment in
one ``squeue`` of all the user's jobs, even one submitted just before it crashed.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from dataclasses import dataclass, replace
from typing import Optional

from core.events import TerminalCause
from core.runconfig import RunConfig

NAME_PREFIX = "trainer."
COMMENT_PREFIX = "trainer"
SQUEUE_FORMAT = "%i|%T|%r|%k"   # job id, state, reason, comment
_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")

# Job states (squeue's %T) in which the job may still run the batch step.
ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "RESIZING", "REQUEUED", "REQUEUE_FED", "REQUEUE_HOLD", "SIGNALING",
                    "STAGE_OUT", "RESV_DEL_HOLD", "STOPPED"})
# A finished job's state -> the cause its run ends with, whatever its exit record says
# (its worker may exit 0 on SLURM's TERM); only our own kill wins (outcomes.finish_of).
CAUSES: dict[str, tuple[TerminalCause, str]] = {
    "CANCELLED": (TerminalCause.SLURM_CANCELLED,
                  "its SLURM job was cancelled from outside the orchestrator (scancel)"),
    "TIMEOUT": (TerminalCause.TIME_LIMIT, "its SLURM job reached its time limit"),
    "DEADLINE": (TerminalCause.TIME_LIMIT, "its SLURM job reached its deadline"),
    "OUT_OF_MEMORY": (TerminalCause.MEMORY_LIMIT, "SLURM ended its job: out of memory"),
    "NODE_FAIL": (TerminalCause.NODE_FAILURE, "its SLURM job's node failed (NODE_FAIL)"),
    "PREEMPTED": (TerminalCause.PREEMPTED, "its SLURM job was preempted (PREEMPTED)"),
}
# The signals the batch step (slurmstep.py) forwards to its worker: sent to the batch
# shell only (scancel --batch), so that its shim lives to write the exit record.
FORWARD = {"TERM": "TERM", "KILL": "INT", "USR2": "USR2"}


def home_digest(home: str) -> str:
    return hashlib.sha256(os.path.realpath(home).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class JobTag:
    home: str
    run_id: str
    attempt: int
    token: str

    @property
    def name(self) -> str:
        return NAME_PREFIX + self.run_id

    @property
    def comment(self) -> str:
        return f"{COMMENT_PREFIX}:{self.home}:{self.run_id}:{self.attempt}:{self.token}"

    @staticmethod
    def parse(comment: str) -> Optional["JobTag"]:
        """The tag of one of our jobs' comments; None for any other comment."""
        parts = comment.split(":")
        if len(parts) != 5 or parts[0] != COMMENT_PREFIX or not parts[3].isdigit():
            return None
        if not all(_SAFE.match(p) for p in (parts[1], parts[2], parts[4])):
            return None
        return JobTag(parts[1], parts[2], int(parts[3]), parts[4])


def check_run_id(run_id: str) -> str:
    """Why the run id cannot tag a job ("" if it can)."""
    return "" if _SAFE.match(run_id) else \
        f"run id {run_id[:60]!r} cannot name a SLURM job (letters, digits, ._- only)"


@dataclass(frozen=True)
class JobState:
    job_id: str
    state: str       # squeue's %T (RUNNING, CANCELLED, ...), base state only
    reason: str      # why it waits (Priority, Resources, ...), or how it ended
    tag: JobTag

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def sbatch_argv(tag: JobTag, run_dir: str, config: RunConfig) -> list[str]:
    """sbatch's command line for a run's attempt (the script comes on stdin)."""
    argv = ["sbatch", "--parsable", f"--job-name={tag.name}", f"--comment={tag.comment}",
            f"--chdir={run_dir}", f"--output={run_dir}/slurm-%j.out",
            f"--error={run_dir}/slurm-%j.out", "--no-requeue", "--export=ALL",
            f"--cpus-per-task={config.resources.cpu_slots}"]
    if config.resources.gpus:
        argv.append(f"--gres=gpu:{config.resources.gpus}")
    if config.resources.memory_limit_mb:
        argv.append(f"--mem={config.resources.memory_limit_mb}M")
    opts = config.slurm
    for name in ("partition", "account", "qos", "constraint"):
        if getattr(opts, name):
            argv.append(f"--{name}={getattr(opts, name)}")
    if opts.time_limit:
        argv.append(f"--time={opts.time_limit}")
    if config.retry.max_attempts > 1 and opts.checkpoint_before_s:
        # the batch step relays it to the worker alone: the SDK's checkpoint_requested
        argv.append(f"--signal=B:USR2@{opts.checkpoint_before_s}")
    for name, value in sorted(opts.extra.items()):
        argv.append(f"--{name}={value}" if value else f"--{name}")
    return argv


def batch_script(python: str, run_dir: str) -> str:
    """The job's script: the batch step (services/dispatcher/slurmstep.py) in place of
    the shell, so that scancel --batch signals reach it."""
    return (f"#!/bin/sh\nexec {_quote(python)} -m services.dispatcher.slurmstep "
            f"{_quote(run_dir)}\n")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def parse_job_id(stdout: str) -> str:
    """sbatch --parsable's answer: ``id`` or ``id;cluster``."""
    first = stdout.strip().splitlines()[0] if stdout.strip() else ""
    job_id = first.split(";")[0].strip()
    if not job_id.isdigit():
        raise ValueError(f"sbatch --parsable printed {stdout.strip()[:200]!r}, not a job id")
    return job_id


def squeue_argv() -> list[str]:
    """One query for every job of the user, finished ones still listed included."""
    return ["squeue", "--noheader", "--states=all", "--me", f"--format={SQUEUE_FORMAT}"]


def parse_squeue(stdout: str, home: str) -> dict[str, JobState]:
    """Our jobs (tagged with ``home``) in squeue's output, by job id; other lines are
    not ours and left out."""
    out: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) != 4:
            continue
        job_id, state, reason, comment = parts
        tag = JobTag.parse(comment.strip())
        if tag is None or tag.home != home or not job_id.strip().isdigit():
            continue
        out[job_id.strip()] = JobState(job_id.strip(), state.strip().split()[0] if
                                       state.strip() else "", reason.strip(), tag)
    return out


def latest_by_run(jobs: dict[str, JobState]) -> dict[str, JobState]:
    """Each run's job of its highest attempt (the latest submission of it)."""
    out: dict[str, JobState] = {}
    for job in sorted(jobs.values(), key=lambda j: (j.tag.attempt, int(j.job_id))):
        out[job.tag.run_id] = job
    return out


def parse_scontrol(line: str) -> dict[str, str]:
    """``scontrol show job -o ID``'s one line as a map (Key=value, values without
    spaces; Comment's and Command's may hold '=' and are kept whole)."""
    out: dict[str, str] = {}
    for field in line.strip().split(" "):
        if "=" in field:
            key, value = field.split("=", 1)
            out[key] = value
    return out


def exit_code_of(value: str) -> tuple[Optional[int], Optional[int]]:
    """scontrol's ``ExitCode=code:signal``."""
    code, _, sig = value.partition(":")
    return (int(code) if code.isdigit() else None, int(sig) if sig.isdigit() else None)


def scontrol_argv(job_id: str) -> list[str]:
    return ["scontrol", "show", "job", "-o", job_id]


def scancel_signal_argv(job_id: str, signal_name: str) -> list[str]:
    return ["scancel", "--batch", f"--signal={signal_name}", job_id]


def scancel_argv(job_id: str) -> list[str]:
    return ["scancel", job_id]


def end_status(state: str) -> int:
    """A finished job as its shim's exit status for ShimEnded: 0 (the shim exited 0:
    its exit record is written, or its worker exited 0) only for COMPLETED."""
    return 0 if state == "COMPLETED" else 1


# --- sacct: the jobs squeue and scontrol forgot (MinJobAge), where accounting is on ---
SACCT_FORMAT = "JobIDRaw,JobName,State,ExitCode,Reason"
NO_ACCOUNTING = "accounting_storage/none"


def config_argv() -> list[str]:
    return ["scontrol", "show", "config"]


def accounting_on(config_text: str) -> bool:
    """``scontrol show config``'s AccountingStorageType names a store (slurmdbd)."""
    for line in config_text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "AccountingStorageType":
            return value.strip() not in ("", NO_ACCOUNTING)
    return False


def sacct_argv(job_ids: list[str], since: float) -> list[str]:
    """One query for the jobs ``job_ids``, allocations only, since ``since`` (epoch
    seconds; sacct without --starttime looks at today only)."""
    start = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(max(0.0, since)))
    return ["sacct", "--noheader", "--parsable2", "--allocations", f"--starttime={start}",
            f"--jobs={','.join(job_ids)}", f"--format={SACCT_FORMAT}"]


def parse_sacct(stdout: str, jobs: dict[str, JobState]) -> dict[str, JobState]:
    """sacct's answer for ``jobs`` (by job id): each one's final state, where sacct
    has the job under our job's name (job ids start again at 1 when slurmctld loses
    its state: an id alone is not our job). ``CANCELLED by 1000`` is CANCELLED."""
    out: dict[str, JobState] = {}
    for line in stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) != 5:
            continue
        job_id, name, state, _exit_code, reason = (p.strip() for p in parts)
        job = jobs.get(job_id)
        if job is None or name != job.tag.name or not state:
            continue
        out[job_id] = replace(job, state=state.split()[0], reason=reason)
    return out
