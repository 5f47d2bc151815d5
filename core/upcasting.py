"""Upcasting: the one place where old event schema versions become current ones.

An upcaster takes the payload of (type, version) and returns the payload of
(type, version + 1). Reading an event applies them in a chain until the payload is
at the type's current SCHEMA_VERSION. Stored rows are never rewritten.
"""

from __future__ import annotations

from typing import Any, Callable

from core.errors import ValidationError
from core.events import EVENT_TYPES, Event, event_from_payload

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


def _run_submitted_v1_to_v2(payload: dict[str, Any]) -> dict[str, Any]:
    # v1 did not record who submitted; those runs were submitted from the CLI.
    return {**payload, "submitted_by": "unknown"}


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("RunSubmitted", 1): _run_submitted_v1_to_v2,
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


def load_event(type_name: str, version: int, payload: Any) -> Event:
    """A stored or received event, upcast to the current schema and validated."""
    if not isinstance(payload, dict):
        raise ValidationError("payload", f"{type_name} payload must be a map")
    cls = EVENT_TYPES.get(type_name)
    if cls is not None and version == cls.SCHEMA_VERSION:
        return event_from_payload(type_name, payload)
    return event_from_payload(type_name, upcast(type_name, version, payload))
