"""The dispatcher's decisions, pure: ``step(state, observation) -> (state, effects)``.

Imports only ``core`` and I/O-free standard library modules.

    step.py        the entry point: step(state, observation), one handler per type
    inputs.py      observations: ticks, committed events (experiments' limits too),
                   heartbeats, folder reads, replies
    effects.py     effects: registry calls (core.commands) and queries, start, signal, ...
    phases.py      the run lifecycle: one table of phases and moves, IllegalMove
    state.py       DispatcherState and RunRecord, frozen values; the loop's periods
    turn.py        one step's working copy (state being built, effects asked)
    committed.py   committed events and telemetry (heartbeats, artifacts, bus, shims, GPUs)
    schedule.py    the scheduling pass: ends, claims, verdicts, waiting reasons as one batch
    scheduling.py  pure placement: who starts on which GPUs, who waits and why (Verdict);
                   experiments' max_concurrent and priority (ExperimentLimits)
    replies.py     the registry's answers by tag; the registry lost with calls in flight
    starting.py    start a run, note its worker, begin / escalate its kill
    ending.py      a started run's folder read: its end judged, its FinishRun built
    outcomes.py    FinishRun from an exit record and a kill plan; lost; the run's result
    reconcile.py   start-up / resync: the snapshot's pages, then each run's folder
    timers.py      the clock: bus health, sweeps, deadlines (silence, limits, grace)
    supervise.py   Watch, KillPlan, BusHealth: supervision of one run as values
    gpus.py        the GPU inventory as last read
    values.py      replaced(): a frozen value with some fields changed (the hot path's)

The shell (services/dispatcher/shell/loop.py) drives it:

    state = DispatcherState.initial(config, inventory, now, wall)
    loop:
        the registry not up: ping it; once it answers, step(state, RegistryBack())
        poll the follower and the launcher's wake fd (telemetry is drained each step);
        for each thing heard, in order: ShimEnded, CommittedEvent (ExperimentRevised,
        ExperimentResumed), Heartbeats (one per
        drain), ArtifactReported, BusSeen, GpusRead -> state, effects = step(state, obs)
        state, effects = step(state, Tick(monotonic, wall))   # timers, sweeps, deadlines
    each step's effects run at once (shell/effectrunner.py): its Call/Query effects go
    as one pipelined call_many (chunks of 200) and come back as Replied(tag, ...) in
    the order sent, before anything new is heard (an Unavailable: RegistryLost); the
    launcher's effects (StartWorker, Signal, KillProcesses, RecordKill, ObserveRun)
    come back as StartFailed / FolderRead; ReadGpus as GpusRead from a thread.
"""
