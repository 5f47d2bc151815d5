"""Streams of the event log and their kinds: a stream is named ``<kind>-<key>``;
``run-<run_id>`` holds one run's events, ``env-<name>`` one registered Python
environment's, ``exp-<name>`` one experiment's (docs/EVENTLOG.md, "Streams"). Each
kind has its own event types (core.events.TYPES_OF_KIND) and its own projection table
(core.projection.STREAM_TABLES).
Standard library only, no clock: the dispatcher's decision core imports it."""

from __future__ import annotations

import re

RUN_STREAM = "run"
ENV_STREAM = "env"
EXPERIMENT_STREAM = "exp"
STREAM_KINDS = (RUN_STREAM, ENV_STREAM, EXPERIMENT_STREAM)

# An environment's name: a letter or digit, then letters, digits, "_" or "-" (no dot:
# it is a part of a bus topic, event.env-<name>.<Type>).
ENV_NAME_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


# An experiment's name: the same alphabet (it is a part of a topic too).
EXPERIMENT_NAME_RE = ENV_NAME_RE


def is_experiment_name(value: object) -> bool:
    return isinstance(value, str) and EXPERIMENT_NAME_RE.fullmatch(value) is not None


def experiment_stream(name: str) -> str:
    """The event-log stream that holds one experiment's events."""
    return f"{EXPERIMENT_STREAM}-{name}"


def is_env_name(value: object) -> bool:
    return isinstance(value, str) and ENV_NAME_RE.fullmatch(value) is not None


def env_stream(name: str) -> str:
    """The event-log stream that holds one Python environment's events."""
    return f"{ENV_STREAM}-{name}"


def stream_name(kind: str, key: str) -> str:
    return f"{kind}-{key}"


def is_run_stream(stream: object) -> bool:
    return isinstance(stream, str) and stream.startswith(RUN_STREAM + "-")


def stream_kind(stream: str) -> tuple[str, str]:
    """(kind, key) of a stream name: ("run", run_id), ("env", name), ("exp", name);
    ("", stream) for a name of no known kind."""
    kind, _, key = stream.partition("-")
    return (kind, key) if kind in STREAM_KINDS and key else ("", stream)
