"""The steps of supervising one run that read its folder: RunStarted once its shim has
written worker.json, and the run's end, from its exit record or, when its shim is
gone without leaving one, FAILED ``lost``.

Whether a shim still owns a run is told by the run's lock (spawner.shim_alive): a
shim holds it from before it starts the worker until after it has written the exit
record, so "no shim holds it, and no exit record" read in that order is final.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
from typing import TYPE_CHECKING, Any, Optional

from bus.rpc import Unavailable
from core.errors import NotApplied, OrchestratorError
from services.dispatcher import spawner
from services.dispatcher.active import ActiveRun
from services.dispatcher.outcome import outcome_of
from services.dispatcher.supervision import KillPlan, awaits_evidence, deadline

if TYPE_CHECKING:
    from services.dispatcher.service import DispatcherService

PROBE_GAP_S = 0.02  # an overdue run asks for a fresh bus probe at most this often
LOW_DISK_BYTES = 1024 * 1024  # below this, a missing exit record is blamed on the disk
LOST = "the run's shim is gone and left no exit record (its worker's end is unknown)"


def note_started(svc: "DispatcherService", run: ActiveRun, now: float) -> None:
    """Once the shim has written worker.json: RunStarted, and the watch begins."""
    if run.recorded_started and run.pgid is not None:
        return
    worker = run.worker_record()
    if worker is None:
        return
    if not run.recorded_started:
        run.recorded_started = _record_started(svc, run, worker)
    if run.pgid is None:
        svc.unstarted.discard(run.run_id)
        run.pgid = int(worker["pgid"])
        run.watch = run.watch or run.watch_from(worker, now, svc.clock.now())
        svc.next_deadline = min(svc.next_deadline, deadline(run.watch))
        if run.cancel is not None:
            svc.begin_cancel(run)


def record_kill(svc: "DispatcherService", run: ActiveRun, plan: KillPlan,
                since: Optional[float] = None) -> None:
    """The kill just begun (SIGTERM sent), in the run folder: a restarted dispatcher
    keeps its grace (recovery) instead of starting it again. ``since``: when its grace
    began (wall clock; a cancel's is the recorded cancel), now if not given."""
    error = run.record_kill(plan, svc.clock.now() if since is None else since)
    if error is not None:
        svc.log.warning("run.kill_unrecorded", run_id=run.run_id, reason=error,
                        hint="a dispatcher restart would give it its whole grace again")


def _record_started(svc: "DispatcherService", run: ActiveRun, worker: dict[str, Any]) -> bool:
    """True once the registry has RunStarted; False when the answer was "not applied"
    (asked again at the next sweep; the run's end is reported only after it)."""
    args = {"run_id": run.run_id, "pid": int(worker["pid"]),
            "pid_start_time": float(worker.get("start_time") or 0.0),
            "host": os.uname().nodename}
    try:
        svc.client.call("record_started", args)
    except Unavailable:
        raise
    except OrchestratorError as exc:
        svc.log_refused("record_started", args, exc)
        # Otherwise refused for good: RUNNING already (an earlier try was applied and
        # its answer lost) or ended meanwhile; asking again would change nothing.
        return not isinstance(exc, NotApplied)
    return True


def shim_gone(svc: "DispatcherService", run: ActiveRun) -> bool:
    """Has the run's shim gone for good? For a shim we started, only once the fork
    server has reported its end (before it takes the lock, no lock is held either);
    then, as for an adopted run, when no shim holds the run's lock."""
    if not run.adopted:
        # Ours: gone once the fork server has reported its end, unless another shim
        # of the run (a stale second request) holds it now.
        return run.run_dir in svc.forks.ended_dirs and not spawner.shim_holds(run.run_dir)
    return not spawner.shim_alive(run.run_dir)


def ended(svc: "DispatcherService", run: ActiveRun) -> bool:
    """True when the run is over: its outcome is queued for the registry, or the
    leftovers of its process group are being killed first."""
    record = run.exit_record()
    if record is None:
        if not shim_gone(svc, run):
            return False
        record = run.exit_record()  # written before its shim let go of the run
    if not run.recorded_started and run.pgid is not None:
        return True  # RunStarted first (retried at the next sweep), then the end
    if record is None:
        # Its shim is gone, and with it the subreaper that would have ended the rest:
        # the worker (if the shim started one, even before it could write worker.json)
        # and all it started, found by process group and by the run id in their
        # environment, are killed; the run ends once none is left.
        left = spawner.run_processes(run.run_id, run.pgid)
        if left:
            svc.log.warning("run.shim_gone", run_id=run.run_id, pgid=run.pgid,
                            processes=len(left),
                            hint="its processes are killed: its end can no longer be "
                                 "recorded")
            spawner.kill_processes(left)
            return True
    elif run.pgid is not None and spawner.group_alive(run.pgid):
        spawner.signal_group(run.pgid, signal.SIGKILL)  # (its shim killed the rest)
        return True
    if record is None and not run.adopted:
        if svc.forks.status_due(run.run_dir):
            return False  # its shim's exit status is on its way from the fork server
        if svc.forks.exit_status.get(run.run_dir) == spawner.UNRECORDED_OK:
            # It could not write its exit record (a full disk) but its worker exited 0.
            record = {"exit_code": 0, "signal": None}
            svc.log.warning("run.no_exit_record", run_id=run.run_id, exit_code=0,
                            hint=_disk_note(run.run_dir).lstrip("; ") or None)
    if record is None and run.watch is not None and run.watch.kill is not None:
        # We were ending it (a cancel, its time limit, its silence): that end stands,
        # though its shim left no exit record (it could not write one: a full disk?).
        outcome = outcome_of({}, run)
        svc.log.warning("run.no_exit_record", run_id=run.run_id, outcome=outcome["outcome"],
                        cause=outcome.get("cause"),
                        hint=_disk_note(run.run_dir).lstrip("; ") or None)
        svc.finish(run, outcome)
    elif record is None:
        message = LOST + _disk_note(run.run_dir)
        svc.log.warning("run.lost", run_id=run.run_id, reason=message)
        svc.finish(run, {"outcome": "failed", "cause": "lost", "message": message})
    else:
        if record.get("leftovers_killed"):
            svc.log.warning("run.leftovers_killed", run_id=run.run_id,
                            count=record["leftovers_killed"],
                            hint="processes the worker left running (in a session of "
                                 "their own?) were killed by its shim when it exited")
        svc.finish(run, outcome_of(record, run))
    return True


def watch_deadlines(svc: "DispatcherService", now: float) -> None:
    """Between sweeps: a silent run is acted on as soon as its heartbeat is overdue
    (or its time limit reached), not at the next sweep; when the only evidence that
    the bus works is older than the deadline, a probe (our status) goes out at once
    and the run is checked again as soon as it comes back. O(1) until the earliest
    deadline; then one pass over the watched runs."""
    if now < svc.next_deadline:
        return
    nearest, probe = math.inf, False
    for run in svc.active.values():
        watch = run.watch
        if watch is None or run.pgid is None or run.run_id in svc.finishing:
            continue
        svc.act_on(run, now)
        if watch.kill is not None:
            continue
        if not svc.bus.healthy(now):
            # No silence is acted on while the bus is out: only the time limit is due.
            if watch.time_limit_s:
                nearest = min(nearest, watch.started + watch.time_limit_s)
        elif awaits_evidence(watch, now, svc.bus.last_seen):
            probe = True
        else:
            nearest = min(nearest, deadline(watch))
    if probe:
        svc.beacon.hurry()
        nearest = min(nearest, now + PROBE_GAP_S)
    elif not svc.bus.healthy(now):
        nearest = min(nearest, now + 1.0)  # look again once the bus may be back
    svc.next_deadline = nearest


def _disk_note(run_dir: str) -> str:
    """A note for a missing exit record when the run folder's disk is (nearly) full."""
    try:
        free = shutil.disk_usage(run_dir).free
    except OSError:
        return ""
    if free >= LOW_DISK_BYTES:
        return ""
    return (f"; the disk of its run folder has {free // 1024} KiB free (a full disk keeps "
            f"the shim from writing its exit record)")
