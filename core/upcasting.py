"""Upcasting: the one place where old event schema versions become current ones.

An upcaster takes the payload of (type, version) and returns the payload of
(type, version + 1). Reading an event applies them in a chain until the payload is
at the type's current SCHEMA_VERSION. Stored rows are never rewritten.
"""

from __future__ import annotations

from typing import Any, Callable

from core.errors import ValidationError
from core.events import EVENT_TYPES, DomainEvent, event_from_payload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _run_submitted_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 did not record who submitted: say so, without overwriting a value if present.
    return {"submitted_by": "unknown", **payload}


def _run_submitted_v2_to_v3(payload: dict[str, Any]) -> dict[str, Any]:
    # v2 recorded no code identity: none known.
    return {"code": {}, "code_digest": "", **payload}


def _run_submitted_v3_to_v4(payload: dict[str, Any]) -> dict[str, Any]:
    # v3 had no experiments: the run was no experiment's cell.
    return {"experiment": "", **payload}


def _first_attempt(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 had no attempts: every run had one, the first.
    return {"attempt": 1, **payload}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("RunSubmitted", 1): _run_submitted_v1_to_v2,
    ("RunSubmitted", 2): _run_submitted_v2_to_v3,
    ("RunSubmitted", 3): _run_submitted_v3_to_v4,
    ("RunStarted", 1): _first_attempt,
    ("RunCompleted", 1): _first_attempt,
    ("RunFailed", 1): _first_attempt,
    ("RunCancelled", 1): _first_attempt,
}


def upcast(type_name: str, version: int, payload: dict[str, Any]) -> dict[str, Any]:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise ValidationError("type", f"unknown event type {type_name!r}")
    if version > cls.SCHEMA_VERSION or version < 1:
        raise ValidationError("schema_version",
                              f"{type_name} v{version} is not known (current is "
                              f"v{cls.SCHEMA_VERSION})")
    while version < cls.SCHEMA_VERSION:
        step = UPCASTERS.get((type_name, version))
        if step is None:
            raise ValidationError("schema_version", f"no upcaster for {type_name} v{version}")
        payload = step(payload)
        version += 1
    return payload


_TUPLE_FIELDS = {"GpusClaimed": ("gpu_uuids",), "GpusReleased": ("gpu_uuids",),
                 "EnvAdded": ("sys_path",), "ExperimentCancelled": ("runs",),
                 "ExperimentRerun": ("runs",), "RunStarted": ("job_gpus",)}


def load_event(type_name: str, version: int, payload: Any, trusted: bool = False) -> DomainEvent:
    """A stored or received event, upcast to the current schema and validated.

    ``trusted``: the payload comes from our own hash-chained log, where it was
    validated before it was appended; its types are not checked again (replay speed)."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", f"{type_name} payload must be a map")
    cls = EVENT_TYPES.get(type_name)
    if cls is None or version != cls.SCHEMA_VERSION:
        payload = upcast(type_name, version, payload)
    if trusted and cls is not None:
        names = _TUPLE_FIELDS.get(type_name)
        try:
            if names is not None:
                payload = {**payload, **{n: tuple(payload[n]) for n in names if n in payload}}
            return cls(**payload)
        except TypeError:
            pass  # not what this version expects: the strict path names the field
    return event_from_payload(type_name, payload)
