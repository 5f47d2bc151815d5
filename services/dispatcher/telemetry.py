"""The dispatcher's telemetry: heartbeats (each resets its run's silence timer), its
own status coming back (the proof that the bus works) and artifacts that workers
report (registered at once). Read every TELEMETRY_S, never waking the loop."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bus.codec import MessageType
from core.errors import ValidationError
from services.dispatcher.outcome import outside_run_dir

if TYPE_CHECKING:
    from services.dispatcher.service import DispatcherService

SOURCE = "dispatcher"


def drain(svc: "DispatcherService") -> None:
    now = svc.clock.monotonic()
    while True:
        msg = svc.telemetry.recv_nowait() if svc.telemetry.sock.poll(0) else None
        if msg is None:
            return
        env = msg.envelope
        if env.type == MessageType.HEARTBEAT.value:
            run = svc.active.get(str(env.payload.get("run_id")))
            if run is not None and run.watch is not None:
                if run.watch.last_beat is None:  # the start-up grace ends: due sooner
                    svc.next_deadline = min(svc.next_deadline,
                                            now + run.watch.heartbeat_timeout_s)
                run.watch.beat(now)
                step = env.payload.get("step")
                if isinstance(step, int) and not isinstance(step, bool):
                    run.last_step = step  # for the run's recorded result
        elif env.type == MessageType.ARTIFACT_REPORTED.value:
            register_reported(svc, env.payload)
        elif env.type == MessageType.SERVICE_STATUS.value and env.source == SOURCE:
            if env.payload.get("pid") == os.getpid():
                svc.bus.seen(now)


def register_reported(svc: "DispatcherService", payload: dict[str, Any]) -> None:
    """An artifact a worker reported on the bus: registered at once. (One whose
    message was lost is found in the run's manifest when the run ends.)"""
    run = svc.active.get(str(payload.get("run_id")))
    if run is None or run.run_id in svc.finishing:
        return
    svc.note_started(run, svc.clock.monotonic())  # RunStarted comes first
    fields = {k: payload.get(k) for k in ("kind", "path", "size")}
    fields["meta"] = payload.get("meta") or {}
    if fields["path"] in run.artifacts:
        return
    why = outside_run_dir(run.run_dir, fields["path"])
    if why:  # logged, and remembered so that a repeat is not logged again
        svc.log_refused("register_artifact", {"run_id": run.run_id, **fields},
                        ValidationError("path", why))
        run.artifacts.add(str(fields["path"]))
        return
    if svc.call_registry("register_artifact", run_id=run.run_id, **fields) is not None:
        run.artifacts.add(str(fields["path"]))
