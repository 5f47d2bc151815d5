"""How a run ended, as the FinishRun to send: from its exit record and what the
dispatcher did to it (a kill plan), or ``lost`` when its shim left no record."""

from __future__ import annotations

import dataclasses
from typing import Optional

from core import runresult
from core.commands import FinishRun
from core.events import TerminalCause
from services.dispatcher.decide.inputs import ExitRecord, FolderRead
from services.dispatcher.decide.state import RunRecord
from services.dispatcher.decide.supervise import Outcome

LOW_DISK_BYTES = 1024 * 1024  # below this, a missing exit record is blamed on the disk
LOST = "the run's shim is gone and left no exit record (its worker's end is unknown)"
GONE_AFTER_START = "the worker is gone and left no exit record"
GONE_BEFORE_START = ("its shim died before it recorded the worker's start; the worker "
                     "was killed")


def disk_note(folder: FolderRead) -> str:
    """A note for a missing exit record when the run folder's disk is (nearly) full."""
    free = folder.disk_free
    if free is None or free >= LOW_DISK_BYTES:
        return ""
    return (f"; the disk of its run folder has {free // 1024} KiB free (a full disk keeps "
            f"the shim from writing its exit record)")


IGNORED_EXIT_CODE = 3   # the SDK's exit code for a checkpoint given and never taken


def finish_of(run: RunRecord, record: Optional[ExitRecord], tail: str = "",
              folder: Optional[FolderRead] = None) -> FinishRun:
    """The end of a run from its exit record (None: it left none) and its kill plan;
    ``tail``: the last lines of its stderr, for a failure's message; ``folder``: what
    else its folder holds (result.json's typed cause of a failure)."""
    code = record.exit_code if record is not None else None
    sig = record.signal if record is not None else None
    plan = run.kill
    if plan is not None:
        if plan.outcome is Outcome.CANCELLED:
            by, reason = (run.cancel.requested_by, run.cancel.reason) if run.cancel else ("", "")
            return FinishRun(run.run_id, Outcome.CANCELLED.value, exit_code=code, signal=sig,
                             requested_by=by, reason=reason)
        return FinishRun(run.run_id, Outcome.FAILED.value, plan.cause.value, exit_code=code,
                         signal=sig, message=plan.message)
    if record is None:
        raise ValueError("a run with neither exit record nor kill plan is lost, not finished")
    if record.spawn_error:
        return FinishRun(run.run_id, Outcome.FAILED.value, TerminalCause.SPAWN_ERROR.value,
                         exit_code=code, signal=sig, message=record.spawn_error)
    if folder is not None and folder.ended_by:
        # The back end ended it (a SLURM job cancelled from outside, or past its time
        # limit), whatever its worker did on the TERM it got: as our own kill plan.
        return FinishRun(run.run_id, Outcome.FAILED.value, folder.ended_by, exit_code=code,
                         signal=sig, message=f"{folder.ended_message}\n{tail}".strip())
    if code == 0:
        return FinishRun(run.run_id, Outcome.COMPLETED.value, exit_code=0)
    if record.memory_exceeded:
        return FinishRun(run.run_id, Outcome.FAILED.value, TerminalCause.MEMORY_LIMIT.value,
                         exit_code=code, signal=sig, message=memory_message(record, tail))
    if code == IGNORED_EXIT_CODE and folder is not None \
            and folder.result_cause == TerminalCause.CHECKPOINT_IGNORED.value:
        return FinishRun(run.run_id, Outcome.FAILED.value,
                         TerminalCause.CHECKPOINT_IGNORED.value, exit_code=code,
                         message=folder.result_reason or "the worker ignored its checkpoint")
    if sig is not None:
        return FinishRun(run.run_id, Outcome.FAILED.value, TerminalCause.SIGNAL.value,
                         exit_code=code, signal=sig,
                         message=f"killed by {record.signal_name or sig}\n{tail}".strip())
    return FinishRun(run.run_id, Outcome.FAILED.value, TerminalCause.EXIT_CODE.value,
                     exit_code=code, signal=sig, message=f"exit code {code}\n{tail}".strip())


def memory_message(record: ExitRecord, tail: str = "") -> str:
    """Why a run over its memory limit ended, and who ended it."""
    peak = f" (peak {record.memory_peak_mb:g} MiB)" if record.memory_peak_mb else ""
    how = ("the kernel's OOM killer ended its processes (its cgroup's memory.max)"
           if record.memory_enforced_by == "cgroup" else
           "its shim killed its processes (their resident memory, sampled)")
    return f"over its memory limit of {record.memory_limit_mb} MiB{peak}: {how}\n{tail}" \
        .strip()


def failed(run_id: str, cause: TerminalCause, message: str) -> FinishRun:
    return FinishRun(run_id, Outcome.FAILED.value, cause.value, message=message)


def with_result(finish: FinishRun, run: RunRecord,
                folder: FolderRead) -> tuple[FinishRun, list[tuple[str, dict]]]:
    """The FinishRun with the run's bounded result (its final steps, its budget and
    result.json's numeric metrics), and the log lines (event, fields) saying what
    was left out."""
    result, dropped = runresult.summarize(dict(folder.metrics), run.last_step,
                                          run.config.steps)
    notes: list[tuple[str, dict]] = []
    if folder.result_problem:
        notes.append(("run.result_missing", {
            "run_id": run.run_id, "reason": folder.result_problem,
            "hint": "its recorded result has only what the dispatcher heard"}))
    if dropped:
        notes.append(("run.result_trimmed", {
            "run_id": run.run_id, "left_out": dropped,
            "hint": f"a recorded result keeps at most {runresult.MAX_KEYS} numeric metrics, "
                    f"with names of at most {runresult.MAX_KEY_CHARS} characters"}))
    return (dataclasses.replace(finish, result=result) if result else finish), notes
