"""Bus topics: dot-separated, so that a prefix subscription selects what you want.

    event.<run_id>.<EventType>   committed domain events (carry seq)    registry
    event.<stream>.<EventType>   ... of a stream that is not a run's (env-<name>)
    hb.<run_id>                  worker heartbeats with progress        workers
    metric.<run_id>              metrics                                 workers
    log.<run_id>.<stream>        stdout / stderr lines                   dispatcher
    artifact.<run_id>            artifacts reported by a worker          workers
    status.<service>             service liveness and counters           every service

Run ids have a fixed length, so ``event.<run_id>.`` selects exactly one run; the
events of other streams name the whole stream (``event.env-gpu.EnvAdded``), so
``event.r`` selects the runs' and ``event.env-`` the environments'.
See docs/BUS.md for every field.
"""

from __future__ import annotations

import enum

from core.streams import RUN_STREAM, stream_kind


class Topic(str, enum.Enum):
    EVENT = "event"
    HEARTBEAT = "hb"
    METRICS = "metric"
    LOG = "log"
    ARTIFACT = "artifact"
    STATUS = "status"

    def prefix(self, *parts: str) -> str:
        """The subscription prefix for this kind (and optionally a run or service)."""
        return ".".join((self.value, *parts)) + "."

    def topic(self, *parts: str) -> str:
        return ".".join((self.value, *parts))


def event_topic(run_id: str, event_type: str) -> str:
    return Topic.EVENT.topic(run_id, event_type)


def stream_event_topic(stream: str, event_type: str) -> str:
    """The topic of a committed event of ``stream``: event.<run_id>.<Type> for a run's,
    event.<stream>.<Type> for the others'."""
    kind, key = stream_kind(stream)
    return event_topic(key if kind == RUN_STREAM else stream, event_type)


def status_topic(service: str) -> str:
    return Topic.STATUS.topic(service)
