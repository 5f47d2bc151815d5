"""The dispatcher's decisions, pure: ``step(state, observation) -> (state, effects)``.

Imports only ``core`` and I/O-free standard library modules.

    step.py        the entry point: step(state, observation), one handler per type
    inputs.py      observations: ticks, committed events, heartbeats, folder reads, replies
    effects.py     effects: registry calls (core.commands) and queries, start, signal, ...
    phases.py      the run lifecycle: one table of phases and moves, IllegalMove
    state.py       DispatcherState and RunRecord, frozen values; the loop's periods
    turn.py        one step's working copy (state being built, effects asked)
    committed.py   committed events and telemetry (heartbeats, artifacts, bus, shims, GPUs)
    schedule.py    the scheduling pass: ends, claims, verdicts, waiting reasons as one batch
    scheduling.py  pure placement: who starts on which GPUs, who waits and why (Verdict)
    replies.py     the registry's answers by tag; the registry lost with calls in flight
    starting.py    start a run, note its worker, begin / escalate its kill
    ending.py      a started run's folder read: its end judged, its FinishRun built
    outcomes.py    FinishRun from an exit record and a kill plan; lost; the run's result
    reconcile.py   start-up / resync: the snapshot's pages, then each run's folder
    timers.py      the clock: bus health, sweeps, deadlines (silence, limits, grace)
    supervise.py   Watch, KillPlan, BusHealth: supervision of one run as values
    gpus.py        the GPU inventory as last read

How the shell drives it (the later switch of services/dispatcher/service.py):

    state = DispatcherState.initial(config, inventory, now, wall)
    state, effects = step(state, RegistryBack())          # the start-up snapshot
    loop:
        poll the follower, telemetry, the fork server's wake fd (timeout until
        state.next_wake(), at most the status interval);
        for each thing heard, in order: observation -> state, effects = step(state, obs)
        state, effects = step(state, Tick(monotonic, wall))   # timers, sweeps, deadlines
        run(effects):
            Call/Query effects of ONE step are gathered and sent as one pipelined
            call_many (in chunks of PIPELINE); each result goes back in as Replied(tag,
            ...) in the order sent, before the next observation, so one scheduling pass
            stays one round trip; an Unavailable goes in as RegistryLost;
            StartWorker, Signal, KillProcesses, RecordKill, ObserveRun, ReadGpus are run
            by the OS side (fork server, signals, run folders, NVML in a thread) and
            what they find comes back as observations (FolderRead, StartFailed,
            GpusRead); Log effects are written by runtime.logs; ProbeBus hurries our status.
"""
