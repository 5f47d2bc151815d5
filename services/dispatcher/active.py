"""What the dispatcher knows about one run it has started (or adopted)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from core.errors import ValidationError
from core.rundir import EXIT_FILE, KILL_FILE, WORKER_FILE, KillRecord
from runtime.atomicfile import atomic_file
from services.dispatcher.allocator import Pending
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.spawner import read_json
from services.dispatcher.supervision import KillPlan, Watch


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
    cancel_at: Optional[float] = None  # when the registry recorded it (wall clock)
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

    def record_kill(self, plan: KillPlan, grace_from: float) -> Optional[str]:
        """Store the kill just begun in the run folder, its grace counted from
        ``grace_from`` (wall clock: the SIGTERM, or a cancel's recorded time); the
        OSError's text if it could not be written (the kill goes on)."""
        record = KillRecord(plan.outcome, plan.cause, plan.message, grace_from, plan.grace_s)
        try:
            with atomic_file(os.path.join(self.run_dir, KILL_FILE), durable=False) as fh:
                json.dump(record.to_map(), fh)
        except OSError as exc:
            return str(exc)
        return None

    def recorded_kill(self, now: float, wall_now: float) -> Optional[KillPlan]:
        """The kill an earlier dispatcher began, its grace counted from its SIGTERM:
        wall-clock time converted once to our monotonic clock (``now``); a grace
        already over is due at once. None if no kill was recorded."""
        found = read_json(os.path.join(self.run_dir, KILL_FILE))
        if found is None:
            return None
        try:
            record = KillRecord.from_map(found)
        except ValidationError:
            return None  # not ours (torn or edited): the kill starts again from now
        elapsed = max(0.0, wall_now - record.term_at)
        return KillPlan(record.outcome, record.cause, record.message, now - elapsed,
                        record.grace_s)


def pending_from_run(run: dict[str, Any]) -> Pending:
    res = run["config"].get("resources", {})
    return Pending(run["run_id"], int(run["priority"]), int(run["submitted_seq"]),
                   int(res.get("gpus", 0)), int(res.get("min_gpu_memory_mb", 0)),
                   int(res.get("cpu_slots", 1)))
