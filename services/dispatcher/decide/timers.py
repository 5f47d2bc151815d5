"""The clock: the bus judged, sweeps (folders read, retries, the GPUs read again) and
the deadlines of the watched runs (silence, time limit, a kill's grace). A starting
run's folder is read at every tick: its RunStarted goes out as soon as its shim has
written the worker record (submit -> RUNNING is one tick behind the shim, not a sweep).
One waiting in its back end's queue (a SLURM job pending for a reason, as its last
read said: RunRecord.backlogged) is read at full sweeps only (FULL_SWEEP_S), or when
its launcher tells that its job moved (BackEndMoved): a thousand pending jobs cost
no core, and the loop needs no tick for them (shell/pacing.py).

Silence is acted on only when the bus is proven healthy after the deadline: when the
only proof is older, a probe (our status) is asked for and the run is checked again
PROBE_GAP_S later. When the bus comes back, every watched run gets a fresh window.
"""

from __future__ import annotations

import dataclasses
import math

from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import Tick
from services.dispatcher.decide.phases import OBSERVED, Phase
from services.dispatcher.decide.starting import act_on, send_started
from core.livenesspolicy import Rule
from services.dispatcher.decide.gpus import GpuSource
from services.dispatcher.decide.state import (FULL_SWEEP_S, PROBE_GAP_S, SWEEP_S,
                                              DispatcherState, Registry)
from services.dispatcher.decide.supervise import awaits_evidence
from services.dispatcher.decide.turn import Turn

WATCHED = (Phase.RUNNING, Phase.KILLING)
ALWAYS_READ = (Phase.STARTING, Phase.REAPING, Phase.RECOVERING)  # at every sweep


def on_tick(turn: Turn, tick: Tick) -> None:
    turn.update(now=tick.now, wall=tick.wall)
    bus, came_back, lost = turn.state.bus.judge(tick.now)
    turn.update(bus=bus)
    if came_back:
        turn.log("info", "bus.reachable")
        for run in turn.state.in_phase(*WATCHED):
            if run.watch is not None:  # silence during the outage proves nothing
                turn.put(run.changed(watch=run.watch.beat(tick.now), liveness=(
                    run.liveness.restart(tick.now) if run.liveness is not None else None)))
    elif lost:
        turn.log("warning", "bus.unreachable", hint="no run is killed for silence meanwhile")
    if turn.state.registry is not Registry.UP:
        return
    for run_id in turn.state.starting:   # its worker record is read as soon as it is there
        starting = turn.state.runs.get(run_id)   # (not a backlogged one: at full sweeps)
        if starting is not None and not starting.shim_ended:
            turn.do(fx.ObserveRun(run_id))
    if tick.now >= turn.state.next_sweep:
        _sweep(turn)
    if tick.now >= turn.state.next_deadline:
        _deadlines(turn)


def _sweep(turn: Turn) -> None:
    s = turn.state
    full = s.now >= s.next_full
    turn.update(next_sweep=s.now + SWEEP_S, retry_due=False,
                dirty=s.dirty or s.retry_due or bool(s.in_phase(Phase.ENDING)))
    if full:
        turn.update(next_full=s.now + FULL_SWEEP_S)
    for run in s.runs.values():
        if run.phase not in OBSERVED:
            continue
        waiting = run.backlogged
        watched = (run.phase in ALWAYS_READ or run.adopted) and not waiting or run.shim_ended
        if full or watched:
            turn.do(fx.ObserveRun(run.run_id, if_exited=not watched and not waiting))
        if run.pgid is not None and not run.started_recorded:
            send_started(turn, run)
    if full and not s.gpu_read_due and (any(
            r.config.resources.gpus for r in s.in_phase(Phase.QUEUED)) or _gpu_judged(s)):
        turn.update(gpu_read_due=True)
        turn.do(fx.ReadGpus(frozenset(r.pgid for r in s.runs.values() if r.pgid)))


def _gpu_judged(s: DispatcherState) -> bool:
    """A running run on real GPUs whose gpu_idle rule is on: their utilisation is read."""
    return s.inventory.source is GpuSource.NVML and any(
        r.gpus and r.phase is Phase.RUNNING and r.config.liveness.spec(Rule.GPU_IDLE).enabled
        for r in s.runs.values())


def _deadlines(turn: Turn) -> None:
    nearest, probe = math.inf, False
    for run in turn.state.in_phase(*WATCHED):
        act_on(turn, run)
        run = turn.state.runs[run.run_id]
        s = turn.state
        if run.watch is None or run.pgid is None:
            continue
        if run.kill is not None:
            if not run.kill.killed:
                nearest = min(nearest, run.kill.kill_due)
            continue
        if not s.bus.healthy(s.now):
            # No silence is acted on while the bus is out: only the time limit is due.
            if run.watch.time_limit_s:
                nearest = min(nearest, run.watch.started + run.watch.time_limit_s)
        elif awaits_evidence(run.watch, run.kill, s.now, s.bus.last_seen):
            probe = True
        else:
            nearest = min(nearest, run.watch.deadline())
    s = turn.state
    if probe:
        turn.do(fx.ProbeBus())
        nearest = min(nearest, s.now + PROBE_GAP_S)
    elif not s.bus.healthy(s.now):
        nearest = min(nearest, s.now + 1.0)  # look again once the bus may be back
    turn.state = dataclasses.replace(turn.state, next_deadline=nearest)
