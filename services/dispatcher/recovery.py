"""Start-up reconciliation: every non-terminal run in the registry is put back where
it belongs. A live worker (same pid and same process start time as recorded) is
adopted, and the adoption recorded; a worker that exited while the dispatcher was
away is finished from its exit record; a run whose shim still holds the run's lock
(starting its worker, or about to write its exit record) is awaited; a RUNNING run
whose process and shim are gone without an exit record is FAILED ``lost``; a
DISPATCHING run with no process and no shim is started again."""

from __future__ import annotations

import time
from typing import Any

from services.dispatcher import launch, spawner
from services.dispatcher.active import ActiveRun, pending_from_run
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.service import SOURCE, DispatcherService
from services.dispatcher.supervision import deadline

PAGE = 500


def snapshot(svc: DispatcherService) -> tuple[list[dict[str, Any]], int]:
    """The non-terminal runs, oldest first, and the head seq before the first page.
    Pages are keyed by submission seq, newest first: a run that ends between two
    pages cannot shift a later one (as an offset would, skipping a run); one
    submitted meanwhile comes as an event after ``as_of``."""
    runs: list[dict[str, Any]] = []
    as_of = None
    before = 0  # 0: no bound (the first page)
    while True:
        page = svc.client.call("list_runs", {"status": ["PENDING", "DISPATCHING", "RUNNING"],
                                             "newest_first": True, "limit": PAGE,
                                             "before_seq": before})
        as_of = page["head_seq"] if as_of is None else as_of
        runs.extend(page["runs"])
        if not page["more"] or not page["runs"]:
            runs.reverse()
            return runs, as_of
        before = min(int(r["submitted_seq"]) for r in page["runs"])


def recover(svc: DispatcherService) -> dict[str, int]:
    runs, as_of = snapshot(svc)
    counts = {"pending": 0, "adopted": 0, "awaited": 0, "finished_later": 0, "lost": 0,
              "restarted": 0, "processes_left": 0}
    svc.pending.clear()
    svc.held_elsewhere.clear()  # the claims' refusals say again which GPUs others hold
    for run in runs:
        svc.known_seq[run["run_id"]] = run["last_seq"]
        if run["run_id"] in svc.active:
            continue  # already supervised (a resync after the registry was away)
        if run["status"] == "PENDING":
            svc.pending[run["run_id"]] = pending_from_run(run)
            counts["pending"] += 1
        else:
            counts[_resume(svc, run)] += 1
    svc.follower.reset(as_of)
    svc.dirty = True
    svc.log.info("recovery.done", as_of_seq=as_of, **counts)
    return counts


def _resume(svc: DispatcherService, run: dict[str, Any]) -> str:
    run_id = run["run_id"]
    path = launch.run_dir(svc.settings, run_id)
    active = ActiveRun(run_id, path, run["config"], list(run["gpus"]),
                       int(run["config"].get("resources", {}).get("cpu_slots", 1)),
                       RunLogs(run_id, path, svc.settings.log_rate),
                       recorded_started=run["status"] == "RUNNING", adopted=True)
    if run["cancel_requested_by"]:
        active.cancel = (run["cancel_requested_by"], run["cancel_reason"])
        active.cancel_at = run.get("cancel_requested_at")
    worker = active.worker_record()
    svc.active[run_id] = active
    if active.exit_record() is not None:
        svc.unstarted.add(run_id)  # checked on the next step
        return "finished_later"  # the next supervise() step reports it
    now = svc.clock.monotonic()
    if worker is not None and worker.get("start_time") is not None and \
            spawner.process_start_time(int(worker["pid"])) == float(worker["start_time"]):
        active.pgid = int(worker["pgid"])
        active.watch = active.watch_from(worker, now, svc.clock.now())
        # A kill begun before the restart goes on: its grace counts from its SIGTERM.
        active.watch.kill = active.recorded_kill(now, svc.clock.now())
        svc.next_deadline = min(svc.next_deadline, deadline(active.watch))
        active.logs.skip_to_end()
        if active.recorded_started:
            svc.call_registry("record_adopted", run_id=run_id, pid=int(worker["pid"]),
                      adopted_by=SOURCE)
        svc.stats["adopted"] += 1
        if active.cancel is not None:
            svc.begin_cancel(active)
        svc.log.info("run.adopted", run_id=run_id, pid=worker["pid"])
        return "adopted"
    if spawner.shim_alive(path):
        # A shim owns the run: it is starting the worker (worker.json follows; starting
        # another would run it twice), or the worker has ended and its exit record is
        # on the way. Supervision waits for either, or for the shim to go (lost).
        if worker is None:
            svc.unstarted.add(run_id)
        else:
            active.pgid = int(worker["pgid"])  # its worker is gone: nothing to watch
        svc.log.info("run.awaited", run_id=run_id, started=worker is not None)
        return "awaited"
    if active.exit_record() is not None:  # written just before its shim let go of the run
        svc.unstarted.add(run_id)
        return "finished_later"
    svc.active.pop(run_id)
    # No shim is left to end what the worker started (or the worker itself, when its
    # shim died before it could write worker.json): killed first, found by process
    # group and by the run id in their environment; its GPUs go only when none is left.
    pgid = int(worker["pgid"]) if worker is not None else None
    found = spawner.run_processes(run_id, pgid)
    if found and not _ended(run_id, pgid, found):
        svc.log.error("run.processes_left", run_id=run_id, pgid=pgid,
                      hint="processes of the run survive SIGKILL; checked again at the "
                           "next start-up, its GPUs stay booked meanwhile")
        return "processes_left"
    if active.recorded_started or worker is not None or found:
        svc.call_registry("finish", run_id=run_id, outcome="failed", cause="lost",
                          message="the worker is gone and left no exit record"
                          if worker is not None or active.recorded_started else
                          "its shim died before it recorded the worker's start; the "
                          "worker was killed")
        svc.log.warning("run.lost", run_id=run_id, killed=len(found))
        return "lost"
    svc.start_run(run, list(run["gpus"]))
    return "restarted"


def _ended(run_id: str, pgid: int | None, found: set[int], timeout_s: float = 5.0) -> bool:
    """Kill the run's processes until none is left; False if some outlive the timeout."""
    deadline = time.monotonic() + timeout_s
    while found:
        spawner.kill_processes(found)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)  # (between kills: dying processes take a moment to go)
        found = spawner.run_processes(run_id, pgid)
    return True
