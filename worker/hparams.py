"""Worker hyperparameters: each worker declares a table of ``Param``s; ``parse``
checks a run config's ``hyperparameters`` map against it (unknown names, types,
ranges) and fills in the defaults. Errors name the field as
``hyperparameters.<name>``, like every other config error. docs/CONFIG.md lists
every table (a test checks it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.errors import ValidationError


@dataclass(frozen=True)
class Param:
    name: str
    kind: type            # int, float or dict
    default: Any
    lo: float = -math.inf
    hi: float = math.inf
    help: str = ""


def parse(params: tuple[Param, ...], raw: dict[str, Any], worker: str) -> dict[str, Any]:
    known = {p.name: p for p in params}
    for key in raw:
        if key not in known:
            raise ValidationError(f"hyperparameters.{key}",
                                  f"is not a hyperparameter of the {worker} worker "
                                  f"(known: {', '.join(sorted(known))})")
    return {p.name: _value(p, raw.get(p.name, p.default)) for p in params}


def _value(p: Param, value: Any) -> Any:
    field = f"hyperparameters.{p.name}"
    if p.kind is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValidationError(field, "must be a map with string keys")
        return dict(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(field, f"must be a number, not {type(value).__name__}")
    if p.kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValidationError(field, "must be an integer")
        value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise ValidationError(field, "must be finite")
    if not p.lo <= value <= p.hi:
        raise ValidationError(field, f"must be between {p.lo:g} and {p.hi:g}")
    return value
