"""The registry's answers, matched to the call that asked (by its tag), and the loss
of the registry with calls in flight.

    CLAIMING  applied --claimed--> STARTING; busy (GPU held elsewhere) or not applied
              --returned--> QUEUED; refused (no longer PENDING) --refused--> dropped
    JUDGING   applied --finished-->, refused --refused--> dropped; not applied --returned--> QUEUED
    ENDING    applied --finished-->, refused --refused--> dropped; not applied --returned--> ENDING
A "not applied" answer (a failed batch, a full disk) is sent again at the next sweep.
"""

from __future__ import annotations

from core.runconfig import RunConfig
from core.errors import OrchestratorError
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import committed, learning, reconcile
from services.dispatcher.decide.inputs import RegistryLost, Replied, ReplyKind, RunView
from services.dispatcher.decide.phases import Move, Phase
from services.dispatcher.decide.starting import start
from services.dispatcher.decide.state import CallFor, InFlight, Registry, RunRecord
from services.dispatcher.decide.turn import Turn

A, N, B = ReplyKind.APPLIED, ReplyKind.NOT_APPLIED, ReplyKind.BUSY
METHOD = {CallFor.CLAIM: "claim_gpus", CallFor.NEVER: "finish", CallFor.FINISH: "finish",
          CallFor.WAITING: "record_waiting", CallFor.STARTED: "record_started",
          CallFor.ADOPTED: "record_adopted", CallFor.ARTIFACT: "register_artifact",
          CallFor.SNAPSHOT: "snapshot", CallFor.GET_RUN: "get_run",
          CallFor.EXPERIMENT: "get_experiment", CallFor.FLAG: "flag_run",
          CallFor.CLEAR_FLAG: "clear_run_flag"}


def on_reply(turn: Turn, reply: Replied) -> None:
    what = turn.answered(reply.tag)
    if what is None:
        return  # asked before the registry was lost: the snapshot has settled it
    if reply.kind is not A and what.purpose is not CallFor.SNAPSHOT:
        turn.log("warning", "registry.refused", method=METHOD[what.purpose],
                 run_id=what.run_id or None, code=reply.code, reason=reply.message,
                 retried=reply.kind is N)
    if what.purpose is CallFor.SNAPSHOT:
        reconcile.on_page(turn, reply)
    elif what.purpose is CallFor.GET_RUN:
        _found(turn, reply)
    elif what.purpose is CallFor.EXPERIMENT:
        committed.on_limits(turn, reply, what.detail)
    else:
        run = turn.run(what.run_id)
        if run is not None:
            _ANSWERS[what.purpose](turn, run, reply, what)


def _claimed(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    if reply.kind is B:
        # Held by a run we do not supervise: not offered again until that run ends.
        if reply.gpu_uuid:
            turn.update(held_elsewhere={**turn.state.held_elsewhere,
                                        reply.gpu_uuid: reply.holder})
        turn.move(run, Move.RETURNED, gpus=())
        turn.retry_at_sweep()  # on other GPUs, if some are free
    elif reply.kind is N:
        turn.move(run, Move.RETURNED, gpus=())
        turn.retry_at_sweep()
    elif reply.kind is A:
        changes = {}
        if reply.run is not None:
            turn.note_seq(run.run_id, reply.run.last_seq)
            changes = {"attempt": reply.run.attempt, "resume_from": reply.run.resume_from,
                       "python": reply.run.python, "python_error": reply.run.python_error}
        after = turn.move(run, Move.CLAIMED, waiting_reason="", **changes)
        assert after is not None
        start(turn, after)
    else:
        turn.move(run, Move.REFUSED)  # no longer PENDING (cancelled meanwhile)


def _ended(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    """The answer to a FinishRun: an ENDING run's end, or a JUDGING run's verdict."""
    if reply.kind is N or reply.kind is B:
        turn.move(run, Move.RETURNED)  # still PENDING / still to be sent: again later
        turn.retry_at_sweep()
        return
    view = reply.run
    if reply.kind is A and run.phase is Phase.ENDING and view is not None \
            and view.status == "PENDING" and view.attempt > run.attempt:
        _retried(turn, run, view)
        return
    turn.move(run, Move.FINISHED if reply.kind is A else Move.REFUSED)
    if run.phase is Phase.ENDING:
        if run.experiment in turn.state.experiments:
            turn.schedule_soon()  # a place of its experiment's limit is free
        turn.count(finished=1)
        turn.do(fx.ForgetRun(run.run_id))
        finish = run.finish
        turn.log("info", "run.finished", run_id=run.run_id, outcome=finish.outcome,
                 cause=finish.cause or None, exit_code=finish.exit_code)


def _retried(turn: Turn, run: RunRecord, view: RunView) -> None:
    """The registry ended this attempt and queued the next one (the run's retry
    policy): the run is queued again, from nothing but its config."""
    turn.note_seq(run.run_id, view.last_seq)
    turn.move(run, Move.RETRIED)
    turn.put(RunRecord(run.run_id, Phase.QUEUED, run.config, run.priority,
                       run.submitted_seq, attempt=view.attempt,
                       resume_from=view.resume_from, experiment=run.experiment))
    turn.do(fx.ForgetRun(run.run_id))
    turn.count(retried=1)
    turn.schedule_soon()
    finish = run.finish
    turn.log("info", "run.attempt_ended", run_id=run.run_id, attempt=run.attempt,
             cause=finish.cause or None, exit_code=finish.exit_code,
             next_attempt=view.attempt, resume_from=view.resume_from or None)


def _waited(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    if reply.kind is A and run.phase in (Phase.QUEUED, Phase.STARTING):
        turn.put(run.changed(waiting_reason=what.detail))
    elif reply.kind is N:
        turn.retry_at_sweep()


def _started(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    if reply.kind is N:
        turn.retry_at_sweep()  # sent again at the sweep; its end waits for it
        return
    # Refused for good: RUNNING already (an earlier try was applied, its answer lost)
    # or ended meanwhile; asking again would change nothing.
    turn.put(run.changed(started_recorded=True))


def _artifact(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    if reply.kind is A:
        if run.phase is Phase.ENDING:
            turn.schedule_soon()  # its end may go now
        return
    if run.phase is Phase.ENDING:
        if reply.kind is N:  # its end waits until it is stored: sent again
            turn.put(run.changed(artifacts_todo=run.artifacts_todo + (what.detail,)))
            turn.retry_at_sweep()
        return
    # A running run's artifact not stored: a repeat report, or its manifest, tries again.
    turn.put(run.changed(artifacts=run.artifacts - {what.detail.path}))


def _nothing(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    pass


_ANSWERS = {
    CallFor.CLAIM: _claimed, CallFor.NEVER: _ended, CallFor.FINISH: _ended,
    CallFor.WAITING: _waited, CallFor.STARTED: _started, CallFor.ARTIFACT: _artifact,
    CallFor.ADOPTED: _nothing, CallFor.FLAG: learning.on_flag_reply,
    CallFor.CLEAR_FLAG: learning.on_flag_reply,
}


def _found(turn: Turn, reply: Replied) -> None:
    """get_run for a claim of ours we never heard answered: started if DISPATCHING; for
    a run given a new attempt that we do not hold (a rerun, or a retry whose answer we
    missed): queued if PENDING."""
    view = reply.run
    if reply.kind is not A or view is None or view.status not in ("DISPATCHING", "PENDING") \
            or view.run_id in turn.state.runs:
        return
    try:
        config = RunConfig.from_map(dict(view.config))
    except OrchestratorError as exc:
        turn.log("error", "run.config_unreadable", run_id=view.run_id, reason=str(exc))
        return
    turn.note_seq(view.run_id, view.last_seq)
    if view.status == "PENDING":
        turn.put(RunRecord(view.run_id, Phase.QUEUED, config, view.priority,
                           view.submitted_seq, attempt=view.attempt,
                           resume_from=view.resume_from, experiment=view.experiment))
        turn.schedule_soon()
        return
    turn.log("info", "run.claim_found", run_id=view.run_id, gpus=list(view.gpus))
    claiming = turn.put(RunRecord(view.run_id, Phase.CLAIMING, config, view.priority,
                                  view.submitted_seq, tuple(view.gpus),
                                  attempt=view.attempt, resume_from=view.resume_from,
                                  experiment=view.experiment))
    after = turn.move(claiming, Move.CLAIMED)
    assert after is not None
    start(turn, after)


def on_lost(turn: Turn, obs: RegistryLost) -> None:
    """The registry is away: the answers in flight are lost. A claim or verdict is
    forgotten (the snapshot read once it answers says where the run is); an end is
    sent again; a RunStarted is sent again at the sweep."""
    if turn.state.registry is Registry.UP:
        turn.log("warning", "registry.unavailable", reason=obs.reason)
    for what in turn.state.calls.values():
        run = turn.run(what.run_id)
        if run is None:
            continue
        if what.purpose in (CallFor.CLAIM, CallFor.NEVER):
            turn.move(run, Move.FORGOTTEN)
        elif what.purpose is CallFor.ARTIFACT:
            _artifact(turn, run, Replied(0, N), what)
    turn.update(calls={}, registry=Registry.LOST, snapshot=None, dirty=True)
