"""Alive but not learning: the liveness rules of one running attempt, as values
(docs/SUPERVISION.md). Pure: ``observe`` takes a heartbeat, ``observe_gpus`` a GPU
utilisation reading; both return the watch after it and the verdicts (flag or clear a
rule) it calls for. Times are the dispatcher's monotonic seconds, except that stalls
and rates are timed on the worker's own send times (``Beat.sent``, where the beat has
one), so that the batching of heartbeats on the dispatcher's side adds no jitter: a
stall is flagged at the first beat sent ``window_s`` after the one that showed its last
step.

- **stalled**: beats arrive but the step counter has not advanced for ``window_s``.
  Judged once the attempt has reported a step (a worker that never calls
  ``progress(step=...)`` is not judged by it). Cleared when the step advances.
- **diverged**: a beat says a metric logged since the one before was not finite.
  Cleared after ``clear_after_s`` of finite metrics.
- **slowed**: steps/s, measured over spans of ``span_s``, below ``fraction`` of the
  run's own running median for ``window_s``. The median is of the spans that were
  not slow (a long slow spell does not drag it down to itself). Cleared once a span
  is back at ``clear_fraction`` of the median.
- **gpu_idle**: the busiest of the run's GPUs below ``threshold_pct`` for
  ``window_s`` (real GPUs only: the shell reads NVML utilisation). Cleared at
  ``clear_pct``.

No judgement (flags are never raised) during a rule's warm-up (from the attempt's
first heartbeat), during an evaluation the worker declares (``phase`` of
``evaluating``), or while the bus is not proven healthy; the windows start again
when an evaluation ends and when the bus comes back (``restart``). Clears need
positive evidence (a beat that shows it) and are judged at any time.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any, Optional

from core.livenesspolicy import LivenessPolicy, Rule
from services.dispatcher.decide.values import replaced

EVALUATING = "evaluating"   # the phase a worker declares during an evaluation
MAX_RATES = 60              # the spans the running median is taken over (the newest)
MIN_RATES = 5               # spans measured before slowed judges
MAX_SPAN_S = 10.0           # a rate is measured over this long (less for short windows)


@dataclass(frozen=True)
class Beat:
    """What a heartbeat tells the rules."""

    at: float                        # when heard (monotonic)
    step: Optional[int] = None
    sent: Optional[float] = None     # the worker's clock when sent
    finite: Optional[bool] = None    # every metric since the last beat finite (None: none)
    nonfinite: str = ""              # the first metric that was not
    phase: str = ""


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    flag: bool                       # True: raise the flag; False: clear it
    evidence: dict[str, Any]


@dataclass(frozen=True)
class Liveness:
    policy: LivenessPolicy
    since: float                         # the first beat (warm-ups count from it)
    standing: frozenset[Rule] = frozenset()
    step: Optional[int] = None           # the last step heard
    advanced_at: Optional[float] = None  # when it last advanced (None: none reported),
    #                                      on the beats' clock (_clock)
    rebase: bool = False                 # the next beat starts the stall window again
    last_sent: Optional[float] = None
    evaluating: bool = False
    span_start: Optional[tuple[int, float]] = None   # (step, sent) where a span began
    rates: tuple[float, ...] = ()        # the spans' steps/s that were not slow
    median: float = 0.0
    slow_since: Optional[float] = None
    last_rate: float = 0.0
    nonfinite: str = ""                  # the metric that diverged, while it stands
    finite_since: Optional[float] = None
    gpu_low_since: Optional[float] = None

    @staticmethod
    def begin(policy: LivenessPolicy, at: float,
              standing: frozenset[Rule] = frozenset()) -> "Liveness":
        """The watch from an attempt's first heartbeat; ``standing``: the flags the
        registry holds for the attempt (a restarted dispatcher adopting it)."""
        return Liveness(policy, at, standing)

    def warm(self, rule: Rule, at: float) -> bool:
        spec = self.policy.spec(rule)
        return spec.enabled and at - self.since >= spec.warmup_s

    def restart(self, at: float) -> "Liveness":
        """Windows from now (the bus came back, an evaluation ended): what was seen
        before proves nothing about now."""
        return replaced(self, rebase=self.advanced_at is not None, span_start=None,
                        slow_since=None, gpu_low_since=None)

    def settled(self, verdicts: list[Verdict]) -> "Liveness":
        standing = set(self.standing)
        for v in verdicts:
            (standing.add if v.flag else standing.discard)(v.rule)
        return replaced(self, standing=frozenset(standing))


def observe(live: Liveness, beat: Beat, judging: bool) -> tuple[Liveness, list[Verdict]]:
    """The watch after ``beat``; ``judging``: the bus is proven healthy (flags may be
    raised). The verdicts change ``standing`` already."""
    out: list[Verdict] = []
    evaluating = beat.phase == EVALUATING
    if evaluating != live.evaluating:
        live = replaced(live, evaluating=evaluating)
        if not evaluating:
            live = live.restart(beat.at)
    if evaluating:
        return replaced(live, step=beat.step if beat.step is not None else live.step,
                        span_start=None, slow_since=None), out
    live = _stalled(live, beat, judging, out)
    live = _diverged(live, beat, judging, out)
    live = _slowed(live, beat, judging, out)
    return live.settled(out) if out else live, out


def observe_gpus(live: Liveness, at: float, busiest_pct: float, gpus: tuple[str, ...],
                 judging: bool) -> tuple[Liveness, list[Verdict]]:
    """The watch after a utilisation reading of the run's GPUs (the busiest one's %)."""
    spec = live.policy.spec(Rule.GPU_IDLE)
    out: list[Verdict] = []
    standing = Rule.GPU_IDLE in live.standing
    if busiest_pct >= spec.threshold_pct:
        if standing and busiest_pct >= spec.clear_pct:
            out.append(Verdict(Rule.GPU_IDLE, False, {"utilization_pct": busiest_pct,
                                                      "gpus": list(gpus)}))
        live = replaced(live, gpu_low_since=None)
    elif not live.evaluating:
        since = live.gpu_low_since if live.gpu_low_since is not None else at
        live = replaced(live, gpu_low_since=since)
        if judging and not standing and live.warm(Rule.GPU_IDLE, at) \
                and at - since >= spec.window_s:
            out.append(Verdict(Rule.GPU_IDLE, True, {
                "utilization_pct": busiest_pct, "threshold_pct": spec.threshold_pct,
                "for_s": round(at - since, 3), "window_s": spec.window_s,
                "gpus": list(gpus)}))
    return live.settled(out) if out else live, out


def _clock(live: Liveness, beat: Beat) -> tuple[float, bool]:
    """The beat's time for stall windows: its send time, unless it has none or the
    worker's clock went back (then the dispatcher's, and the window starts again)."""
    if beat.sent is None:
        return beat.at, live.last_sent is not None
    return beat.sent, live.last_sent is not None and beat.sent < live.last_sent


def _stalled(live: Liveness, beat: Beat, judging: bool, out: list[Verdict]) -> Liveness:
    step = beat.step
    if step is None:
        return live
    spec = live.policy.spec(Rule.STALLED)
    t, jumped = _clock(live, beat)
    if live.step is None or step != live.step:
        if live.advanced_at is not None and Rule.STALLED in live.standing:
            out.append(Verdict(Rule.STALLED, False, {
                "step": step, "stalled_at_step": live.step,
                "stalled_for_s": round(max(0.0, t - live.advanced_at), 3)}))
        # the first step heard counts as progress when it is past 0 (a resumed attempt)
        moved = live.step is not None or step > 0
        return replaced(live, step=step, advanced_at=t if moved else live.advanced_at,
                        rebase=False, last_sent=beat.sent)
    if live.advanced_at is not None and (live.rebase or jumped):
        return replaced(live, advanced_at=t, rebase=False, last_sent=beat.sent)
    if live.last_sent != beat.sent:
        live = replaced(live, last_sent=beat.sent)
    if live.advanced_at is None or not judging or Rule.STALLED in live.standing \
            or not live.warm(Rule.STALLED, beat.at):
        return live
    stalled_for = t - live.advanced_at
    if stalled_for >= spec.window_s:
        out.append(Verdict(Rule.STALLED, True, {
            "step": step, "stalled_for_s": round(stalled_for, 3),
            "window_s": spec.window_s}))
    return live


def _diverged(live: Liveness, beat: Beat, judging: bool, out: list[Verdict]) -> Liveness:
    if beat.finite is None:
        return live
    spec = live.policy.spec(Rule.DIVERGED)
    standing = Rule.DIVERGED in live.standing
    if beat.finite:
        since = live.finite_since if live.finite_since is not None else beat.at
        if standing and beat.at - since >= spec.clear_after_s:
            out.append(Verdict(Rule.DIVERGED, False, {
                "metric": live.nonfinite, "finite_for_s": round(beat.at - since, 3)}))
        return live if since == live.finite_since else replaced(live, finite_since=since)
    live = replaced(live, finite_since=None)
    if judging and not standing and live.warm(Rule.DIVERGED, beat.at):
        out.append(Verdict(Rule.DIVERGED, True, {"metric": beat.nonfinite,
                                                 "step": beat.step}))
        live = replaced(live, nonfinite=beat.nonfinite)
    return live


def span_of(live: Liveness) -> float:
    return min(MAX_SPAN_S, live.policy.spec(Rule.SLOWED).window_s / 5.0)


def _slowed(live: Liveness, beat: Beat, judging: bool, out: list[Verdict]) -> Liveness:
    if beat.step is None or beat.sent is None:
        return live
    spec = live.policy.spec(Rule.SLOWED)
    start = live.span_start
    if start is None or beat.step < start[0] or beat.sent < start[1]:
        return replaced(live, span_start=(beat.step, beat.sent))
    took = beat.sent - start[1]
    if took < span_of(live):
        return live
    rate = (beat.step - start[0]) / took
    span = (beat.step, beat.sent)
    if not live.warm(Rule.SLOWED, beat.at):   # start-up's rates are not the run's own
        return replaced(live, span_start=span, last_rate=rate)
    standing = Rule.SLOWED in live.standing
    if len(live.rates) >= MIN_RATES and rate < spec.fraction * live.median:
        since = live.slow_since if live.slow_since is not None else beat.at - took
        if judging and not standing and beat.at - since >= spec.window_s:
            out.append(Verdict(Rule.SLOWED, True, {
                "steps_per_s": round(rate, 3), "median_steps_per_s": round(live.median, 3),
                "fraction": spec.fraction, "for_s": round(beat.at - since, 3),
                "window_s": spec.window_s}))
        return replaced(live, span_start=span, last_rate=rate, slow_since=since)
    if standing:
        if rate >= spec.clear_fraction * live.median:
            out.append(Verdict(Rule.SLOWED, False, {
                "steps_per_s": round(rate, 3),
                "median_steps_per_s": round(live.median, 3)}))
        else:   # not slow enough to flag, not fast enough to clear
            return replaced(live, span_start=span, last_rate=rate, slow_since=None)
    rates = (live.rates + (rate,))[-MAX_RATES:]
    return replaced(live, span_start=span, last_rate=rate, slow_since=None, rates=rates,
                    median=statistics.median(rates))
