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
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()


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
