"""Canonical form and digest of a run config (idempotent submission)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from core.errors import ValidationError

MAX_DEPTH = 32  # maps and lists nested in a config or artifact meta

_last: tuple[Any, str] = (None, "")
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                            allow_nan=False)


def canonical_json(config: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same meaning gives the same text.

    The text of the last object is remembered (by identity): a submit computes it for
    the size check, the digest and the stored row, from the same unmodified map."""
    global _last
    if _last[0] is config and config is not None:
        return _last[1]
    text = _ENCODER.encode(config)
    if isinstance(config, dict):
        _last = (config, text)
    return text


def config_digest(config: Any) -> str:
    """SHA-256 of the canonical JSON, with whole-valued floats in ``hyperparameters``
    written as integers: a gRPC Struct cannot tell 1.0 from 1, so a config sent as
    JSON text and the same config sent as a Struct get one digest. (The typed fields
    need no such care: validation gives each one type.)"""
    numbers = _free_numbers_as_ints(config)
    text = _ENCODER.encode(numbers) if numbers is not None else canonical_json(config)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def legacy_digest(config: Any) -> str | None:
    """The digest as computed before whole floats in ``hyperparameters`` were read as
    integers, when it differs: runs stored then are still found as duplicates."""
    if _free_numbers_as_ints(config) is None:
        return None
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


def _free_numbers_as_ints(config: Any) -> Any:
    """``config`` with whole floats in its hyperparameters as ints; None if it has none."""
    if not isinstance(config, dict) or not isinstance(config.get("hyperparameters"), dict):
        return None
    hyper, changed = whole_floats_as_ints(config["hyperparameters"])
    return {**config, "hyperparameters": hyper} if changed else None


def whole_floats_as_ints(value: Any) -> tuple[Any, bool]:
    """``value`` with every whole-valued float (below 2**53) as an int, in maps and
    lists too; and whether anything changed (if not, ``value`` itself comes back)."""
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 2**53:
            return int(value), True
        return value, False
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            out[key], c = whole_floats_as_ints(item)
            changed = changed or c
        return (out, True) if changed else (value, False)
    if isinstance(value, (list, tuple)):
        pairs = [whole_floats_as_ints(item) for item in value]
        if any(c for _, c in pairs):
            return [v for v, _ in pairs], True
        return value, False
    return value, False


def check_depth(value: Any, field: str, limit: int = MAX_DEPTH) -> None:
    """Raise ValidationError(field) when maps and lists nest deeper than ``limit``:
    a stored config is decoded again every time its run is read, and a JSON or msgpack
    decoder would hit the interpreter's recursion limit on a deep one."""
    level = [value]
    for _ in range(limit):
        level = [v for item in level
                 for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, (dict, list, tuple))] if level else []
        if not level:
            return
    raise ValidationError(field, f"nests maps and lists deeper than {limit} levels")
