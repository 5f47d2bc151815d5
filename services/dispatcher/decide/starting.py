"""Starting a run, noting its worker, and beginning or escalating its kill.

    STARTING --worker_seen--> RUNNING --kill_begun--> KILLING --escalated--> KILLING
    STARTING --spawn_failed--> ENDING        (a claimed GPU gone; the shell's StartFailed)
"""

from __future__ import annotations

from core.commands import RecordStarted
from core.events import TerminalCause
from services.dispatcher.decide import cores as cpus
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import WorkerRecord
from services.dispatcher.decide.outcomes import failed
from services.dispatcher.decide.phases import HOLDING, Move, Phase
from services.dispatcher.decide.state import CallFor, RunRecord
from services.dispatcher.decide.supervise import (KillPlan, Outcome, Sig, Watch, cancel_plan,
                                                  check)
from services.dispatcher.decide.turn import Turn


def start(turn: Turn, run: RunRecord) -> None:
    """A STARTING run: its worker is requested, unless a GPU it holds is gone."""
    gone = turn.state.inventory.gone(run.gpus) or run.python_error
    if gone:
        spawn_failed(turn, run, gone)
        return
    cores = pin(turn, run)
    turn.do(fx.StartWorker(run.run_id, run.config, run.gpus, run.attempt, run.resume_from,
                           cores=cores, python=run.python))
    turn.count(started=1)
    turn.log("info", "run.spawned", run_id=run.run_id, gpus=list(run.gpus),
             attempt=run.attempt, resume_from=run.resume_from or None,
             cores=list(cores) or None)


def pin(turn: Turn, run: RunRecord) -> tuple[int, ...]:
    """The cores for the run's worker (decide/cores.py), kept in its record while it
    holds its slots; () where it is not pinned."""
    config = turn.state.config
    if not config.cores or config.cpu_slots > len(config.cores) or \
            config.on_slurm(run.config):   # SLURM places it
        if run.cores:
            turn.put(run.changed(cores=()))
        return ()   # not pinned, as cores.choose says (no scan of the runs)
    held = [r for r in turn.state.runs.values() if r.phase in HOLDING and r.run_id != run.run_id
            and not config.on_slurm(r.config)]
    cores, why = cpus.choose(config.cores, config.cpu_slots, [c for r in held for c in r.cores],
                             run.cpu_slots, sum(r.phase is Phase.RECOVERING for r in held))
    if why:
        turn.log("warning", "run.not_pinned", run_id=run.run_id, reason=why)
    turn.put(run.changed(cores=cores))
    return cores


def spawn_failed(turn: Turn, run: RunRecord, message: str) -> None:
    turn.move(run, Move.SPAWN_FAILED,
              finish=failed(run.run_id, TerminalCause.SPAWN_ERROR, message))
    turn.schedule_soon()


def send_started(turn: Turn, run: RunRecord) -> None:
    """RecordStarted (again, after a not-applied answer): the run's end waits for it."""
    if run.pid is None or turn.in_flight(CallFor.STARTED, run.run_id):
        return
    config = turn.state.config
    turn.call(CallFor.STARTED, RecordStarted(
        run.run_id, run.pid, run.pid_start_time or 0.0, run.host or config.host,
        launcher="slurm" if run.job_id or config.on_slurm(run.config) else "local",
        job_id=run.job_id, job_gpus=run.job_gpus), run.run_id)


def note_worker(turn: Turn, run: RunRecord, worker: WorkerRecord, move: Move) -> RunRecord:
    """Its worker record is read: watched from its true start (the shim's started_at),
    RunStarted sent unless the registry has it, early artifacts sent after it."""
    s = turn.state
    age = max(0.0, s.wall - worker.started_at) if worker.started_at is not None else 0.0
    watch = Watch.from_start(run.config, s.now, age)
    after = turn.move(run, move, pgid=worker.pgid, pid=worker.pid,
                      pid_start_time=worker.start_time, watch=watch, artifacts_todo=(),
                      cores=run.cores or worker.cores)
    assert after is not None
    if not after.started_recorded:
        send_started(turn, after)
    for art in run.artifacts_todo:
        turn.call(CallFor.ARTIFACT, art, run.run_id, art)
    watch_until(turn, watch.deadline())
    if after.cancel is not None:  # asked while it was starting: done now
        begin_cancel(turn, after)
        after = turn.state.runs[after.run_id]
    return after


def watch_until(turn: Turn, due: float) -> None:
    if due < turn.state.next_deadline:
        turn.update(next_deadline=due)


def begin_cancel(turn: Turn, run: RunRecord) -> None:
    """A RUNNING run cancelled: SIGTERM now, its grace counted from the recorded cancel
    (also when we learn of it late: one already over ends in SIGKILL at the next tick)."""
    if run.phase is not Phase.RUNNING or run.watch is None or run.pgid is None \
            or run.cancel is None:
        return
    s = turn.state
    since = max(0.0, s.wall - run.cancel.at) if run.cancel.at is not None else 0.0
    plan = cancel_plan(run.watch, s.now, since, run.cancel.requested_by, run.cancel.reason)
    _term(turn, run, plan, s.wall - since)


def begin_stop(turn: Turn, run: RunRecord, message: str, grace_s: float) -> None:
    """A RUNNING run ended by a liveness rule (not_learning): SIGTERM now, SIGKILL
    after ``grace_s`` (0: at the next tick)."""
    if run.phase is not Phase.RUNNING or run.watch is None or run.pgid is None \
            or run.kill is not None:
        return
    s = turn.state
    turn.count(kills=1)
    _term(turn, run, KillPlan(Outcome.FAILED, TerminalCause.NOT_LEARNING, message, s.now,
                              grace_s), s.wall)


def _term(turn: Turn, run: RunRecord, plan: KillPlan, since_wall: float) -> None:
    assert run.pgid is not None
    turn.do(fx.Signal(run.pgid, Sig.TERM, run.run_id))
    turn.do(fx.RecordKill(run.run_id, plan.outcome.value, plan.cause.value, plan.message,
                          since_wall, plan.grace_s))
    turn.log("info", "run.signal", run_id=run.run_id, signal=Sig.TERM.value,
             cause=plan.cause.value)
    turn.move(run, Move.KILL_BEGUN, kill=plan)
    watch_until(turn, plan.kill_due)


def act_on(turn: Turn, run: RunRecord) -> None:
    """Silence, the time limit or a kill in progress: the signal due now, if any."""
    if run.watch is None or run.pgid is None:
        return
    s = turn.state
    due = check(run.watch, run.kill, s.now, s.bus.last_seen)
    if due is None:
        return
    sig, plan = due
    turn.count(kills=1)
    if sig is Sig.TERM:
        _term(turn, run, plan, s.wall)
        return
    turn.do(fx.Signal(run.pgid, Sig.KILL, run.run_id))
    turn.log("info", "run.signal", run_id=run.run_id, signal=Sig.KILL.value,
             cause=plan.cause.value)
    turn.move(run, Move.ESCALATED, kill=plan)
