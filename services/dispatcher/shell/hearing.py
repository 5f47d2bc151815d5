"""What the dispatcher hears on the bus, as observations for the decision core:
committed events (the gap-free follower: runs' events, and each experiment's new spec
as its limits), heartbeats (one batch per drain), artifacts workers report, and its
own status coming back (the proof that the bus works).

Telemetry does not wake the loop: it is drained at every step (at least every
pacing.TELEMETRY_S while runs are watched), so a thousand heartbeats a second cost a
few dozen steps.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Container, Union

from bus.catchup import EventFollower
from bus.codec import FrameError, MessageType, event_from_envelope
from bus.pubsub import Subscriber
from core.events import Event, ExperimentRerun, ExperimentSubmitted
from bus.topics import Topic
from runtime.logs import ServiceLogger
from services.dispatcher.decide.inputs import (ArtifactReported, BusSeen, CommittedEvent,
                                               ExperimentResumed, ExperimentRevised, Heartbeat,
                                               Heartbeats)
from services.dispatcher.decide.scheduling import ExperimentLimits
from services.dispatcher.decide.state import SOURCE
from services.dispatcher.shell.folders import outside_run_dir

def subscribe(telemetry: Subscriber) -> None:
    telemetry.subscribe(Topic.HEARTBEAT.value + ".")
    telemetry.subscribe(Topic.ARTIFACT.value + ".")
    telemetry.subscribe(Topic.STATUS.topic(SOURCE))


Committed = Union[CommittedEvent, ExperimentRevised, ExperimentResumed]


def committed(follower: EventFollower, log: ServiceLogger) -> list[Committed]:
    """The events committed since the last call, in seq order (never blocks; may ask
    the registry for a gap: raises Unavailable when it is away): runs' events, and
    each experiment's new spec as its limits, and its reruns."""
    out: list[Committed] = []
    for env in follower.poll(0):
        try:
            event = event_from_envelope(env)
        except FrameError as exc:
            log.warning("event.unreadable", seq=env.seq, reason=exc.message)
            continue
        if isinstance(event, ExperimentSubmitted):
            out.append(ExperimentRevised(int(env.seq or 0), ExperimentLimits(
                event.name, event.max_concurrent, event.priority)))
            continue
        if isinstance(event, ExperimentRerun):
            out.append(ExperimentResumed(int(env.seq or 0), event.name))
            continue
        if not isinstance(event, Event):
            continue  # another stream's (an environment's): the claim's answer says more
        out.append(CommittedEvent(int(env.seq or 0), float(env.ts or 0.0), event))
    return out


def drain(telemetry: Subscriber, now: float, runs: Container[str],
          run_dir: Callable[[str], str]) -> list[Any]:
    """Everything queued on the telemetry socket: a Heartbeats batch of the runs we
    hold, the artifacts reported (each path judged against its run folder), BusSeen."""
    beats: list[Heartbeat] = []
    out: list[Any] = []
    while telemetry.sock.poll(0):
        msg = telemetry.recv_nowait()
        if msg is None:
            continue  # a bad frame (logged by the subscriber)
        env = msg.envelope
        payload = env.payload if isinstance(env.payload, dict) else {}
        run_id = str(payload.get("run_id"))
        if env.type == MessageType.HEARTBEAT.value:
            if run_id in runs:
                beats.append(heartbeat(run_id, payload, env.ts, now))
        elif env.type == MessageType.ARTIFACT_REPORTED.value:
            if run_id in runs:
                out.append(reported(run_id, payload, run_dir(run_id)))
        elif env.type == MessageType.SERVICE_STATUS.value and env.source == SOURCE:
            if payload.get("pid") == os.getpid():
                out.append(BusSeen(now))
    return ([Heartbeats(tuple(beats))] if beats else []) + out


def heartbeat(run_id: str, payload: dict[str, Any], sent: Any, now: float) -> Heartbeat:
    """A heartbeat's fields, each only when of its type (a worker's bad value is not
    judged on)."""
    step, finite = payload.get("step"), payload.get("metrics_finite")
    nonfinite, phase = payload.get("nonfinite_metric"), payload.get("phase")
    return Heartbeat(run_id, step if isinstance(step, int) and not isinstance(step, bool)
                     else None, now,
                     float(sent) if isinstance(sent, (int, float)) and not isinstance(
                         sent, bool) else None,
                     finite if isinstance(finite, bool) else None,
                     nonfinite if isinstance(nonfinite, str) else "",
                     phase if isinstance(phase, str) else "")


def reported(run_id: str, payload: dict[str, Any], run_dir: str) -> ArtifactReported:
    path, size, kind, meta = (payload.get(k) for k in ("path", "size", "kind", "meta"))
    return ArtifactReported(run_id, kind if isinstance(kind, str) else "",
                            path if isinstance(path, str) else "",
                            size if isinstance(size, int) and not isinstance(size, bool)
                            else -1, meta if isinstance(meta, dict) else {},
                            outside_run_dir(run_dir, path))
