"""The scheduling pass: ended runs' outcomes first, then the claims their resources
allow, the unschedulable verdicts and new waiting reasons; all of them Call effects of
one step, which the shell sends as one pipelined round trip (the registry applies them
in this order, so an end's GPUs are free for the claims behind it)."""

from __future__ import annotations

import dataclasses

from core.commands import ClaimGpus, RecordWaiting
from core.events import TerminalCause
from services.dispatcher.decide.ending import pending_calls
from services.dispatcher.decide.outcomes import failed
from services.dispatcher.decide.phases import HOLDING, UNDER_WAY, Move, Phase
from services.dispatcher.decide.scheduling import Capacity, Verdict, plan
from services.dispatcher.decide.state import SOURCE, CallFor, Registry
from services.dispatcher.decide.turn import Turn


def schedule(turn: Turn) -> None:
    if not turn.state.dirty or turn.state.registry is not Registry.UP:
        return
    turn.update(dirty=False)
    for run in turn.state.in_phase(Phase.ENDING):
        if run.artifacts_todo:  # the registry records an end only after its artifacts
            for command in run.artifacts_todo:
                turn.call(CallFor.ARTIFACT, command, run.run_id, command)
            turn.put(run.changed(artifacts_todo=()))
        elif not pending_calls(turn, run.run_id):
            finish = dataclasses.replace(run.finish, attempt=run.attempt)
            turn.call(CallFor.FINISH, finish, run.run_id)
    s = turn.state
    # A run that goes to SLURM holds none of our resources and is started at once:
    # SLURM queues and places it (its GPUs are its job's).
    held = [r for r in s.runs.values() if r.phase in HOLDING and not s.config.on_slurm(r.config)]
    per_experiment: dict[str, int] = {}
    if s.experiments:
        for r in s.runs.values():
            if r.experiment and r.phase in UNDER_WAY:
                per_experiment[r.experiment] = per_experiment.get(r.experiment, 0) + 1
    cap = Capacity(s.inventory.gpus, frozenset(g for r in held for g in r.gpus)
                   | frozenset(s.held_elsewhere), s.config.cpu_slots,
                   sum(r.cpu_slots for r in held), s.config.max_runs, len(held),
                   per_experiment)
    queued = {r.run_id: r for r in s.in_phase(Phase.QUEUED) if not r.awaits_spec}
    for run in sorted((r for r in queued.values() if s.config.on_slurm(r.config)),
                      key=lambda r: r.submitted_seq):
        del queued[run.run_id]
        # ... within its experiment's max_concurrent, which counts its SLURM jobs too
        limit = run.pending(s.experiments).max_concurrent
        if limit and per_experiment.get(run.experiment, 0) >= limit:
            why = f"experiment {run.experiment} runs its limit of {limit} at once"
            if run.waiting_reason != why and not turn.in_flight(CallFor.WAITING, run.run_id):
                turn.call(CallFor.WAITING, RecordWaiting(run.run_id, why), run.run_id, why)
            continue
        if run.experiment:
            per_experiment[run.experiment] = per_experiment.get(run.experiment, 0) + 1
        turn.move(run, Move.CLAIM_SENT, gpus=())
        turn.call(CallFor.CLAIM, ClaimGpus(run.run_id, (), SOURCE, s.inventory.uuids),
                  run.run_id)
    for decision in plan([r.pending(s.experiments) for r in queued.values()], cap):
        run = queued[decision.run_id]
        if decision.verdict is Verdict.START:
            turn.move(run, Move.CLAIM_SENT, gpus=decision.gpus)
            turn.call(CallFor.CLAIM, ClaimGpus(run.run_id, decision.gpus, SOURCE,
                                               s.inventory.uuids), run.run_id)
        elif decision.verdict is Verdict.NEVER:
            finish = dataclasses.replace(
                failed(run.run_id, TerminalCause.UNSCHEDULABLE, decision.reason),
                attempt=run.attempt)
            turn.move(run, Move.JUDGED_NEVER, finish=finish)
            turn.call(CallFor.NEVER, finish, run.run_id)
        elif run.waiting_reason != decision.reason and \
                not turn.in_flight(CallFor.WAITING, run.run_id):
            turn.call(CallFor.WAITING, RecordWaiting(run.run_id, decision.reason),
                      run.run_id, decision.reason)
