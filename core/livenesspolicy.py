"""The run config's ``liveness`` section: which rules judge whether a running attempt
is learning, their thresholds, warm-ups and actions (docs/SUPERVISION.md).

    "liveness": {
      "stalled":  {"window_s": 300, "warmup_s": 60, "action": "warn"},
      "diverged": {"warmup_s": 0, "clear_after_s": 60, "action": "warn"},
      "slowed":   {"fraction": 0.1, "clear_fraction": 0.5, "window_s": 120,
                   "warmup_s": 120, "action": "warn"},
      "gpu_idle": {"threshold_pct": 5, "clear_pct": 20, "window_s": 600,
                   "warmup_s": 300, "action": "warn"}
    }

Every key is optional; each rule also takes ``"enabled": false``. The section is left
out of the canonical config when it is the default, so configs from before it keep
their digest. Pure: standard library only.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import Any

from core.errors import ValidationError


class Action(str, enum.Enum):
    """What the dispatcher does when a rule flags a run."""

    WARN = "warn"              # the flag only (an event, a log line)
    CHECKPOINT = "checkpoint"  # and SIGUSR2: the SDK sets checkpoint_requested
    STOP = "stop"              # and SIGTERM, SIGKILL after cancel_grace_s: not_learning
    KILL = "kill"              # and SIGKILL now: not_learning


class Rule(str, enum.Enum):
    STALLED = "stalled"        # beats arrive, the step counter does not advance
    DIVERGED = "diverged"      # a metric was not finite (NaN, inf)
    SLOWED = "slowed"          # steps/s below a fraction of the run's own median
    GPU_IDLE = "gpu_idle"      # NVML utilisation of its GPUs below a threshold


@dataclass(frozen=True)
class RuleSpec:
    """One rule's settings; the fields a rule does not use keep their defaults."""

    enabled: bool = True
    action: Action = Action.WARN
    warmup_s: float = 60.0      # from the attempt's first heartbeat: no judgement
    window_s: float = 300.0     # how long the condition must hold before a flag
    fraction: float = 0.0       # slowed: below this fraction of the median flags
    clear_fraction: float = 0.0  # slowed: at or above this fraction clears
    threshold_pct: float = 0.0  # gpu_idle: utilisation below this flags
    clear_pct: float = 0.0      # gpu_idle: at or above this clears
    clear_after_s: float = 0.0  # diverged: finite metrics for this long clear


DEFAULTS: dict[Rule, RuleSpec] = {
    Rule.STALLED: RuleSpec(warmup_s=60.0, window_s=300.0),
    Rule.DIVERGED: RuleSpec(warmup_s=0.0, window_s=0.0, clear_after_s=60.0),
    Rule.SLOWED: RuleSpec(warmup_s=120.0, window_s=120.0, fraction=0.1, clear_fraction=0.5),
    Rule.GPU_IDLE: RuleSpec(warmup_s=300.0, window_s=600.0, threshold_pct=5.0,
                            clear_pct=20.0),
}
# The keys each rule takes (besides enabled, action, warmup_s).
_KEYS: dict[Rule, tuple[str, ...]] = {
    Rule.STALLED: ("window_s",),
    Rule.DIVERGED: ("clear_after_s",),
    Rule.SLOWED: ("window_s", "fraction", "clear_fraction"),
    Rule.GPU_IDLE: ("window_s", "threshold_pct", "clear_pct"),
}
_COMMON = ("enabled", "action", "warmup_s")
MAX_S = 30 * 86400.0


@dataclass(frozen=True)
class LivenessPolicy:
    rules: tuple[tuple[Rule, RuleSpec], ...] = tuple(DEFAULTS.items())

    def spec(self, rule: Rule) -> RuleSpec:
        for r, spec in self.rules:
            if r is rule:
                return spec
        return DEFAULTS[rule]

    @property
    def default(self) -> bool:
        return self == LivenessPolicy()

    def check_windows(self, heartbeat_interval_s: float) -> None:
        """A window judged on heartbeats must be longer than their interval (a shorter
        one would judge every gap between two beats)."""
        for rule in (Rule.STALLED, Rule.SLOWED):
            spec = self.spec(rule)
            if spec.enabled and spec.window_s <= heartbeat_interval_s:
                raise ValidationError(f"liveness.{rule.value}.window_s", "must be longer "
                                      f"than heartbeat_interval_s ({heartbeat_interval_s:g})")

    def to_map(self) -> dict[str, Any]:
        """Every rule with every key it takes (defaults applied): the canonical form."""
        out: dict[str, Any] = {}
        for rule, spec in self.rules:
            m: dict[str, Any] = {"enabled": spec.enabled, "action": spec.action.value,
                                 "warmup_s": spec.warmup_s}
            m.update({k: getattr(spec, k) for k in _KEYS[rule]})
            out[rule.value] = m
        return out

    @staticmethod
    def from_map(data: Any) -> "LivenessPolicy":
        if not isinstance(data, dict):
            raise ValidationError("liveness", "must be a map of rules")
        rules = []
        for key in data:
            if key not in Rule._value2member_map_:
                raise ValidationError(f"liveness.{key}", "is not a rule (one of "
                                      f"{', '.join(r.value for r in Rule)})")
        for rule in Rule:
            rules.append((rule, _rule(rule, data.get(rule.value, {}))))
        return LivenessPolicy(tuple(rules))


def _rule(rule: Rule, data: Any) -> RuleSpec:
    where = f"liveness.{rule.value}"
    if not isinstance(data, dict):
        raise ValidationError(where, "must be a map")
    allowed = _COMMON + _KEYS[rule]
    for key in data:
        if key not in allowed:
            raise ValidationError(f"{where}.{key}", f"is not a setting of {rule.value} "
                                  f"(one of {', '.join(allowed)})")
    base = DEFAULTS[rule]
    changes: dict[str, Any] = {}
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError(f"{where}.enabled", "must be true or false")
    changes["enabled"] = enabled
    action = data.get("action", Action.WARN.value)
    if action not in Action._value2member_map_:
        raise ValidationError(f"{where}.action", f"{str(action)[:40]!r} is not an action "
                              f"(one of {', '.join(a.value for a in Action)})")
    changes["action"] = Action(action)
    for key in ("warmup_s", "window_s", "clear_after_s"):
        if key in allowed:
            changes[key] = _seconds(data, key, getattr(base, key), where)
    if rule is Rule.SLOWED:
        changes["fraction"] = _number(data, "fraction", base.fraction, 0.0, 1.0, where,
                                      open_low=True)
        changes["clear_fraction"] = _number(data, "clear_fraction", base.clear_fraction,
                                            0.0, 1.0, where)
        if changes["clear_fraction"] < changes["fraction"]:
            raise ValidationError(f"{where}.clear_fraction", "must be at least fraction "
                                  "(the flag clears above where it was raised)")
    if rule is Rule.GPU_IDLE:
        changes["threshold_pct"] = _number(data, "threshold_pct", base.threshold_pct,
                                           0.0, 100.0, where, open_low=True)
        changes["clear_pct"] = _number(data, "clear_pct", base.clear_pct, 0.0, 100.0, where)
        if changes["clear_pct"] < changes["threshold_pct"]:
            raise ValidationError(f"{where}.clear_pct", "must be at least threshold_pct "
                                  "(the flag clears above where it was raised)")
    if rule in (Rule.STALLED, Rule.SLOWED, Rule.GPU_IDLE) and changes["window_s"] <= 0:
        raise ValidationError(f"{where}.window_s", "must be more than 0")
    return dataclasses.replace(base, **changes)


def _seconds(data: dict, key: str, default: float, where: str) -> float:
    return _number(data, key, default, 0.0, MAX_S, where)


def _number(data: dict, key: str, default: float, lo: float, hi: float, where: str,
            open_low: bool = False) -> float:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{where}.{key}", f"must be a number, not "
                              f"{type(value).__name__}")
    if not math.isfinite(value) or not lo <= value <= hi or (open_low and value == lo):
        low = f"more than {lo:g}" if open_low else f"at least {lo:g}"
        raise ValidationError(f"{where}.{key}", f"must be {low} and at most {hi:g}")
    return float(value)


def field_names() -> list[str]:
    """Every liveness key, as liveness.<rule>.<key> (for the docs test)."""
    return [f"liveness.{rule.value}.{key}" for rule in Rule
            for key in _COMMON + _KEYS[rule]]
