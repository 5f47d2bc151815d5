"""Start-up (and after the registry was away): every non-terminal run put back where
it belongs, as decisions on the snapshot's pages and then on each run's folder.

    RegistryBack -> snapshot pages -> PENDING: QUEUED; DISPATCHING | RUNNING: RECOVERING
      (the first page's experiments: their limits and priority, as of its head)
    RECOVERING, its folder read:
      an exit record                         --ended-->           ENDING (its recorded end)
      a live worker (same pid, start time)   --adopted-->         RUNNING (RecordAdopted)
        ... with a kill begun before         --adopted_killing--> KILLING (grace kept)
      a shim holds the run                   --awaited-->         RECOVERING (read again)
      processes of the run, no shim          --leftovers-->       RECOVERING (killed)
      none left, and it had started          --ended-->           ENDING (FAILED lost)
      none left, never started               --restarted-->       STARTING
    (a worker or exit record of an earlier attempt, not set aside yet, is not this
    attempt's: it counts as absent, and the attempt as never started)
No sleep: processes that outlive a kill are read and killed again at each sweep.
"""

from __future__ import annotations

from typing import Optional

from core.commands import RecordAdopted
from core.errors import OrchestratorError
from core.events import TerminalCause
from core.runconfig import RunConfig
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.ending import end_with, finish_run, reap
from services.dispatcher.decide.inputs import FolderRead, KillRecord, Replied, ReplyKind, RunView
from services.dispatcher.decide.outcomes import GONE_AFTER_START, GONE_BEFORE_START, failed
from services.dispatcher.decide.phases import Move, Phase
from services.dispatcher.decide.scheduling import ExperimentLimits
from services.dispatcher.decide.starting import note_worker, start, watch_until
from services.dispatcher.decide.state import (SOURCE, CallFor, Cancel, Registry, RunRecord,
                                              Snapshot)
from services.dispatcher.decide.supervise import KillPlan, Outcome
from services.dispatcher.decide.turn import Turn


def begin(turn: Turn) -> None:
    """The registry answers: read its non-terminal runs, page by page."""
    turn.update(registry=Registry.READING, snapshot=Snapshot())
    turn.query(CallFor.SNAPSHOT, fx.snapshot_page())


def on_page(turn: Turn, reply: Replied) -> None:
    snap = turn.state.snapshot
    if snap is None:
        return
    if reply.kind is not ReplyKind.APPLIED:
        turn.log("warning", "recovery.refused", code=reply.code, reason=reply.message)
        turn.update(registry=Registry.LOST, snapshot=None)  # read again once it answers
        return
    first = snap.as_of is None
    as_of = reply.head_seq if snap.as_of is None else snap.as_of
    snap = Snapshot(snap.runs + reply.runs, as_of,
                    reply.experiments if first else snap.experiments)
    if reply.more and reply.runs:
        turn.update(snapshot=snap)
        turn.query(CallFor.SNAPSHOT, fx.snapshot_page(
            min(r.submitted_seq for r in reply.runs)))
        return
    _apply(turn, tuple(reversed(snap.runs)), as_of, snap.experiments)


def _apply(turn: Turn, runs: tuple[RunView, ...], as_of: int,
           experiments: tuple[ExperimentLimits, ...]) -> None:
    for queued in turn.state.in_phase(Phase.QUEUED):  # the snapshot is the queue now
        turn.move(queued, Move.DEQUEUED)
    turn.update(held_elsewhere={}, snapshot=None, registry=Registry.UP,
                experiments={e.name: e for e in experiments if e.matters},
                experiments_seq=as_of)
    counts = {"pending": 0, "recovering": 0, "supervised": 0, "unreadable": 0}
    for view in runs:
        turn.note_seq(view.run_id, view.last_seq)
        if view.run_id in turn.state.runs:
            counts["supervised"] += 1
            continue  # already supervised (a resync after the registry was away)
        record = record_of(turn, view)
        if record is None:
            counts["unreadable"] += 1
            continue
        turn.put(record)
        if record.phase is Phase.RECOVERING:
            turn.do(fx.ObserveRun(view.run_id))
            counts["recovering"] += 1
        else:
            counts["pending"] += 1
    turn.do(fx.FollowFrom(as_of))
    turn.schedule_soon()
    turn.log("info", "recovery.done", as_of_seq=as_of, experiments=len(experiments),
             **counts)


def record_of(turn: Turn, view: RunView) -> Optional[RunRecord]:
    try:
        config = RunConfig.from_map(dict(view.config))
    except OrchestratorError as exc:
        turn.log("error", "run.config_unreadable", run_id=view.run_id, reason=str(exc))
        return None
    cancel = Cancel(view.cancel_requested_by, view.cancel_reason,
                    view.cancel_requested_at) if view.cancel_requested_by else None
    phase = Phase.QUEUED if view.status == "PENDING" else Phase.RECOVERING
    return RunRecord(view.run_id, phase, config, view.priority, view.submitted_seq,
                     tuple(view.gpus), adopted=phase is Phase.RECOVERING,
                     started_recorded=view.status == "RUNNING", cancel=cancel,
                     attempt=view.attempt, resume_from=view.resume_from,
                     experiment=view.experiment, standing_flags=view.flags)


def recorded_kill(turn: Turn, record: Optional[KillRecord]) -> Optional[KillPlan]:
    """The kill an earlier dispatcher began, its grace counted from its SIGTERM (wall
    clock, converted once to our monotonic clock); None if none or not readable."""
    if record is None:
        return None
    try:
        outcome, cause = Outcome(record.outcome), TerminalCause(record.cause)
    except ValueError:
        return None  # not ours (edited): the kill starts again from now if due
    elapsed = max(0.0, turn.state.wall - record.term_at)
    return KillPlan(outcome, cause, record.message, turn.state.now - elapsed, record.grace_s)


def on_folder(turn: Turn, run: RunRecord, read: FolderRead) -> None:
    # An earlier attempt's records (the dispatcher died between the claim of this
    # attempt and its start, before they were set aside) are not this attempt's: it
    # has not started, and starts once no process of the run is left.
    earlier = read.stale_attempt(run.attempt)
    folder = read.of_attempt(run.attempt)
    if folder.exit is not None:
        end_with(turn, run, folder.exit, folder)
        return
    worker = folder.worker
    if worker is not None and worker.start_time is not None and folder.worker_alive:
        _adopt(turn, run, folder)
        return
    if folder.shim_alive:
        # A shim owns the run: it is starting the worker (starting another would run
        # it twice), or its exit record is on the way: read again at the next sweep.
        if not run.noted:
            turn.log("info", "run.awaited", run_id=run.run_id, started=worker is not None)
        turn.move(run, Move.AWAITED, noted=True, pgid=worker.pgid if worker else None)
        return
    left = folder.processes
    if read.worker is not None and read.worker_alive and worker is None:
        left |= {read.worker.pid}   # the earlier attempt's worker lives on: killed first
    if left:
        reap(turn, run, fx.KillProcesses(run.run_id, left), len(left))
        return
    if run.started_recorded or worker is not None or \
            (run.reaping_since is not None and earlier is None):
        message = GONE_AFTER_START if worker is not None or run.started_recorded \
            else GONE_BEFORE_START
        turn.log("warning", "run.lost", run_id=run.run_id, reason=message)
        finish_run(turn, run, failed(run.run_id, TerminalCause.LOST, message), folder)
        return
    after = turn.move(run, Move.RESTARTED, adopted=False, reaping_since=None,
                      reap_reported=False)
    assert after is not None
    turn.log("info", "run.restarted", run_id=run.run_id, attempt=run.attempt,
             earlier_records=earlier)
    start(turn, after)


def _adopt(turn: Turn, run: RunRecord, folder: FolderRead) -> None:
    assert folder.worker is not None
    plan = recorded_kill(turn, folder.kill)
    move = Move.ADOPTED if plan is None else Move.ADOPTED_KILLING
    run = note_worker(turn, run.changed(kill=plan), folder.worker, move)
    if run.started_recorded:
        turn.call(CallFor.ADOPTED, RecordAdopted(run.run_id, folder.worker.pid, SOURCE),
                  run.run_id)
    turn.count(adopted=1)
    turn.log("info", "run.adopted", run_id=run.run_id, pid=folder.worker.pid)
    if plan is not None:
        watch_until(turn, plan.kill_due)
