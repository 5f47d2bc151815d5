"""Bus topics: dot-separated, so that a prefix subscription selects what you want.

    event.<run_id>.<EventType>   committed domain events (carry seq)    registry
    hb.<run_id>                  worker heartbeats with progress        workers
    metric.<run_id>              metrics                                 workers
    log.<run_id>.<stream>        stdout / stderr lines                   dispatcher
    artifact.<run_id>            artifacts reported by a worker          workers
    status.<service>             service liveness and counters           every service

Run ids have a fixed length, so ``event.<run_id>.`` selects exactly one run.
See docs/BUS.md for every field.
"""

from __future__ import annotations

import enum


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


def status_topic(service: str) -> str:
    return Topic.STATUS.topic(service)
