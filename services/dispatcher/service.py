"""The dispatcher's loop: follow committed events (gap-free), hear heartbeats,
schedule, start workers, supervise them and report every outcome to the registry.

One thread; every step is short. The registry is the source of truth: the queue is
read from it at start-up and kept up to date from its events; everything the
dispatcher does to a run goes through a registry command first or after.
"""

from __future__ import annotations

import signal
from typing import Any, Callable, Optional

import zmq

from bus.catchup import EventFollower
from bus.codec import FrameError, event_from_envelope
from runtime.logs import ServiceLogger
from bus.pubsub import Publisher, Subscriber
from bus.rpc import RpcClient, Unavailable
from runtime.status import StatusBeacon
from bus.topics import Topic
from core import events as ev
from core.clock import Clock
from core.errors import NotApplied, OrchestratorError, ResourceBusy
from core.settings import Settings
from services.dispatcher import launch, runwatch, spawner, telemetry
from services.dispatcher.active import ActiveRun, pending_from_run
from services.dispatcher.allocator import Capacity, Pending, plan
from services.dispatcher.forkserver import ForkServer, ForkServerGone
from services.dispatcher.inventory import BackgroundRead, Inventory, refresh_in_background
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.pacing import Pacer
from services.dispatcher.outcome import register_artifacts, retry_artifacts, run_result
from services.dispatcher.refusals import RefusalLog
from services.dispatcher.registryprobe import RegistryProbe
from services.dispatcher.supervision import BusHealth, begin_kill, check
from services.dispatcher.telemetry import SOURCE

PROBE_S = 0.5    # our own status doubles as the bus probe: at least this often
SWEEP_S = 0.25   # timeouts, log files and adopted runs' exit records: this often
FULL_SWEEP_S = 2.0  # every run's exit record, in case an exit notice was missed
PIPELINE = 200     # registry commands in flight at once (one round trip each such chunk)
_SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL}


class DispatcherService:
    def __init__(self, settings: Settings, client: RpcClient, follower: EventFollower,
                 telemetry: Subscriber, publisher: Publisher, inventory: Inventory,
                 cpu_slots: int, clock: Clock, log: ServiceLogger, forks: ForkServer,
                 resync: Optional[Callable[["DispatcherService"], object]] = None,
                 read_gpus: Optional[Callable[[set[int]], Inventory]] = None) -> None:
        self.settings = settings
        self.client = client
        self.follower = follower
        self.telemetry = telemetry
        self.publisher = publisher
        self.inventory = inventory
        self.read_gpus = read_gpus  # re-reads the GPUs (given the pids that are ours)
        self.gpu_read: Optional[BackgroundRead] = None  # the re-read in flight
        self.cpu_slots = cpu_slots
        self.clock = clock
        self.log = log
        self.log_refused = RefusalLog(log, clock)  # (method, args, error): logs a refusal
        self.pending: dict[str, Pending] = {}
        self.active: dict[str, ActiveRun] = {}
        self.unstarted: set[str] = set()  # active runs whose worker.json is not read yet
        self.waiting: dict[str, str] = {}
        # Runs whose process group is gone and whose outcome goes to the registry with
        # the next scheduling pass: their slots go to the next runs in the same round trip.
        self.finishing: dict[str, tuple[ActiveRun, dict[str, Any]]] = {}
        self.held_elsewhere: dict[str, str] = {}  # GPU -> run we do not supervise holding it
        self.retry_due = False  # a command came back "not applied": schedule at the sweep
        self.known_seq: dict[str, int] = {}   # run -> last seq already reflected
        self.dirty = True
        # Our own status doubles as the bus probe, so it goes out at least every PROBE_S.
        # While it watches runs, that is; idle, it goes out every status interval.
        self.bus = BusHealth(3 * settings.status_interval, clock.monotonic())
        self.stats = {"started": 0, "finished": 0, "adopted": 0, "kills": 0}
        self.beacon = StatusBeacon(SOURCE, settings.status_interval, clock, self.counters)
        self.pace = Pacer(self.beacon, self.bus, min(settings.status_interval, PROBE_S),
                          settings.status_interval, settings.tick)
        # The fork server starts the shims; wake_fd is readable when one has ended.
        self.forks = forks
        self.resync = resync
        self.resync_needed = False
        self.registry_probe = RegistryProbe(client, clock)  # while the registry is away
        self._next_sweep = self._next_full = clock.monotonic()
        self.next_deadline = 0.0  # the earliest a watched run may be overdue (runwatch)
        self.poller = zmq.Poller()
        self.poller.register(follower.sub.sock, zmq.POLLIN)
        # Telemetry (heartbeats, artifacts) does not wake the loop: it is drained every
        # TELEMETRY_S, so a thousand heartbeats a second cost a few dozen steps.
        self.poller.register(forks.wake_fd, zmq.POLLIN)
        telemetry.subscribe(Topic.HEARTBEAT.value + ".")
        telemetry.subscribe(Topic.ARTIFACT.value + ".")
        telemetry.subscribe(Topic.STATUS.topic(SOURCE))

    def wake_on(self, fd: int) -> None:
        self.poller.register(fd, zmq.POLLIN)

    def busy(self) -> bool:
        """Anything that may be due before our next status: runs to watch, outcomes or
        commands to send, a GPU read, the registry to find again."""
        return bool(self.active or self.finishing or self.retry_due or self.dirty
                    or self.resync_needed or self.gpu_read is not None)

    def counters(self) -> dict[str, Any]:
        return {**self.stats, "pending": len(self.pending), "active": len(self.active),
                "gpus": [g.to_map() for g in self.inventory.gpus],
                "gpu_source": self.inventory.source, "cpu_slots": self.cpu_slots,
                "bus_healthy": self.bus.healthy(self.clock.monotonic()),
                "registry_reachable": not self.resync_needed}

    # --- the loop ------------------------------------------------------------------
    def step(self, timeout_s: float) -> None:
        """Wait for a bus message, a shim's end or the next tick, then do what is due.
        If the registry stops answering, the state is re-read from it once it is back."""
        try:
            gpu_due = (self._next_full - self.clock.monotonic()
                       if any(p.gpus for p in self.pending.values()) else None)
            woke = self._wait(self.pace.wait_s(timeout_s, self.busy(), gpu_due))
            if self.resync_needed and self.resync is not None:
                if self.registry_probe.answers():
                    self.resync(self)
                    self.resync_needed = False
            if not self.resync_needed:
                self._step(woke)
        except ForkServerGone as exc:
            self.log.error("forkserver.gone", reason=str(exc),
                           hint="exiting; runs are adopted or started again at restart")
            raise
        except Unavailable as exc:
            if not self.resync_needed:
                self.log.warning("registry.unavailable", reason=exc.message)
            self.resync_needed = True
        except OrchestratorError as exc:
            # An error where the loop needed an answer (the registry's disk full, say):
            # the loop goes on, and reads the state again once the registry answers.
            self.log_refused("step", {}, exc)
            self.resync_needed = True
        self.send_status()

    def send_status(self) -> None:
        """Our status when it is due: every step, also while the registry is away, and
        while a registry call holds the loop (the client's on_wait): the dispatcher is
        alive, and its status is its probe of the bus."""
        self.pace.update(watching=bool(self.active))
        due = self.beacon.due()
        if due is not None:
            self.publisher.send(*due)

    def _wait(self, timeout_s: float) -> bool:
        """Block until something is ready; True if a run's shim has ended."""
        ready = dict(self.poller.poll(int(timeout_s * 1000) + (timeout_s > 0)))
        if self.forks.wake_fd in ready:
            return self.forks.ended()
        return False

    def _step(self, child_exited: bool) -> None:
        for env in self.follower.poll(0):
            self._on_event(env)
        telemetry.drain(self)
        now = self.clock.monotonic()
        if self.bus.recovered(now):
            self.log.info("bus.reachable")
            for run in self.active.values():
                if run.watch is not None:
                    run.watch.beat(now)  # a fresh window: silence during the outage proves nothing
        elif self.bus.lost:
            self.log.warning("bus.unreachable", hint="no run is killed for silence meanwhile")
        self._schedule_while_dirty()
        # A wake for a heartbeat costs O(1): the per-run work runs on the sweep timer,
        # when a shim has ended (the fork server's notice) and for runs whose worker has
        # not shown up yet.
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + SWEEP_S
            self.dirty = self.dirty or self.retry_due or bool(self.finishing)
            self.retry_due = False
        full = sweep and now >= self._next_full
        if full:
            self._next_full = now + FULL_SWEEP_S
            self.forks.check()
            # (a shim's end noticed after its run was finished: nothing will ask again)
            self.forks.forget({r.run_dir for r in self.active.values()})
        if sweep:  # a finished GPU read is applied at once; a new one starts every 2 s
            refresh_in_background(self, start=full)
        if sweep or child_exited:
            runs = list(self.active.values())
        else:  # only runs whose worker has not shown up yet
            runs = [r for r in map(self.active.get, self.unstarted) if r is not None]
        for run in runs:
            if run.run_id in self.finishing:
                continue  # its process group is empty: nothing to watch or signal
            # exit records: our shims are announced by the fork server; adopted ones are not
            check_exit = child_exited or full or run.pgid is None or (sweep and run.adopted)
            self._supervise(run, now, check_exit=check_exit)
            if sweep:
                run.logs.poll(self.publisher, now)
        runwatch.watch_deadlines(self, now)
        self._schedule_while_dirty()  # a run ended: its resources go to the next one now

    def call_registry(self, method: str, **args: Any) -> Optional[dict[str, Any]]:
        """A registry command; None (logged) if the registry refused it."""
        try:
            return self.client.call(method, args)
        except Unavailable:
            raise
        except OrchestratorError as exc:
            self.log_refused(method, args, exc)
            return None

    def _send(self, calls: list[tuple[str, dict[str, Any], Callable[[Any], None]]]) -> None:
        """Registry commands pipelined (one round trip; the registry applies them in
        this order, usually in one transaction). Each result goes to its handler; a
        refused command is logged and its handler gets the typed error."""
        for lo in range(0, len(calls), PIPELINE):
            chunk = calls[lo:lo + PIPELINE]
            results = self.client.call_many([(method, args) for method, args, _ in chunk])
            for (method, args, then), result in zip(chunk, results):
                if isinstance(result, OrchestratorError):
                    self.log_refused(method, args, result)
                then(result)

    def _on_event(self, env: Any) -> None:
        try:
            event = event_from_envelope(env)
        except FrameError as exc:
            self.log.warning("event.unreadable", seq=env.seq, reason=exc.message)
            return
        if env.seq <= self.known_seq.get(event.run_id, 0):
            return
        if self.held_elsewhere and isinstance(event, ev.GpusReleased):
            for gpu in [g for g, holder in self.held_elsewhere.items() if holder == event.run_id]:
                del self.held_elsewhere[gpu]
                self.dirty = True
        if isinstance(event, ev.RunSubmitted):
            self.pending[event.run_id] = pending_from_run({
                "run_id": event.run_id, "priority": event.priority, "submitted_seq": env.seq,
                "config": event.config})
            self.dirty = True
        elif isinstance(event, (ev.RunCancelled, ev.RunFailed, ev.GpusClaimed)):
            if self.pending.pop(event.run_id, None) is not None:
                self.waiting.pop(event.run_id, None)
                self.dirty = True
            if isinstance(event, ev.GpusClaimed) and event.claimed_by == SOURCE:
                self._claimed_unawares(event.run_id)
        elif isinstance(event, ev.CancelRequested) and event.run_id in self.active \
                and event.run_id not in self.finishing:
            run = self.active[event.run_id]
            run.cancel = (event.requested_by, event.reason)
            run.cancel_at = env.ts
            self.begin_cancel(run)

    # --- scheduling and starting -----------------------------------------------------
    def _schedule(self) -> None:
        """Ended runs' outcomes first, then the claims their resources allow and any
        new waiting reasons: one pipelined round trip to the registry."""
        ended = [run for run, _ in self.finishing.values()]
        if retry_artifacts(self.client.call, ended, self.log_refused):
            self.retry_due = True
        calls: list[tuple[str, dict[str, Any], Callable[[Any], None]]] = [
            ("finish", {"run_id": run.run_id, **outcome},
             lambda reply, run=run, outcome=outcome: self._finished(reply, run, outcome))
            for run, outcome in self.finishing.values() if not run.artifacts_left]
        held = [r for r in self.active.values() if r.run_id not in self.finishing]
        busy = {g for r in held for g in r.gpus} | set(self.held_elsewhere)
        cap = Capacity(self.inventory.gpus, busy,
                       self.cpu_slots, sum(r.cpu_slots for r in held),
                       self.settings.max_runs, len(held))
        for decision in plan(self.pending.values(), cap):
            run_id = decision.run_id
            if decision.action == "start":
                pending, gpus = self.pending.pop(run_id), list(decision.gpus)
                calls.append(("claim_gpus", {"run_id": run_id, "gpu_uuids": gpus,
                                             "claimed_by": SOURCE,
                                             "inventory": self.inventory.uuids},
                              lambda reply, p=pending, gpus=gpus: self._claimed(reply, p, gpus)))
            elif decision.action == "never":
                pending = self.pending.pop(run_id)
                calls.append(("finish", {"run_id": run_id, "outcome": "failed",
                                         "cause": "unschedulable", "message": decision.reason},
                              lambda reply, p=pending: self._judged_never(reply, p)))
            elif self.waiting.get(run_id) != decision.reason:
                calls.append(("record_waiting", {"run_id": run_id, "reason": decision.reason},
                              lambda reply, r=run_id, why=decision.reason:
                              self._waited(reply, r, why)))
        self._send(calls)

    def _schedule_while_dirty(self) -> None:
        while self.dirty:
            self.dirty = False
            try:
                self._schedule()
            except BaseException:
                self.dirty = True  # the registry went away: schedule again once it is back
                raise

    def _waited(self, reply: Any, run_id: str, reason: str) -> None:
        if not isinstance(reply, OrchestratorError):
            self.waiting[run_id] = reason
        elif isinstance(reply, NotApplied):
            self.retry_due = True

    def _judged_never(self, reply: Any, pending: Pending) -> None:
        if isinstance(reply, NotApplied):
            self.pending[pending.run_id] = pending  # not applied: still PENDING, sent again
            self.retry_due = True

    def _claimed(self, reply: Any, pending: Pending, gpus: list[str]) -> None:
        if isinstance(reply, ResourceBusy):
            # Held by a run we do not supervise: not offered again until that run ends.
            gpu, holder = reply.details.get("gpu_uuid"), reply.details.get("holder")
            if gpu:
                self.held_elsewhere[str(gpu)] = str(holder or "")
            self.pending[pending.run_id] = pending  # still PENDING: a later pass retries
            return
        if isinstance(reply, OrchestratorError):
            if isinstance(reply, NotApplied):  # not applied (its batch failed): still PENDING
                self.pending[pending.run_id] = pending
                self.retry_due = True
            return  # otherwise no longer PENDING (cancelled meanwhile): nothing to start
        run_id = reply["run"]["run_id"]
        self.waiting.pop(run_id, None)
        self.known_seq[run_id] = reply["run"]["last_seq"]
        self.start_run(reply["run"], gpus)

    def _claimed_unawares(self, run_id: str) -> None:
        """Our claim whose answer never reached us (a retry that the registry applied
        late, after a resync read the run as PENDING): the run is started now instead
        of staying DISPATCHING with nobody to start it."""
        if run_id in self.active:
            return
        reply = self.call_registry("get_run", run_id=run_id)
        run = reply["run"] if reply else None
        if run is not None and run["status"] == "DISPATCHING" and run_id not in self.active:
            self.known_seq[run_id] = run["last_seq"]
            self.log.info("run.claim_found", run_id=run_id, gpus=run["gpus"])
            self.start_run(run, list(run["gpus"]))

    def start_run(self, run: dict[str, Any], gpus: list[str]) -> None:
        run_id = run["run_id"]
        path = launch.run_dir(self.settings, run_id)
        active = ActiveRun(run_id, path, run["config"], gpus,
                           int(run["config"].get("resources", {}).get("cpu_slots", 1)),
                           RunLogs(run_id, path, self.settings.log_rate))
        if run.get("cancel_requested_by"):  # asked while it was starting: done once it has
            active.cancel = (str(run["cancel_requested_by"]), str(run.get("cancel_reason") or ""))
            active.cancel_at = run.get("cancel_requested_at")
        self.active[run_id] = active
        self.unstarted.add(run_id)
        try:
            launch.check_gpus(gpus, self.inventory)
            path, argv, env = launch.prepare(self.settings, run, gpus)
        except (launch.UnknownWorker, launch.GpuGone, OSError) as exc:
            self.finish(active, {"outcome": "failed", "cause": "spawn_error",
                                  "message": str(exc)})
            return
        self.forks.spawn(path, argv, env)
        self.stats["started"] += 1
        self.log.info("run.spawned", run_id=run_id, gpus=gpus)

    # --- supervision -----------------------------------------------------------------
    def _supervise(self, run: ActiveRun, now: float, check_exit: bool) -> None:
        self.note_started(run, now)
        if check_exit and runwatch.ended(self, run):
            return  # its outcome is on its way, or its group's leftovers are being killed
        self.act_on(run, now)

    def act_on(self, run: ActiveRun, now: float) -> None:
        """Silence, the time limit or a kill in progress: the signal due now, if any."""
        if run.watch is not None and run.pgid is not None:
            action = check(run.watch, now, self.bus.last_seen)
            if action is not None:
                self.stats["kills"] += 1
                self.log.info("run.signal", run_id=run.run_id, signal=action.signal,
                              cause=action.plan.cause)
                spawner.signal_group(run.pgid, _SIGNALS[action.signal])
                if action.signal == "TERM":
                    runwatch.record_kill(self, run, action.plan)

    def note_started(self, run: ActiveRun, now: float) -> None:
        runwatch.note_started(self, run, now)

    def begin_cancel(self, run: ActiveRun) -> None:
        if run.watch is None or run.pgid is None or run.watch.kill is not None:
            return  # not started yet: done when its worker record appears
        by, reason = run.cancel or ("", "")
        # The grace counts from the recorded cancel, also when we learn of it late (we
        # were down): one already over ends in SIGKILL at the next check.
        wall_now = self.clock.now()
        since = max(0.0, wall_now - run.cancel_at) if run.cancel_at is not None else 0.0
        action = begin_kill(run.watch, self.clock.monotonic() - since, "cancelled",
                            "cancelled", f"cancelled by {by}: {reason}",
                            run.watch.cancel_grace_s)
        spawner.signal_group(run.pgid, _SIGNALS[action.signal])
        runwatch.record_kill(self, run, action.plan, wall_now - since)
        self.log.info("run.signal", run_id=run.run_id, signal="TERM", cause="cancelled")

    def finish(self, run: ActiveRun, outcome: dict[str, Any]) -> None:
        """The run's process group is empty: its last log lines and artifacts go out
        now, its outcome with the next scheduling pass (this step)."""
        run.logs.poll(self.publisher, self.clock.monotonic() + 3600)  # the final bytes
        run.artifacts_left = not register_artifacts(self.client.call, run, self.log_refused)
        result = run_result(run, self.log)  # what its worker reported, bounded
        outcome = {**outcome, "result": result} if result else outcome
        self.finishing[run.run_id] = (run, outcome)
        self.dirty = True

    def _finished(self, reply: Any, run: ActiveRun, outcome: dict[str, Any]) -> None:
        if isinstance(reply, NotApplied):
            return  # not stored (its batch failed): sent again at the next sweep
        if self.finishing.get(run.run_id, (None,))[0] is run:
            del self.finishing[run.run_id]
        if self.active.pop(run.run_id, None) is None:
            return  # reported already
        self.unstarted.discard(run.run_id)
        self.forks.done_with(run.run_dir)
        self.stats["finished"] += 1
        self.log.info("run.finished", run_id=run.run_id, **outcome)

    def close(self) -> None:
        self.forks.close()
        self.client.close()
        self.follower.sub.sock.close(linger=0)
        self.telemetry.sock.close(linger=0)
        self.publisher.sock.close(linger=500)
