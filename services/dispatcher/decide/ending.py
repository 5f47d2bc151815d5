"""A started run's folder read: its worker noted, and its end judged.

    STARTING --worker_seen--> RUNNING                    (worker record read)
    STARTING | RUNNING | KILLING --leftovers--> REAPING  (shim gone, processes left)
    STARTING | RUNNING | KILLING | REAPING --ended--> ENDING

The end, in order: no exit record and the shim still at work: nothing yet. RunStarted
not stored yet: it goes first. No exit record and processes of the run left (their
shim, the subreaper that would end them, is gone): killed, read again. An exit record
and the group alive: SIGKILL, read again. No exit record from a shim of ours whose
status says its worker exited 0 (it could not write the record: a full disk):
completed. No exit record while we were ending it: that end stands. No exit record:
FAILED ``lost``. Otherwise the end its exit record tells.
"""

from __future__ import annotations

from typing import Optional

from core.commands import FinishRun, RecordWaiting, RegisterArtifact
from core.events import TerminalCause
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import ExitRecord, FolderRead
from services.dispatcher.decide.outcomes import LOST, disk_note, failed, finish_of, with_result
from services.dispatcher.decide.phases import Move, Phase
from services.dispatcher.decide.starting import note_worker
from services.dispatcher.decide.state import REAP_PATIENCE_S, CallFor, RunRecord
from services.dispatcher.decide.supervise import Outcome, Sig
from services.dispatcher.decide.turn import Turn

UNRECORDED_OK = 0  # a shim's exit status: its exit record is written, or its worker exited 0


def shim_gone(run: RunRecord, folder: FolderRead) -> bool:
    """Ours: once the fork server told of its end and no shim holds the run (a stale
    second one might); adopted: once no shim holds it."""
    if run.adopted:
        return not folder.shim_alive
    return run.shim_ended and not folder.shim_alive


def on_folder(turn: Turn, run: RunRecord, folder: FolderRead) -> None:
    folder = folder.of_attempt(run.attempt)   # an earlier attempt's records: not its own
    if run.phase is Phase.STARTING and folder.waiting and \
            folder.waiting != run.waiting_reason and \
            not turn.in_flight(CallFor.WAITING, run.run_id):   # its SLURM job's reason
        turn.call(CallFor.WAITING, RecordWaiting(run.run_id, folder.waiting), run.run_id,
                  folder.waiting)
    if run.phase is Phase.STARTING and folder.worker is not None:
        if folder.host and (folder.host, folder.job_id, folder.job_gpus) != \
                (run.host, run.job_id, run.job_gpus):   # (a SLURM job's node)
            run = turn.put(run.changed(host=folder.host, job_id=folder.job_id,
                                       job_gpus=folder.job_gpus))
        run = note_worker(turn, run, folder.worker, Move.WORKER_SEEN)
    record = folder.exit
    if record is None and not shim_gone(run, folder):
        return
    if not run.started_recorded and run.pgid is not None:
        return  # RunStarted first (sent again at the sweep), then the end
    if record is None and folder.processes:
        reap(turn, run, fx.KillProcesses(run.run_id, folder.processes), len(folder.processes))
        return
    if record is not None and run.pgid is not None and folder.group_alive:
        reap(turn, run, fx.Signal(run.pgid, Sig.KILL, run.run_id), 0)  # its shim killed the rest
        return
    if record is None and not run.adopted:
        if run.shim_status is None:
            return  # its shim's exit status is on its way from the fork server
        if run.shim_status == UNRECORDED_OK:
            record = ExitRecord(0, None)
            turn.log("warning", "run.no_exit_record", run_id=run.run_id, exit_code=0,
                     hint=disk_note(folder).lstrip("; ") or None)
    end_with(turn, run, record, folder)


def end_with(turn: Turn, run: RunRecord, record: Optional[ExitRecord],
             folder: FolderRead) -> None:
    if record is None and run.kill is not None:
        finish = finish_of(run, None)
        turn.log("warning", "run.no_exit_record", run_id=run.run_id, outcome=finish.outcome,
                 cause=finish.cause or None, hint=disk_note(folder).lstrip("; ") or None)
    elif record is None and run.cancel is not None and folder.ended_by:
        # cancelled before it started (its SLURM job, pending, cancelled by us)
        finish = FinishRun(run.run_id, Outcome.CANCELLED.value,
                           requested_by=run.cancel.requested_by, reason=run.cancel.reason)
    elif record is None and folder.ended_by:   # (a SLURM job cancelled while pending)
        finish = failed(run.run_id, TerminalCause(folder.ended_by), folder.ended_message)
    elif record is None:
        message = LOST + disk_note(folder)
        turn.log("warning", "run.lost", run_id=run.run_id, reason=message)
        finish = failed(run.run_id, TerminalCause.LOST, message)
    else:
        if record.leftovers_killed:
            turn.log("warning", "run.leftovers_killed", run_id=run.run_id,
                     count=record.leftovers_killed,
                     hint="processes the worker left running (in a session of their own?) "
                          "were killed by its shim when it exited")
        finish = finish_of(run, record, folder.stderr_tail, folder)
    finish_run(turn, run, finish, folder)


def finish_run(turn: Turn, run: RunRecord, finish: object, folder: FolderRead) -> None:
    """Its group is empty: its last log bytes go out, the artifacts of its manifest
    the registry lacks are sent now, its FinishRun (with its result) once they are
    stored, with the next scheduling pass."""
    turn.do(fx.FlushLogs(run.run_id))
    finish, notes = with_result(finish, run, folder)  # type: ignore[arg-type]
    for event, fields in notes:
        turn.log("info", event, **fields)
    known = set(run.artifacts)
    todo = []
    for entry in folder.manifest:
        if entry.path in known:
            continue
        known.add(entry.path)
        if entry.outside:
            turn.log("warning", "registry.refused", method="register_artifact",
                     run_id=run.run_id, code="invalid_argument",
                     reason=f"path: {entry.outside}")
            continue
        todo.append(RegisterArtifact(run.run_id, entry.kind, entry.path, entry.size,
                                     dict(entry.meta)))
    turn.move(run, Move.ENDED, finish=finish, artifacts=frozenset(known),
              artifacts_todo=tuple(todo))
    turn.schedule_soon()


def reap(turn: Turn, run: RunRecord, kill: object, count: int) -> None:
    """Processes of the run are left: killed; its end is judged at the next read."""
    now = turn.state.now
    since = run.reaping_since if run.reaping_since is not None else now
    if run.phase is not Phase.REAPING and count:
        turn.log("warning", "run.shim_gone", run_id=run.run_id, pgid=run.pgid,
                 processes=count,
                 hint="its processes are killed: its end can no longer be recorded")
    turn.do(kill)
    reported = run.reap_reported
    if not reported and now - since >= REAP_PATIENCE_S:
        turn.log("error", "run.processes_left", run_id=run.run_id, pgid=run.pgid,
                 hint="processes of the run survive SIGKILL; killed again at each read, "
                      "its GPUs stay booked meanwhile")
        reported = True
    turn.move(run, Move.LEFTOVERS, reaping_since=since, reap_reported=reported)


def pending_calls(turn: Turn, run_id: str) -> bool:
    """An artifact or finish of this run still awaits its answer."""
    return turn.in_flight(CallFor.ARTIFACT, run_id) or turn.in_flight(CallFor.FINISH, run_id)
