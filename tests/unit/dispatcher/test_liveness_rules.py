"""The liveness rules as values (decide/liveness.py) and at work in the decision core
(decide/learning.py): each rule's flag, its clear and its hysteresis, warm-ups, declared
evaluations, the bus-health rule, the actions (checkpoint, stop, kill), a flag the
registry could not apply, and a standing flag of an adopted run."""

from __future__ import annotations

from typing import Any

from core.flagcommands import ClearRunFlag, FlagRun
from core.livenesspolicy import LivenessPolicy, Rule
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import BusSeen, Heartbeat, ReplyKind, RunView
from services.dispatcher.decide.liveness import (EVALUATING, Beat, Liveness, observe,
                                                 observe_gpus)
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.supervise import Sig
from tests.unit.dispatcher.driver import WALL0, Driver, commands, folder, of, worker


def policy(**rules: dict[str, Any]) -> LivenessPolicy:
    return LivenessPolicy.from_map({r: {"warmup_s": 0, **spec} for r, spec in rules.items()})


def feed(live: Liveness, beats: list[Beat], judging: bool = True) -> tuple[Liveness, list]:
    said = []
    for beat in beats:
        live, out = observe(live, beat, judging)
        said += [(v.rule, v.flag) for v in out]
    return live, said


def steps(t0: float, t1: float, step_of, dt: float = 0.2, **kw: Any) -> list[Beat]:
    """Beats every ``dt`` from t0 to t1 (exclusive), the step at each ``step_of(t)``."""
    out, t = [], t0
    while t < t1 - 1e-9:
        out.append(Beat(t, step_of(t), sent=t, **kw))
        t = round(t + dt, 6)
    return out


# --- stalled -------------------------------------------------------------------------
def test_stalled_flags_after_its_window_once_and_clears_when_the_step_advances() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 1.0}), 0.0)
    live, said = feed(live, steps(0.0, 1.0, lambda t: int(t * 100)))   # advancing
    assert said == []
    frozen = live.step                       # its last advance: at 0.8
    live, said = feed(live, steps(1.0, 1.7, lambda t: frozen))
    assert said == []                                                  # 0.8 s stalled
    live, said = feed(live, steps(1.8, 4.0, lambda t: frozen))
    assert said == [(Rule.STALLED, True)]                              # flagged once
    assert Rule.STALLED in live.standing
    live, out = observe(live, Beat(4.0, frozen + 1, 4.0), True)
    assert [(v.rule, v.flag) for v in out] == [(Rule.STALLED, False)]
    assert out[0].evidence["stalled_for_s"] >= 2.0 and Rule.STALLED not in live.standing


def test_stalled_evidence_and_timing() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 1.0}), 0.0)
    live, _ = observe(live, Beat(0.0, 5, 0.0), True)
    flags = [out for t in (0.4, 0.8, 1.2) for out in [observe(live, Beat(t, 5, t), True)[1]]]
    assert flags[0] == [] and flags[1] == []
    (v,) = flags[2]
    assert v.evidence == {"step": 5, "stalled_for_s": 1.2, "window_s": 1.0}


def test_a_worker_that_never_reports_a_step_is_not_judged_stalled() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 0.5}), 0.0)
    _, said = feed(live, steps(0.0, 5.0, lambda t: 0))
    assert said == []


def test_no_stall_flag_during_warm_up_or_while_the_bus_is_not_proven() -> None:
    rules = policy(stalled={"window_s": 0.5, "warmup_s": 3.0})
    live = Liveness.begin(rules, 0.0)
    _, said = feed(live, steps(0.0, 2.9, lambda t: 7))
    assert said == []                                     # warm-up
    _, said = feed(live, steps(0.0, 5.0, lambda t: 7), judging=False)
    assert said == []                                     # the bus not proven healthy
    _, said = feed(live, steps(0.0, 3.4, lambda t: 7))
    assert said == [(Rule.STALLED, True)]                 # after the warm-up


def test_a_declared_evaluation_is_not_judged_and_the_window_starts_again_after_it() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 1.0}), 0.0)
    live, _ = observe(live, Beat(0.0, 50, 0.0), True)
    live, said = feed(live, steps(0.2, 5.0, lambda t: 50, phase=EVALUATING))
    assert said == [] and live.evaluating
    live, said = feed(live, steps(5.0, 5.9, lambda t: 50))    # 0.9 s after the evaluation
    assert said == []
    _, said = feed(live, steps(6.0, 6.2, lambda t: 50))
    assert said == [(Rule.STALLED, True)]


def test_a_first_step_heard_during_an_evaluation_starts_the_stall_clock() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 1.0}), 0.0)
    live, said = feed(live, steps(0.0, 2.0, lambda t: 400, phase=EVALUATING))
    assert said == []
    _, said = feed(live, steps(2.0, 4.0, lambda t: 400))
    assert said == [(Rule.STALLED, True)]


def test_the_bus_coming_back_starts_the_windows_again() -> None:
    live = Liveness.begin(policy(stalled={"window_s": 1.0}), 0.0)
    live, _ = observe(live, Beat(0.0, 3, 0.0), True)
    live = live.restart(5.0)
    _, said = feed(live, steps(5.0, 5.9, lambda t: 3))
    assert said == []


# --- diverged ------------------------------------------------------------------------
def test_diverged_names_the_metric_and_clears_after_finite_metrics_for_clear_after_s() -> None:
    live = Liveness.begin(policy(diverged={"clear_after_s": 1.0}), 0.0)
    live, out = observe(live, Beat(0.2, 10, 0.2, finite=True), True)
    assert out == []
    live, out = observe(live, Beat(0.4, 11, 0.4, finite=False, nonfinite="loss"), True)
    assert [(v.rule, v.flag, v.evidence) for v in out] == \
        [(Rule.DIVERGED, True, {"metric": "loss", "step": 11})]
    live, out = observe(live, Beat(0.6, 12, 0.6, finite=False, nonfinite="loss"), True)
    assert out == []                                    # stands: not flagged again
    live, said = feed(live, [Beat(t, 13, t, finite=True) for t in (0.8, 1.2, 1.6)])
    assert said == []                                   # finite for 0.8 s only
    live, out = observe(live, Beat(1.8, 14, 1.8, finite=True), True)
    assert [(v.rule, v.flag) for v in out] == [(Rule.DIVERGED, False)]
    assert out[0].evidence == {"metric": "loss", "finite_for_s": 1.0}
    _, out = observe(live, Beat(2.0, 15, 2.0, finite=None), True)   # nothing logged
    assert out == []


# --- slowed --------------------------------------------------------------------------
def slow_run(rate_of, t1: float, **spec: Any) -> tuple[Liveness, list]:
    live = Liveness.begin(policy(slowed={"window_s": 2.0, **spec}), 0.0)
    beats, step, t = [], 0.0, 0.0
    while t < t1:
        beats.append(Beat(t, int(step), sent=t))
        step += rate_of(t) * 0.2
        t = round(t + 0.2, 6)
    return feed(live, beats)


def test_slowed_flags_below_its_fraction_of_the_median_for_its_window() -> None:
    live, said = slow_run(lambda t: 1000.0 if t < 4.0 else 50.0, 7.0)
    assert said == [(Rule.SLOWED, True)]
    assert 900 < live.median <= 1000                    # not dragged down by the slow spell


def test_slowed_does_not_flag_a_dip_shorter_than_its_window_nor_a_mild_slowdown() -> None:
    _, said = slow_run(lambda t: 50.0 if 4.0 <= t < 5.2 else 1000.0, 9.0)
    assert said == []
    _, said = slow_run(lambda t: 1000.0 if t < 4.0 else 300.0, 9.0)
    assert said == []


def test_slowed_clears_at_its_clear_fraction_not_between_the_two() -> None:
    live, said = slow_run(lambda t: 1000.0 if t < 4.0 else (50.0 if t < 7.0 else 300.0), 9.0)
    assert said == [(Rule.SLOWED, True)] and Rule.SLOWED in live.standing   # 0.3: between
    live, said = slow_run(lambda t: 1000.0 if t < 4.0 else (50.0 if t < 7.0 else 800.0), 9.0)
    assert said == [(Rule.SLOWED, True), (Rule.SLOWED, False)]


def test_start_up_rates_are_not_the_runs_own() -> None:
    """A fast start-up (a warm-up of 3 s) then the run's real, slower pace: no flag."""
    _, said = slow_run(lambda t: 10_000.0 if t < 3.0 else 200.0, 9.0, warmup_s=3.0)
    assert said == []


# --- gpu_idle ------------------------------------------------------------------------
def test_gpu_idle_flags_after_its_window_and_clears_at_clear_pct() -> None:
    live = Liveness.begin(policy(gpu_idle={"window_s": 10.0}), 0.0)
    said = []
    for t, pct in ((0, 90), (2, 1), (6, 3), (11, 2), (12, 0), (14, 10), (16, 40)):
        live, out = observe_gpus(live, float(t), float(pct), ("GPU-0",), True)
        said += [(t, v.flag) for v in out]
    assert said == [(12, True), (16, False)]      # 10 s below 5 %; 10 % is not a clear


# --- in the decision core --------------------------------------------------------------
STALL = {"liveness": {"stalled": {"window_s": 1.0, "warmup_s": 0}}, "heartbeat_timeout_s": 30.0,
         "heartbeat_interval_s": 0.2,
         "startup_grace_s": 0.0, "cancel_grace_s": 3.0}


def beat(d: Driver, run_id: str, step: int, dt: float = 0.2, **kw: Any) -> list[Any]:
    d.tick(dt)
    d.feed(BusSeen(d.now))
    return d.feed(Heartbeat(run_id, step, d.now, sent=WALL0 + d.now, **kw))


def stalled(d: Driver, run_id: str, beats: int = 8) -> list[Any]:
    out: list[Any] = []
    for _ in range(beats):
        out += beat(d, run_id, 40)
    return out


def with_action(action: str) -> dict[str, Any]:
    return {**STALL, "liveness": {"stalled": {"window_s": 1.0, "warmup_s": 0,
                                              "action": action}}}


def test_a_flag_goes_to_the_registry_and_a_clear_follows_it(d: Driver) -> None:
    d.start("r1", **STALL)
    beat(d, "r1", 10)
    effects = stalled(d, "r1")
    (flag,) = commands(effects, FlagRun)
    assert (flag.run_id, flag.attempt, flag.rule, flag.action) == ("r1", 1, "stalled", "warn")
    assert flag.evidence["step"] == 40 and not of(effects, fx.Signal)
    d.answer(effects, only=FlagRun)
    (clear,) = commands(beat(d, "r1", 41), ClearRunFlag)
    assert clear.rule == "stalled" and clear.evidence["step"] == 41


def test_no_flag_while_the_bus_is_not_seen_working(d: Driver) -> None:
    d.start("r1", **STALL)
    d.feed(Heartbeat("r1", 10, d.now, sent=WALL0 + d.now))
    effects: list[Any] = []
    for _ in range(20):
        d.tick(0.2)   # no BusSeen: our own status does not come back
        effects += d.feed(Heartbeat("r1", 40, d.now, sent=WALL0 + d.now))
    assert not commands(effects, FlagRun)


def test_action_checkpoint_sends_sigusr2_to_the_worker(d: Driver) -> None:
    d.start("r1", **with_action("checkpoint"))
    beat(d, "r1", 10)
    effects = stalled(d, "r1")
    assert commands(effects, FlagRun)[0].action == "checkpoint"
    assert [(s.pgid, s.sig) for s in of(effects, fx.Signal)] == [(100, Sig.USR2)]
    assert d.phase("r1") is Phase.RUNNING


def test_action_stop_ends_the_run_not_learning_with_the_cancel_grace(d: Driver) -> None:
    d.start("r1", **with_action("stop"))
    beat(d, "r1", 10)
    effects = stalled(d, "r1")
    assert [s.sig for s in of(effects, fx.Signal)] == [Sig.TERM]
    (kill,) = of(effects, fx.RecordKill)
    assert (kill.outcome, kill.cause, kill.grace_s) == ("failed", "not_learning", 3.0)
    assert kill.message.startswith("not learning: stalled (step 40, stalled_for_s")
    assert d.phase("r1") is Phase.KILLING
    assert not commands(beat(d, "r1", 40), FlagRun)   # a run being stopped is not judged


def test_action_kill_sends_sigkill_at_the_next_tick(d: Driver) -> None:
    d.start("r1", **with_action("kill"))
    beat(d, "r1", 10)
    before = len(d.log)
    for _ in range(8):
        if commands(beat(d, "r1", 40), FlagRun):
            break
    assert [s.sig for s in of(d.log[before:], fx.Signal)] == [Sig.TERM]
    assert [s.sig for s in of(d.tick(0.01), fx.Signal)] == [Sig.KILL]
    assert d.state.runs["r1"].kill.cause.value == "not_learning"


def test_a_flag_the_registry_could_not_apply_is_judged_again(d: Driver) -> None:
    d.start("r1", **STALL)
    beat(d, "r1", 10)
    effects = stalled(d, "r1")
    d.answer(effects, ReplyKind.NOT_APPLIED, only=FlagRun, code="internal")
    (again,) = commands(beat(d, "r1", 40), FlagRun)
    assert again.rule == "stalled"


def test_an_adopted_run_with_a_standing_flag_gets_it_cleared() -> None:
    d = Driver()
    d.boot(RunView("r1", "RUNNING", STALL, 3, submitted_seq=3, flags=frozenset({"stalled"})))
    d.settle(d.feed(folder("r1", worker=worker(100, WALL0 - 500), worker_alive=True,
                           shim_alive=True)))
    assert d.phase("r1") is Phase.RUNNING
    beat(d, "r1", 10)
    (clear,) = commands(beat(d, "r1", 11), ClearRunFlag)
    assert clear.rule == "stalled"
