"""SubmitRun's config, from a Struct or JSON text, checked at the edge: only plain
data the registry can store (finite numbers, integers msgpack can carry, maps and
lists not deeper than core.digest.MAX_DEPTH), each refusal INVALID_ARGUMENT naming
the field (``hyperparameters.lr``, ``tags[2]``) and the reason."""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import struct_pb2

from core.digest import MAX_DEPTH, canonical_json, check_depth, whole_floats_as_ints
from core.errors import ValidationError
from services.gateway.config import MAX_CONFIG_BYTES
from services.gateway.errors import exhausted, invalid
from trainer_api.v1 import trainer_pb2 as pb

INT_MIN, INT_MAX = -(2**63), 2**64 - 1   # what msgpack (the bus codec) can encode


def config_of(request: pb.SubmitRunRequest) -> dict[str, Any]:
    return map_of(request, "config", MAX_CONFIG_BYTES)


def map_of(request: Any, name: str, limit: int) -> dict[str, Any]:
    """The map a request carries as the Struct ``name`` or the JSON text ``name_json``
    (the oneof ``name_source``: a SubmitRun config, a CreateExperiment spec), checked to
    be plain data of at most ``limit`` bytes as canonical JSON; each refusal names the
    field."""
    text_field = f"{name}_json"
    which = request.WhichOneof(f"{name}_source")
    if which == text_field:
        text = getattr(request, text_field)
        if len(text.encode()) > 4 * limit:
            raise exhausted(text_field, f"is larger than {limit} bytes")
        try:
            data = json.loads(text, parse_constant=float)  # NaN: named below
        except RecursionError:
            raise invalid(text_field, f"nests maps and lists deeper than {MAX_DEPTH} "
                          "levels") from None
        except ValueError as exc:
            raise invalid(text_field, f"is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise invalid(text_field, "must be a JSON object")
    elif which == name:
        # Struct numbers are doubles: whole ones become ints (seed, steps, ...)
        data = whole_floats_as_ints(struct_to_dict(getattr(request, name)))[0]
    else:
        raise invalid(name, f"is required ({name} or {text_field})")
    check_plain(data)
    size = len(canonical_json(data).encode())
    if size > limit:
        raise exhausted(name, f"is {size} bytes; the limit is {limit} bytes "
                        "(canonical JSON)")
    return data


def struct_to_dict(message: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain data, keeping NaN and infinities (json_format refuses them
    with a ValueError that names no field) for check_plain to name."""
    return {key: _value(v) for key, v in message.fields.items()}


def _value(v: struct_pb2.Value) -> Any:
    kind = v.WhichOneof("kind")
    if kind == "struct_value":
        return struct_to_dict(v.struct_value)
    if kind == "list_value":
        return [_value(item) for item in v.list_value.values]
    if kind == "number_value":
        return v.number_value
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    return None  # null_value, or no kind set


def check_plain(config: dict[str, Any]) -> None:
    """Raise INVALID_ARGUMENT naming the first value the registry could not store."""
    try:
        check_depth(config, "config")
    except ValidationError as exc:
        raise invalid(exc.field, str(exc.details.get("reason", ""))) from None
    todo: list[tuple[str, Any]] = [("", config)]
    while todo:
        path, value = todo.pop()
        if isinstance(value, dict):
            todo.extend((f"{path}.{k}" if path else str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            todo.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        elif isinstance(value, float) and not math.isfinite(value):
            raise invalid(path, f"must be a finite number, not {value}")
        elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise invalid(path, f"must be an integer from {INT_MIN} to {INT_MAX}")


