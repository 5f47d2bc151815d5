"""Build a frozen dataclass from an untrusted map, checking each field's type.

Used for events read from the log or the bus and for commands received by the
registry: a missing or mistyped field raises ValidationError naming it.
"""

from __future__ import annotations

import dataclasses
import typing
from functools import lru_cache
from typing import Any, TypeVar

from core.errors import ValidationError

T = TypeVar("T")
_Spec = tuple[str, tuple[type, ...], bool, bool, bool]


def _checker(annotation: Any) -> tuple[tuple[type, ...], bool, bool]:
    """(accepted python types, optional?, tuple of strings?) for one annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        types, _, is_tuple = _checker(inner[0])
        return types, True, is_tuple
    if origin is tuple or annotation is tuple:
        return (list, tuple), False, True
    if annotation is float:
        return (int, float), False, False
    return (typing.get_origin(annotation) or annotation,), False, False


@lru_cache(maxsize=None)
def _specs(cls: type) -> tuple[_Spec, ...]:
    hints = typing.get_type_hints(cls)
    return tuple(
        (f.name, *_checker(hints[f.name]),
         f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING)
        for f in dataclasses.fields(cls)
    )


def from_map(cls: type[T], payload: Any, what: str) -> T:
    """``cls(**payload)`` after checking that every field is present and well typed."""
    if not isinstance(payload, dict):
        raise ValidationError(what, "must be a map")
    kwargs: dict[str, Any] = {}
    for name, types, optional, is_tuple, has_default in _specs(cls):  # type: ignore[arg-type]
        if name not in payload:
            if has_default:
                continue
            raise ValidationError(name, f"missing from {what}")
        value = payload[name]
        if value is None and optional:
            kwargs[name] = None
            continue
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise ValidationError(name, f"must be {_kind(types)}, not {type(value).__name__}")
        if isinstance(value, int) and not isinstance(value, bool) and not \
                -2**63 <= value < 2**63:
            raise ValidationError(name, "is out of the 64-bit integer range")
        if is_tuple:
            items = typing.cast("list[Any]", value)   # a list or tuple: checked above
            if not all(isinstance(v, str) for v in items):
                raise ValidationError(name, "must be a list of strings")
            value = tuple(items)
        kwargs[name] = value
    return cls(**kwargs)


def _kind(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", dict: "a map",
             list: "a list", tuple: "a list", bool: "a boolean"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))
