"""Commands the registry accepts, and the pure decisions that turn them into events.

Each ``decide_*`` function takes the current state (read by the registry inside its
transaction) and a command, and returns the events to append, or raises a typed
error. No I/O here: the registry does the reading and the appending.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from typing import Callable, Collection, Mapping, Optional

from core import events as ev
from core import runresult
from core.codeid import check_code, code_digest
from core.digest import canonical_json, check_depth, config_digest
from core.errors import IllegalTransition, NotFound, ResourceBusy, ValidationError
from core.runconfig import RunConfig, WorkerChecks, control_character
from core.runstate import RunState, RunStatus

MAX_CONFIG_BYTES = 64 * 1024
MAX_META_BYTES = 16 * 1024  # an artifact's meta, as canonical JSON
MAX_ARTIFACT_PATH = 1024     # characters of an artifact's path (docs/WORKERS.md)


@dataclass(frozen=True, slots=True)
class SubmitRun:
    """``code``: the worker's code identity (core.codeid), computed by the gateway;
    {} where none was (the run is then the same run only as another without one)."""

    config: dict
    submitted_by: str = "anonymous"
    code: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClaimGpus:
    """``inventory``: every GPU of the claimer's machine, as it last read them (the
    dispatcher sends its inventory with each claim); None: not given."""

    run_id: str
    gpu_uuids: tuple[str, ...]
    claimed_by: str
    inventory: Optional[tuple[str, ...]] = None


@dataclass(frozen=True, slots=True)
class RecordWaiting:
    run_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordStarted:
    """``launcher``: local | slurm ("": not said, a dispatcher from before it);
    ``job_id``, ``job_gpus``: the attempt's SLURM job and the GPUs SLURM gave it."""

    run_id: str
    pid: int
    pid_start_time: float
    host: str = ""
    launcher: str = ""
    job_id: str = ""
    job_gpus: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordAdopted:
    run_id: str
    pid: int
    adopted_by: str


@dataclass(frozen=True, slots=True)
class RequestCancel:
    run_id: str
    requested_by: str = "anonymous"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class FinishRun:
    """outcome: completed | failed | cancelled; cause: a TerminalCause value."""

    run_id: str
    outcome: str
    cause: str = ""
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    message: str = ""
    requested_by: str = ""
    reason: str = ""
    result: dict = field(default_factory=dict)  # core.runresult: steps, metrics
    attempt: int = 0        # the attempt that ended (0: the current one, not checked)


@dataclass(frozen=True, slots=True)
class RerunRun:
    """Give an ended run a new attempt: from its latest checkpoint, or from nothing
    (``from_scratch``); a COMPLETED run only with ``force``."""

    run_id: str
    requested_by: str = "anonymous"
    reason: str = ""
    from_scratch: bool = False
    force: bool = False


@dataclass(frozen=True, slots=True)
class RegisterArtifact:
    run_id: str
    kind: str
    path: str
    size: int
    meta: dict = field(default_factory=dict)


# Which method carries which command: core.protocol.COMMANDS.


def _require(state: Optional[RunState], run_id: str) -> RunState:
    if state is None:
        raise NotFound(f"run {run_id} does not exist", run_id=run_id)
    return state


def validate_config(cmd: SubmitRun, known_worker: Optional[Callable[[str], bool]] = None,
                    known_env: Optional[Callable[[str], bool]] = None,
                    resumes: Optional[Callable[[str], bool]] = None,
                    python_envs: Optional[Callable[[str], Optional[WorkerChecks]]] = None,
                    ) -> RunConfig:
    """The submitted config checked field by field, with defaults applied (its worker
    among its python_env's workers, where it names one)."""
    config = RunConfig.from_map(cmd.config, known_worker=known_worker, known_env=known_env,
                                resumes=resumes, python_envs=python_envs)
    try:
        size = len(canonical_json(config.canonical_map()).encode())
    except (TypeError, ValueError) as exc:
        raise ValidationError("hyperparameters", f"must be JSON-compatible ({exc})") from None
    if size > MAX_CONFIG_BYTES:
        raise ValidationError("config", f"is larger than {MAX_CONFIG_BYTES} bytes")
    return config


def decide_submit(cmd: SubmitRun, config: RunConfig, new_run_id: str) -> list[ev.Event]:
    canonical = config.canonical_map()
    code = check_code(cmd.code)
    return [ev.RunSubmitted(run_id=new_run_id, digest=config_digest(canonical),
                            config=canonical, priority=config.priority,
                            submitted_by=cmd.submitted_by, code=code,
                            code_digest=code_digest(code))]


def decide_claim(state: Optional[RunState], cmd: ClaimGpus, holders: Mapping[str, str],
                 inventory: Optional[Collection[str]] = None) -> list[ev.Event]:
    """``holders`` maps each GPU uuid already claimed to the run holding it;
    ``inventory``: the GPUs that exist (the claim's own, or the one the dispatcher
    announced last), None if unknown: a GPU outside it is refused."""
    s = _require(state, cmd.run_id)
    if len(set(cmd.gpu_uuids)) != len(cmd.gpu_uuids):
        raise ValidationError("gpu_uuids", "names a GPU more than once")
    if inventory is not None:
        for uuid in cmd.gpu_uuids:
            if uuid not in inventory:
                have = ", ".join(sorted(inventory)[:8]) + (", ..." if len(inventory) > 8 else "")
                raise ValidationError("gpu_uuids", f"GPU {uuid!r} is not in the GPU inventory "
                                      f"({len(inventory)} GPU(s){': ' + have if have else ''})")
    if s.status is not RunStatus.PENDING:
        raise IllegalTransition(s.run_id, s.status.value, "GpusClaimed")
    for uuid in cmd.gpu_uuids:
        holder = holders.get(uuid)
        if holder is not None:
            raise ResourceBusy(f"GPU {uuid} is held by run {holder}", gpu_uuid=uuid,
                               holder=holder)
    return [ev.GpusClaimed(run_id=s.run_id, gpu_uuids=cmd.gpu_uuids,
                           claimed_by=cmd.claimed_by)]


def decide_waiting(state: Optional[RunState], cmd: RecordWaiting) -> list[ev.Event]:
    s = _require(state, cmd.run_id)
    if s.status in (RunStatus.PENDING, RunStatus.DISPATCHING) and \
            s.waiting_reason == cmd.reason:
        return []  # nothing new: do not grow the log with repeats
    return [ev.RunWaiting(run_id=s.run_id, reason=cmd.reason)]


def decide_started(state: Optional[RunState], cmd: RecordStarted) -> list[ev.Event]:
    s = _require(state, cmd.run_id)
    if cmd.pid <= 0:
        raise ValidationError("pid", "must be positive")
    _check_placement(cmd)
    return [ev.RunStarted(run_id=s.run_id, pid=cmd.pid, pid_start_time=cmd.pid_start_time,
                          host=cmd.host, attempt=s.attempt, launcher=cmd.launcher,
                          job_id=cmd.job_id, job_gpus=cmd.job_gpus)]


MAX_JOB_GPUS = 64


def _check_placement(cmd: RecordStarted) -> None:
    """The launcher's words on where the worker runs: a known launcher; a SLURM job id
    (digits, as ``sbatch --parsable`` gives it) and GPU names only from SLURM's."""
    if cmd.launcher not in ("", "local", "slurm"):
        raise ValidationError("launcher", "must be 'local' or 'slurm' (or '': not said)")
    if cmd.launcher != "slurm" and (cmd.job_id or cmd.job_gpus):
        raise ValidationError("job_id" if cmd.job_id else "job_gpus",
                              "is a SLURM job's: only with launcher 'slurm'")
    if cmd.job_id and not (cmd.job_id.isascii() and cmd.job_id.isdigit()
                           and len(cmd.job_id) <= 20):
        raise ValidationError("job_id", "must be a SLURM job id (1-20 digits)")
    if len(cmd.job_gpus) > MAX_JOB_GPUS:
        raise ValidationError("job_gpus", f"must name at most {MAX_JOB_GPUS} GPUs")
    for gpu in cmd.job_gpus:
        if not gpu or len(gpu) > 64 or control_character(gpu) is not None:
            raise ValidationError("job_gpus", f"{gpu[:64]!r} is not a GPU's name (1-64 "
                                  "characters, no control characters)")


def decide_adopted(state: Optional[RunState], cmd: RecordAdopted) -> list[ev.Event]:
    s = _require(state, cmd.run_id)
    return [ev.RunAdopted(run_id=s.run_id, pid=cmd.pid, adopted_by=cmd.adopted_by)]


def decide_cancel(state: Optional[RunState], cmd: RequestCancel) -> list[ev.Event]:
    """A PENDING run is cancelled at once; a started one waits for its worker to stop.
    Asking again changes nothing (the first request stands)."""
    s = _require(state, cmd.run_id)
    cmd = RequestCancel(cmd.run_id, cmd.requested_by or "anonymous", cmd.reason)
    if s.status.terminal:
        raise IllegalTransition(s.run_id, s.status.value, "CancelRequested")
    if s.cancel_requested_by:
        return []  # already asked: the first request stands
    out: list[ev.Event] = [ev.CancelRequested(run_id=s.run_id, requested_by=cmd.requested_by,
                                              reason=cmd.reason)]
    if s.status is RunStatus.PENDING:
        out.append(ev.RunCancelled(run_id=s.run_id, requested_by=cmd.requested_by,
                                   reason=cmd.reason, exit_code=None, signal=None))
    return out


def decide_finish(state: Optional[RunState], cmd: FinishRun) -> list[ev.Event]:
    """The terminal event, and the release of the run's GPU slots with it; or, when the
    run's retry policy names the failure and attempts are left, the end of this attempt
    (AttemptEnded: the run is PENDING again for the next one). A finish naming another
    attempt than the current one is refused (a late duplicate must not end the next)."""
    s = _require(state, cmd.run_id)
    if cmd.attempt and cmd.attempt != s.attempt:
        raise IllegalTransition(s.run_id, s.status.value,
                                f"finish of attempt {cmd.attempt} (attempt {s.attempt} "
                                "is current)")
    result = runresult.check(cmd.result)
    terminal: ev.Event
    if cmd.outcome == "completed":
        if cmd.exit_code not in (None, 0):
            raise ValidationError("exit_code", "a completed run exits with 0")
        terminal = ev.RunCompleted(run_id=s.run_id, exit_code=0, result=result,
                                   attempt=s.attempt)
    elif cmd.outcome == "failed":
        try:
            cause = ev.TerminalCause(cmd.cause)
        except ValueError:
            raise ValidationError("cause", f"unknown cause {cmd.cause!r}") from None
        if cause in (ev.TerminalCause.COMPLETED, ev.TerminalCause.CANCELLED):
            raise ValidationError("cause", f"{cause.value} is not a failure cause")
        retry = _retry(s, cause.value, cmd.exit_code)
        if retry is not None and not s.status.terminal:
            ended: list[ev.Event] = [ev.AttemptEnded(
                run_id=s.run_id, attempt=s.attempt, cause=cause.value,
                exit_code=cmd.exit_code, signal=cmd.signal, message=cmd.message,
                resume_from=retry, result=result)]
            if s.gpus_held:
                ended.append(ev.GpusReleased(run_id=s.run_id, gpu_uuids=s.gpus))
            return ended
        terminal = ev.RunFailed(run_id=s.run_id, cause=cause.value, exit_code=cmd.exit_code,
                                signal=cmd.signal, message=cmd.message, result=result,
                                attempt=s.attempt)
    elif cmd.outcome == "cancelled":
        terminal = ev.RunCancelled(run_id=s.run_id,
                                   requested_by=cmd.requested_by or s.cancel_requested_by,
                                   reason=cmd.reason or s.cancel_reason,
                                   exit_code=cmd.exit_code, signal=cmd.signal,
                                   result=result, attempt=s.attempt)
    else:
        raise ValidationError("outcome", "must be completed, failed or cancelled")
    if s.status.terminal:
        raise IllegalTransition(s.run_id, s.status.value, terminal.TYPE)
    out: list[ev.Event] = [terminal]
    if s.gpus_held:
        out.append(ev.GpusReleased(run_id=s.run_id, gpu_uuids=s.gpus))
    return out


def _retry(s: RunState, cause: str, exit_code: Optional[int]) -> Optional[str]:
    """The checkpoint the next attempt resumes from ("" from scratch) when this failure
    starts one; None when the run ends here (no policy, attempts spent, cancelled)."""
    try:
        policy = RunConfig.from_map(s.config).retry
    except ValidationError:
        return None  # a config stored before retries existed that no longer reads
    if s.attempt >= policy.max_attempts or s.cancel_requested_by \
            or not policy.retries(cause, exit_code):
        return None
    return "" if policy.from_scratch else s.latest_checkpoint


def decide_rerun(state: Optional[RunState], cmd: RerunRun) -> list[ev.Event]:
    """An ended run gets a new attempt, recorded with who asked and why."""
    s = _require(state, cmd.run_id)
    if not s.status.terminal:
        raise IllegalTransition(s.run_id, s.status.value, "RerunRequested (the run has "
                                "not ended: cancel it first)")
    if s.status is RunStatus.COMPLETED and not cmd.force:
        raise IllegalTransition(s.run_id, s.status.value, "RerunRequested (a completed "
                                "run is rerun only with force)")
    return [ev.RerunRequested(run_id=s.run_id, attempt=s.attempt + 1,
                              requested_by=cmd.requested_by or "anonymous",
                              reason=cmd.reason,
                              resume_from="" if cmd.from_scratch else s.latest_checkpoint)]


def decide_artifact(state: Optional[RunState], cmd: RegisterArtifact,
                    already_registered: bool = False) -> list[ev.Event]:
    """Registering a path twice is harmless: the first registration stands."""
    s = _require(state, cmd.run_id)
    path = cmd.path
    norm = posixpath.normpath(path)
    if not path or path.startswith("/") or norm == ".." or norm.startswith("../") \
            or "\\" in path or norm == ".":
        raise ValidationError("path", "must be a relative path inside the run directory")
    if len(path) > MAX_ARTIFACT_PATH:
        raise ValidationError("path", f"must be at most {MAX_ARTIFACT_PATH} characters")
    for name, text in (("path", path), ("kind", cmd.kind)):
        bad = control_character(text)
        if bad is not None:
            raise ValidationError(name, f"must not contain control characters (found {bad})")
    check_depth(cmd.meta, "meta")
    try:
        meta_bytes = len(canonical_json(cmd.meta).encode())
    except (TypeError, ValueError):
        raise ValidationError("meta", "must be JSON-compatible") from None
    if meta_bytes > MAX_META_BYTES:
        raise ValidationError("meta", f"is larger than {MAX_META_BYTES} bytes")
    if already_registered:
        return []
    if cmd.size < 0:
        raise ValidationError("size", "must not be negative")
    if not cmd.kind:
        raise ValidationError("kind", "must not be empty")
    return [ev.ArtifactRegistered(run_id=s.run_id, kind=cmd.kind, path=norm, size=cmd.size,
                                  meta=cmd.meta)]
