"""A run's recorded result: the bounded summary its terminal event carries.

The dispatcher builds it when the run ends (``summarize``: from the worker's
result.json and the last heartbeat it heard; whatever does not fit is left out), and
the registry checks it (``check``: what does not fit is refused, naming the field).
Keys: ``steps`` (final steps), ``total_steps`` (the config's budget, when known) and
the worker's numeric scalar metrics. Pure.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, TypeGuard

from core.errors import ValidationError

MAX_KEYS = 32          # at most this many keys in a result
MAX_KEY_CHARS = 64     # names longer than this are left out
RESERVED = ("steps", "total_steps")
RETURN_KEYS = ("eval_return_mean", "mean_return", "return", "last_return")


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (not isinstance(value, int) or -2**63 <= value < 2**63)


def summarize(metrics: Any, last_step: Optional[int] = None,
              total_steps: Optional[int] = None) -> tuple[dict[str, Any], int]:
    """(the result, how many metrics were left out). ``metrics``: the ``metrics`` map
    of result.json (anything else counts as none). ``steps`` is the larger of the
    metrics' ``steps`` and ``last_step``; the other metrics follow in their order
    while they fit."""
    out: dict[str, Any] = {}
    dropped = 0
    source = metrics if isinstance(metrics, Mapping) else {}
    steps = [int(v) for v in (source.get("steps"), last_step) if _number(v) and v >= 0]
    if steps:
        out["steps"] = max(steps)
    if _number(total_steps) and total_steps > 0:
        out["total_steps"] = int(total_steps)
    for key, value in source.items():
        if key in RESERVED:
            continue
        if not isinstance(key, str) or len(key) > MAX_KEY_CHARS or not _number(value) \
                or len(out) >= MAX_KEYS:
            dropped += 1
            continue
        out[key] = value
    return out, dropped


def check(result: Any) -> dict[str, Any]:
    """``result`` as a finish command may carry it; ValidationError("result", ...)
    naming the reason otherwise."""
    if not isinstance(result, dict):
        raise ValidationError("result", "must be a map")
    if len(result) > MAX_KEYS:
        raise ValidationError("result", f"has more than {MAX_KEYS} keys")
    for key, value in result.items():
        if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
            raise ValidationError("result", f"key {str(key)[:80]!r} must be a name of 1 to "
                                            f"{MAX_KEY_CHARS} characters")
        if not _number(value):
            raise ValidationError("result", f"{key} must be a finite number")
    for key in RESERVED:
        if key in result and (not isinstance(result[key], int) or result[key] < 0):
            raise ValidationError("result", f"{key} must be a non-negative integer")
    return result


def final_return(result: Mapping[str, Any]) -> Optional[float]:
    """The return a result reports (the final evaluation's mean when there is one)."""
    for key in RETURN_KEYS:
        value = result.get(key)
        if _number(value):
            return float(value)
    return None
