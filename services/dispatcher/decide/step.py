"""The entry point: ``step(state, observation) -> (state, effects)``.

One handler per observation type; each step ends with a scheduling pass when one is
due, so the registry calls of a step (ends, claims, verdicts, waiting reasons) are
one batch. While the registry is not known to be up (before the snapshot, after it
was lost), what would need it (events, folder reads, reported artifacts) is left for
the sweeps after the snapshot, which read every run again.
"""

from __future__ import annotations

from typing import Any, Callable

from services.dispatcher.decide import committed, ending, reconcile, replies, schedule, timers
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import inputs as obs
from services.dispatcher.decide.phases import OBSERVED, Phase
from services.dispatcher.decide.starting import spawn_failed
from services.dispatcher.decide.state import BACKLOG_PHASES, DispatcherState, Registry
from services.dispatcher.decide.turn import Turn


def _on_folder(turn: Turn, read: obs.FolderRead) -> None:
    run = turn.run(read.run_id)
    if run is None or run.phase not in OBSERVED:
        return  # a read asked before its end was known
    if run.phase in BACKLOG_PHASES and bool(read.waiting) != run.in_backend_queue:
        run = turn.put(run.changed(in_backend_queue=bool(read.waiting)))
    if run.phase is Phase.RECOVERING:
        reconcile.on_folder(turn, run, read)
    else:
        ending.on_folder(turn, run, read)


def _on_moved(turn: Turn, moved: obs.BackEndMoved) -> None:
    for run_id in moved.run_ids:   # (a backlogged run's job started: read it at once)
        run = turn.run(run_id)
        if run is not None and run.phase in OBSERVED:
            turn.do(fx.ObserveRun(run_id))


def _on_start_failed(turn: Turn, failure: obs.StartFailed) -> None:
    run = turn.run(failure.run_id)
    if run is not None and run.phase is Phase.STARTING:
        spawn_failed(turn, run, failure.message)


def _on_back(turn: Turn, _: obs.RegistryBack) -> None:
    if turn.state.registry is not Registry.READING:
        reconcile.begin(turn)


HANDLERS: dict[type, Callable[[Turn, Any], None]] = {
    obs.Tick: timers.on_tick,
    obs.CommittedEvent: committed.on_event,
    obs.ExperimentRevised: committed.on_experiment,
    obs.ExperimentResumed: committed.on_experiment_resumed,
    obs.Heartbeat: committed.on_heartbeat,
    obs.Heartbeats: committed.on_heartbeats,
    obs.ArtifactReported: committed.on_artifact,
    obs.BusSeen: committed.on_bus_seen,
    obs.BusRearmed: committed.on_bus_rearmed,
    obs.BusIdle: committed.on_bus_idle,
    obs.ShimEnded: committed.on_shim_ended,
    obs.BackEndMoved: _on_moved,
    obs.GpusRead: committed.on_gpus,
    obs.FolderRead: _on_folder,
    obs.StartFailed: _on_start_failed,
    obs.Replied: replies.on_reply,
    obs.RegistryLost: replies.on_lost,
    obs.RegistryBack: _on_back,
}
NEEDS_REGISTRY = (obs.CommittedEvent, obs.ExperimentRevised, obs.ExperimentResumed,
                  obs.FolderRead, obs.ArtifactReported, obs.BackEndMoved)


def step(state: DispatcherState, observation: Any) -> tuple[DispatcherState, list[Any]]:
    handler = HANDLERS.get(type(observation))
    if handler is None:
        raise TypeError(f"not an observation: {type(observation).__name__}")
    turn = Turn(state)
    if state.registry is Registry.UP or not isinstance(observation, NEEDS_REGISTRY):
        handler(turn, observation)
    schedule.schedule(turn)
    return turn.state, turn.effects
