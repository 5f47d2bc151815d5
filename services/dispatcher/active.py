"""What the dispatcher knows about one run it has started (or adopted)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional

from services.dispatcher.allocator import Pending
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.spawner import EXIT_FILE, WORKER_FILE, read_json
from services.dispatcher.supervision import Watch


@dataclass
class ActiveRun:
    run_id: str
    run_dir: str
    config: dict[str, Any]
    gpus: list[str]
    cpu_slots: int
    logs: RunLogs
    recorded_started: bool = False
    adopted: bool = False          # its shim is not our child (we were restarted)
    pgid: Optional[int] = None
    watch: Optional[Watch] = None
    cancel: Optional[tuple[str, str]] = None   # (requested_by, reason)
    artifacts: set[str] = field(default_factory=set)  # paths registered while it ran
    artifacts_left: bool = False  # its manifest has artifacts not stored yet (retried)
    last_step: Optional[int] = None  # the step of the last heartbeat heard

    def worker_record(self) -> Optional[dict[str, Any]]:
        return read_json(os.path.join(self.run_dir, WORKER_FILE))

    def exit_record(self) -> Optional[dict[str, Any]]:
        return read_json(os.path.join(self.run_dir, EXIT_FILE))

    def new_watch(self, now: float) -> Watch:
        c = self.config
        return Watch(self.run_id, now, float(c.get("heartbeat_timeout_s", 30.0)),
                     float(c.get("startup_grace_s", 120.0)), float(c.get("time_limit_s", 0.0)),
                     float(c.get("cancel_grace_s", 30.0)))

    def watch_from(self, worker: dict[str, Any], now: float, wall_now: float) -> Watch:
        """The watch of the worker that worker.json names, from its true start (the
        shim's ``started_at``, wall clock), also when it is adopted after a restart:
        the wall-clock limit counts from then, a worker still within its start-up
        grace keeps it, and one past it (it has been beating, or it would have been
        killed) gets a fresh heartbeat window from now."""
        started_at = worker.get("started_at")
        age = max(0.0, wall_now - float(started_at)) \
            if isinstance(started_at, (int, float)) else 0.0
        watch = self.new_watch(now - age)
        if age > watch.startup_grace_s:
            watch.beat(now)
        return watch


def pending_from_run(run: dict[str, Any]) -> Pending:
    res = run["config"].get("resources", {})
    return Pending(run["run_id"], int(run["priority"]), int(run["submitted_seq"]),
                   int(res.get("gpus", 0)), int(res.get("min_gpu_memory_mb", 0)),
                   int(res.get("cpu_slots", 1)))
