"""The liveness rules at work (docs/SUPERVISION.md): the heartbeats and GPU readings
of each running attempt judged (decide/liveness.py, the rules as values), and what a
verdict asks for: a FlagRun or ClearRunFlag to the registry and the flag's action.

    warn         the flag only (its event, a log line)
    checkpoint   and SIGUSR2 to the worker: the SDK's checkpoint_requested
    stop         and SIGTERM, SIGKILL after cancel_grace_s: failed, cause not_learning
    kill         and SIGKILL at the next tick: failed, cause not_learning

A run is judged once the registry has its RunStarted, while RUNNING and not being
stopped or cancelled. A flag the registry could not apply (a failed batch) is judged
again at the next beat.
"""

from __future__ import annotations

from typing import Mapping, Optional

from core.flagcommands import ClearRunFlag, FlagRun
from core.livenesspolicy import Action, Rule
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import Heartbeat, Replied, ReplyKind
from services.dispatcher.decide.liveness import Beat, Liveness, Verdict, observe, observe_gpus
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.starting import begin_stop
from services.dispatcher.decide.state import CallFor, InFlight, RunRecord
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.decide.turn import Turn
from services.dispatcher.decide.values import replaced


def judged(run: RunRecord) -> bool:
    return run.phase is Phase.RUNNING and run.started_recorded and run.kill is None \
        and run.cancel is None


def _watch(run: RunRecord, at: float) -> Liveness:
    if run.liveness is not None:
        return run.liveness
    standing = frozenset(Rule(r) for r in run.standing_flags if r in Rule._value2member_map_)
    return Liveness.begin(run.config.liveness, at, standing)


def heard(run: RunRecord, beat: Heartbeat, bus_ok: bool) -> tuple[Optional[Liveness],
                                                                  list[Verdict]]:
    """The run's watch after its beat and the verdicts; (its watch, []) when it is not
    judged now."""
    if not judged(run):
        return run.liveness, []
    return observe(_watch(run, beat.at), Beat(beat.at, beat.step, beat.sent, beat.finite,
                                              beat.nonfinite, beat.phase), bus_ok)


def on_utilization(turn: Turn, utilization: Mapping[str, float]) -> None:
    """An NVML reading (uuid -> GPU %): the gpu_idle rule of each running run on them."""
    s = turn.state
    judging = s.bus.healthy(s.now)
    for run in list(s.runs.values()):
        if not run.gpus or not judged(run) or run.liveness is None \
                or not run.config.liveness.spec(Rule.GPU_IDLE).enabled:
            continue
        seen = [utilization[g] for g in run.gpus if g in utilization]
        if not seen:
            continue
        live, verdicts = observe_gpus(run.liveness, s.now, max(seen), run.gpus, judging)
        act(turn, turn.put(run.changed(liveness=live)), verdicts)


def act(turn: Turn, run: RunRecord, verdicts: list[Verdict]) -> None:
    """Each verdict to the registry, and each flag's action."""
    for v in verdicts:
        spec = run.config.liveness.spec(v.rule)
        if not v.flag:
            turn.call(CallFor.CLEAR_FLAG, ClearRunFlag(run.run_id, run.attempt, v.rule.value,
                                                       v.evidence), run.run_id, v)
            turn.log("info", "run.flag_cleared", run_id=run.run_id, rule=v.rule.value,
                     evidence=v.evidence)
            continue
        turn.call(CallFor.FLAG, FlagRun(run.run_id, run.attempt, v.rule.value,
                                        spec.action.value, v.evidence), run.run_id, v)
        turn.count(flags=1)
        turn.log("warning", "run.flagged", run_id=run.run_id, rule=v.rule.value,
                 action=spec.action.value, evidence=v.evidence)
        if spec.action is Action.CHECKPOINT and run.pgid is not None:
            turn.do(fx.Signal(run.pgid, Sig.USR2, run.run_id))
        elif spec.action in (Action.STOP, Action.KILL):
            grace = run.config.cancel_grace_s if spec.action is Action.STOP else 0.0
            begin_stop(turn, run, f"not learning: {v.rule.value} ({_said(v)}); action "
                                  f"{spec.action.value}", grace)
            return   # the run is being stopped: its other verdicts wait for nothing


def _said(v: Verdict) -> str:
    return ", ".join(f"{k} {val}" for k, val in v.evidence.items() if k != "gpus")


def on_flag_reply(turn: Turn, run: RunRecord, reply: Replied, what: InFlight) -> None:
    """A flag or clear not applied (a failed batch): its rule judged again at the next
    beat. Refused (the attempt ended meanwhile): nothing to do."""
    if reply.kind is not ReplyKind.NOT_APPLIED or run.liveness is None:
        return
    verdict: Verdict = what.detail
    standing = set(run.liveness.standing)
    (standing.discard if verdict.flag else standing.add)(verdict.rule)
    turn.put(run.changed(liveness=replaced(run.liveness, standing=frozenset(standing))))
