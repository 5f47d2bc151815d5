"""Committed events (the gap-free follower): runs' events and experiments' revisions
(their limits and priority); and what the telemetry tells: heartbeats, artifacts
reported, our own status coming back, shims ending, GPUs read."""

from __future__ import annotations

from core import events as ev
from core.commands import RegisterArtifact
from core.protocol import GetExperiment
from core.errors import OrchestratorError
from core.runconfig import RunConfig
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import learning
from services.dispatcher.decide.gpus import GpuSource
from services.dispatcher.decide.inputs import (ArtifactReported, BusIdle, BusRearmed, BusSeen,
                                               CommittedEvent, ExperimentResumed,
                                               ExperimentRevised, GpusRead,
                                               Heartbeat, Heartbeats, Replied, ReplyKind,
                                               ShimEnded)
from services.dispatcher.decide.liveness import Verdict
from services.dispatcher.decide.phases import Move, Phase, allows
from services.dispatcher.decide.starting import begin_cancel, watch_until
from services.dispatcher.decide.state import SOURCE, CallFor, Cancel, RunRecord
from services.dispatcher.decide.turn import Turn

_DEQUEUE = (ev.RunCancelled, ev.RunFailed, ev.GpusClaimed)
NO_SHIM = frozenset({Phase.QUEUED, Phase.CLAIMING, Phase.JUDGING})  # none of this attempt


def on_event(turn: Turn, obs: CommittedEvent) -> None:
    event, s = obs.event, turn.state
    if obs.seq <= s.known_seq.get(event.run_id, 0):
        return  # already reflected (the snapshot, a claim's answer)
    if isinstance(event, ev.GpusReleased) and s.held_elsewhere:
        held = {g: h for g, h in s.held_elsewhere.items() if h != event.run_id}
        if len(held) != len(s.held_elsewhere):
            turn.update(held_elsewhere=held)
            turn.schedule_soon()
    run = turn.run(event.run_id)
    if isinstance(event, ev.RunSubmitted):
        if run is None:
            _queue(turn, event, obs.seq)
    elif isinstance(event, _DEQUEUE):
        if run is not None and run.phase is Phase.QUEUED:
            turn.move(run, Move.DEQUEUED)
            turn.schedule_soon()
            run = None
        if isinstance(event, ev.GpusClaimed) and event.claimed_by == SOURCE and run is None:
            # Our claim whose answer never reached us (applied late, after a resync read
            # the run as PENDING): asked for, then started.
            turn.query(CallFor.GET_RUN, fx.GetRun(event.run_id), event.run_id)
    elif isinstance(event, (ev.AttemptEnded, ev.RerunRequested)):
        if run is None and not turn.in_flight(CallFor.GET_RUN, event.run_id):
            # A new attempt of a run we do not hold (a rerun; a retry whose finish was
            # answered elsewhere): asked for, then queued. One we hold is queued again
            # by the answer to its FinishRun.
            turn.query(CallFor.GET_RUN, fx.GetRun(event.run_id), event.run_id)
    elif isinstance(event, ev.CancelRequested) and run is not None:
        cancel = Cancel(event.requested_by, event.reason, obs.ts)
        if run.phase is Phase.RUNNING:
            begin_cancel(turn, turn.put(run.changed(cancel=cancel)))
        elif allows(run.phase, Move.CANCEL_NOTED):  # done once its worker is seen
            turn.move(run, Move.CANCEL_NOTED, cancel=cancel)
            if run.phase is Phase.STARTING and run.pgid is None and \
                    turn.state.config.on_slurm(run.config):
                # its job may wait in SLURM's queue for long: cancelled there (scancel)
                turn.do(fx.KillProcesses(run.run_id, frozenset()))
        # KILLING: its kill is under way; ENDING: its end is on its way; QUEUED: the
        # registry cancels a PENDING run itself (RunCancelled follows)


def _queue(turn: Turn, event: ev.RunSubmitted, seq: int) -> None:
    try:
        config = RunConfig.from_map(dict(event.config))
    except OrchestratorError as exc:
        turn.log("error", "run.config_unreadable", run_id=event.run_id, reason=str(exc))
        return
    # A cell waits for its experiment's spec, committed with it just after: its limit
    # and priority are known only then.
    turn.put(RunRecord(event.run_id, Phase.QUEUED, config, event.priority, seq,
                       experiment=event.experiment, awaits_spec=bool(event.experiment)))
    turn.schedule_soon()


def on_experiment(turn: Turn, obs: ExperimentRevised) -> None:
    """An experiment's new spec: its runs are scheduled by its limit and priority from
    now on (a raised limit starts more at this pass, a new priority re-orders its
    queued cells; runs already under way go on), and the cells committed with it may
    be scheduled."""
    s = turn.state
    if obs.seq <= s.experiments_seq:
        return  # the snapshot reflects it already
    limits = obs.limits
    before = s.experiments.get(limits.name)
    experiments = dict(s.experiments)
    if limits.matters:
        experiments[limits.name] = limits
    else:
        experiments.pop(limits.name, None)
    turn.update(experiments=experiments, experiments_seq=obs.seq)
    heard = [r.changed(awaits_spec=False) for r in s.runs.values()
             if r.awaits_spec and r.experiment == limits.name and r.submitted_seq < obs.seq]
    if heard:
        turn.put_many(heard)
        turn.schedule_soon()
    if before != (limits if limits.matters else None):
        turn.log("info", "experiment.limits", experiment=limits.name,
                 max_concurrent=limits.max_concurrent, priority=limits.priority)
        turn.schedule_soon()


def on_experiment_resumed(turn: Turn, obs: ExperimentResumed) -> None:
    """An experiment rerun: its limits asked for where we do not know them (it was
    not ACTIVE when the snapshot was read). The answer, read after the rerun, is set
    unless an ExperimentSubmitted of it was followed meanwhile."""
    s = turn.state
    if obs.seq <= s.experiments_seq or obs.name in s.experiments or any(
            c.purpose is CallFor.EXPERIMENT and c.detail == obs.name for c in s.calls.values()):
        return
    turn.query(CallFor.EXPERIMENT, GetExperiment(obs.name), detail=obs.name)


def on_limits(turn: Turn, reply: Replied, name: str) -> None:
    """The answer to get_experiment (after a rerun)."""
    found = [e for e in reply.experiments if e.name == name and e.matters]
    if reply.kind is not ReplyKind.APPLIED or not found or name in turn.state.experiments:
        return
    turn.update(experiments={**turn.state.experiments, name: found[0]})
    turn.log("info", "experiment.limits", experiment=name,
             max_concurrent=found[0].max_concurrent, priority=found[0].priority)
    turn.schedule_soon()


def on_heartbeat(turn: Turn, obs: Heartbeat) -> None:
    on_heartbeats(turn, Heartbeats((obs,)))


def on_heartbeats(turn: Turn, obs: Heartbeats) -> None:
    """Each beat resets its run's silence timer (and notes its step, for its result)
    and is judged by the liveness rules (decide/learning.py); the runs mapping is
    copied once for the whole batch, and the verdicts acted on after it."""
    changed: dict[str, RunRecord] = {}
    verdicts: dict[str, list[Verdict]] = {}
    s = turn.state
    bus_ok = s.bus.healthy(s.now)
    for beat in obs.beats:
        run = changed.get(beat.run_id) or turn.run(beat.run_id)
        if run is None or run.watch is None:
            continue
        if run.watch.last_beat is None:  # the start-up grace ends: due sooner
            watch_until(turn, beat.at + run.watch.heartbeat_timeout_s)
        step = beat.step if isinstance(beat.step, int) and not isinstance(beat.step, bool) \
            else run.last_step
        live, said = learning.heard(run, beat, bus_ok)
        if said:
            verdicts.setdefault(beat.run_id, []).extend(said)
        changed[beat.run_id] = run.changed(watch=run.watch.beat(beat.at), last_step=step,
                                           liveness=live)
    if changed:
        turn.put_many(changed.values())
    for run_id, said in verdicts.items():
        learning.act(turn, turn.state.runs[run_id], said)


def on_artifact(turn: Turn, obs: ArtifactReported) -> None:
    """Registered at once (after RunStarted); one whose message was lost is found in
    the run's manifest when it ends."""
    run = turn.run(obs.run_id)
    if run is None or run.phase not in (Phase.STARTING, Phase.RUNNING, Phase.KILLING) \
            or obs.path in run.artifacts:
        return
    artifacts = run.artifacts | {obs.path}
    if obs.outside:  # logged, and remembered so that a repeat is not logged again
        turn.log("warning", "registry.refused", method="register_artifact",
                 run_id=run.run_id, code="invalid_argument", reason=f"path: {obs.outside}")
        turn.put(run.changed(artifacts=artifacts))
        return
    command = RegisterArtifact(run.run_id, obs.kind, obs.path, obs.size, dict(obs.meta))
    if run.pgid is None:  # its worker record is not read yet: RunStarted comes first
        turn.put(run.changed(artifacts=artifacts,
                             artifacts_todo=run.artifacts_todo + (command,)))
        turn.do(fx.ObserveRun(run.run_id))
        return
    turn.put(run.changed(artifacts=artifacts))
    turn.call(CallFor.ARTIFACT, command, run.run_id, command)


def on_bus_seen(turn: Turn, obs: BusSeen) -> None:
    turn.update(bus=turn.state.bus.seen(obs.at))


def on_bus_idle(turn: Turn, obs: BusIdle) -> None:
    turn.update(bus=turn.state.bus.widen(obs.window_s))


def on_bus_rearmed(turn: Turn, obs: BusRearmed) -> None:
    turn.update(bus=turn.state.bus.rearm(obs.window_s))


def on_shim_ended(turn: Turn, obs: ShimEnded) -> None:
    run = turn.run(obs.run_id)
    if run is None or run.phase in NO_SHIM:
        return  # (queued again for its next attempt: the end of the last attempt's shim)
    status = obs.status if obs.status is not None else run.shim_status
    turn.put(run.changed(shim_ended=True, shim_status=status))
    turn.do(fx.ObserveRun(run.run_id))


def on_gpus(turn: Turn, obs: GpusRead) -> None:
    turn.update(gpu_read_due=False)
    if obs.error:  # a bug in the read: keep what we have, say so
        turn.log("error", "gpus.read_failed", error=obs.error)
    fresh = turn.state.inventory.refreshed(obs.inventory) if obs.inventory else None
    if fresh is not None:
        turn.update(inventory=fresh)
        turn.schedule_soon()
    if obs.inventory is not None and obs.inventory.source is GpuSource.NVML:
        learning.on_utilization(turn, {g.uuid: g.utilization_pct for g in obs.inventory.gpus
                                       if g.utilization_pct is not None})
