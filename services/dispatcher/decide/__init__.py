"""The dispatcher's decisions, pure: ``step(state, observation) -> (state, effects)``.

Imports only ``core`` and I/O-free standard library modules.

    inputs.py      what the shell observed (events, heartbeats, folder reads, replies, ticks)
    effects.py     what the shell is asked to do (registry calls, start, signal, read, log)
    phases.py      the run lifecycle: one table of phases and moves
    state.py       DispatcherState and RunRecord, frozen values
    step.py        the entry point: one handler per observation type
    ...            (see the report in the module tree)

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
            GpusRead); Log effects are written by bus.logs; ProbeBus hurries our status.
"""
