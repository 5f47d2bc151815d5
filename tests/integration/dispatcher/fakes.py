"""Helpers of the dispatcher's in-process tests (their fixtures are in conftest.py
beside them): the dispatcher's decision core (services/dispatcher/decide) driven as its
loop drives it (shell/loop.py's ``feed``: step, run the effects, step what they found),
through the real shell pieces: the effect runner, the registry calls and the fork
launcher, which reads real run folders (worker.json, exit.json, the run lock) and
signals and kills real processes. Around them, stand-ins for what is not in the test
process: a scripted registry (typed requests in, the registry's answers or typed
errors out), a fork server (no process: the test says when a shim ended, and with
which status), the committed-event follower and the log publisher; the clock is a
FakeClock. Real processes stand in for workers (``sleep``, in a session of their own).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import deque
from typing import Any, Callable, Iterable, Optional

from core import commands as cmd
from core import events as ev
from core.clock import FakeClock
from core.errors import IllegalTransition, NotFound, OrchestratorError
from core.protocol import GetRun, Ping, Snapshot
from core.rundir import EXIT_FILE, MANIFEST_FILE, RUN_LOCK, WORKER_FILE
from core.settings import Settings
from runtime.logs import ServiceLogger
from runtime.status import StatusBeacon
from services.dispatcher import launch
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import step as decide
from services.dispatcher.decide.gpus import Inventory
from services.dispatcher.decide.inputs import BusSeen, CommittedEvent, RegistryBack, Tick
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.state import (FULL_SWEEP_S, SOURCE, SWEEP_S,
                                              DispatcherConfig, DispatcherState,
                                              Registry, RunRecord)
from services.dispatcher.forkserver import ForkServerGone
from services.dispatcher.shell.effectrunner import EffectRunner, LogWriter, RunLogFollowers
from services.dispatcher.shell.forklauncher import ForkLauncher
from services.dispatcher.shell.gpuread import GpuReader
from services.dispatcher.spawner import take_run_lock
from services.dispatcher.procs import process_start_time, run_processes
from tests.helpers import wait_until

Request = Any


def internal() -> OrchestratorError:
    """A batch that failed to commit, as a reply carries it (NotApplied: sent again)."""
    return OrchestratorError.from_dict({"code": "internal", "message": "disk I/O error"})


def full() -> OrchestratorError:
    """The registry's disk is full, as a reply carries it (NotApplied: sent again)."""
    return OrchestratorError.from_dict({"code": "resource_exhausted",
                                        "message": "the registry's disk is full"})


# --- the registry ------------------------------------------------------------------

STATUS_OF_OUTCOME = {"completed": "COMPLETED", "failed": "FAILED", "cancelled": "CANCELLED"}
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED")


def record(run_id: str, status: str, **config: Any) -> dict[str, Any]:
    """A run as the registry's replies show it (core.projection.run_view's map)."""
    return {"run_id": run_id, "status": status, "gpus": [], "last_seq": 0,
            "cancel_requested_by": "", "cancel_reason": "", "priority": 0,
            "submitted_seq": 0,
            "config": {"worker": "test-sleep", "resources": {"cpu_slots": 1}, **config}}


class ScriptedRegistry:
    """The registry as the dispatcher's RegistryClient shows it: core.commands and
    core.protocol requests in; the registry's answers (maps), or core.errors instances
    out (``call`` raises them, ``call_many`` returns them in place). Its runs change
    as the registry's would (claimed, started, finished). Every request is kept, in
    order, in ``requests``; ``refuse`` scripts refusals."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.head_seq = 0
        self.requests: list[Request] = []
        self.artifacts: list[cmd.RegisterArtifact] = []   # the ones stored
        self.page_cut = 0      # > 0: snapshot pages cut to this many runs ("more")
        self.between_pages: Optional[Callable[[], None]] = None  # after the first page
        self._refusals: list[list[Any]] = []
        self.closed = False

    # --- scripting -----------------------------------------------------------------
    def add(self, run: dict[str, Any]) -> dict[str, Any]:
        """A run the registry holds (its submitted_seq the next seq unless given)."""
        if not run.get("submitted_seq"):
            self.head_seq += 1
            run["submitted_seq"] = self.head_seq
        self.head_seq = max(self.head_seq, run["submitted_seq"])
        run["last_seq"] = max(run.get("last_seq") or 0, run["submitted_seq"])
        self.runs[run["run_id"]] = run
        return run

    def refuse(self, kind: type, error: OrchestratorError, times: int = 1,
               when: Optional[Callable[[Any], bool]] = None) -> None:
        """The next ``times`` requests of type ``kind`` (those ``when`` accepts) get
        ``error`` instead of an answer."""
        self._refusals.append([kind, error, times, when])

    def commit(self, run_id: str, **changes: Any) -> int:
        """An event of the run committed (its status, say, changed): its seq."""
        self.head_seq += 1
        self.runs[run_id].update(changes, last_seq=self.head_seq)
        return self.head_seq

    # --- what the dispatcher sent ----------------------------------------------------
    def sent(self, kind: type) -> list[Any]:
        return [r for r in self.requests if isinstance(r, kind)]

    def finishes(self, run_id: Optional[str] = None) -> list[cmd.FinishRun]:
        return [f for f in self.sent(cmd.FinishRun) if run_id is None or f.run_id == run_id]

    def commands(self) -> list[Request]:
        """The requests sent, queries (snapshot, get_run, ping) left out."""
        return [r for r in self.requests if not isinstance(r, (Snapshot, GetRun, Ping))]

    # --- RegistryClient --------------------------------------------------------------
    def call(self, request: Request, *, timeout_s: Optional[float] = None,
             retries: Optional[int] = None, request_id: Optional[str] = None) -> Any:
        result = self._one(request)
        if isinstance(result, OrchestratorError):
            raise result
        return result

    def call_many(self, requests: Iterable[Request], *, timeout_s: Optional[float] = None,
                  retries: Optional[int] = None) -> list[Any]:
        return [self._one(r) for r in requests]

    def close(self) -> None:
        self.closed = True

    # --- the answers -----------------------------------------------------------------
    def _one(self, request: Request) -> Any:
        self.requests.append(request)
        for rule in self._refusals:
            kind, error, times, when = rule
            if times > 0 and isinstance(request, kind) and (when is None or when(request)):
                rule[2] -= 1
                return error
        try:
            return self._answer(request)
        except OrchestratorError as exc:
            return exc

    def _answer(self, request: Request) -> Any:
        if isinstance(request, Ping):
            return {"service": "registry", "pid": 0, "head_seq": self.head_seq}
        if isinstance(request, Snapshot):
            return self._list(request)
        run = self.runs.get(getattr(request, "run_id", ""))
        if run is None:
            raise NotFound(f"run {getattr(request, 'run_id', '')!r} does not exist")
        if isinstance(request, GetRun):
            return {"run": dict(run), "head_seq": self.head_seq}
        status = run["status"]
        if isinstance(request, cmd.ClaimGpus):
            self._allowed(run, "GpusClaimed", "PENDING")
            seq = self.commit(run["run_id"], status="DISPATCHING",
                              gpus=list(request.gpu_uuids))
        elif isinstance(request, cmd.RecordStarted):
            self._allowed(run, "RunStarted", "DISPATCHING")
            seq = self.commit(run["run_id"], status="RUNNING")
        elif isinstance(request, cmd.FinishRun):
            self._allowed(run, "RunFinished", "PENDING", "DISPATCHING", "RUNNING")
            seq = self.commit(run["run_id"], status=STATUS_OF_OUTCOME[request.outcome],
                              gpus=[])
        elif isinstance(request, (cmd.RecordWaiting, cmd.RecordAdopted)):
            self._allowed(run, type(request).__name__, status)
            seq = self.commit(run["run_id"])
        elif isinstance(request, cmd.RegisterArtifact):
            self.artifacts.append(request)
            seq = self.commit(run["run_id"])
        else:
            raise AssertionError(f"not a request the dispatcher sends: {request!r}")
        return {"run": dict(run), "events": [seq]}

    @staticmethod
    def _allowed(run: dict[str, Any], event: str, *statuses: str) -> None:
        if run["status"] not in statuses or run["status"] in TERMINAL:
            raise IllegalTransition(run["run_id"], run["status"], event)

    def _list(self, q: Snapshot) -> dict[str, Any]:
        runs = sorted((r for r in self.runs.values() if not q.status or r["status"] in q.status),
                      key=lambda r: r["submitted_seq"], reverse=q.newest_first)
        if q.before_seq:
            runs = [r for r in runs if r["submitted_seq"] < q.before_seq]
        page = runs[q.offset:q.offset + q.limit]
        more = q.offset + len(page) < len(runs)
        if self.page_cut and len(page) > self.page_cut:  # cut short by its size
            page, more = page[:self.page_cut], True
        answer = {"runs": [dict(r) for r in page], "total": len(runs),
                  "as_of_seq": self.head_seq, "more": more, "experiments": []}
        hook, self.between_pages = self.between_pages, None
        if hook is not None:
            hook()
        return answer


# --- the fork server, the follower, the publisher ----------------------------------

class StandInForks:
    """What ForkLauncher uses of services/dispatcher/forkserver.py's ForkServer, with
    no server process: ``spawned`` lists the run folders a shim was asked for; the
    test tells of a shim's end (``shim_ended``), which makes ``wake_fd`` readable."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self.wake_fd = self._r
        self.spawned: list[str] = []
        self.ended_dirs: set[str] = set()
        self.exit_status: dict[str, int] = {}
        self.gone = False
        self.closed = False

    def shim_ended(self, run_dir: str, status: Optional[int] = None) -> None:
        """The shim of ``run_dir`` ended (its pidfd told); ``status``: its wait status,
        once the server's notice came (None: still on its way)."""
        self.ended_dirs.add(run_dir)
        if status is not None:
            self.exit_status[run_dir] = status
        os.write(self._w, b"!")

    def spawn(self, run_dir: str, argv: list[str], env: dict[str, str],
              limits: object = None) -> None:
        if self.gone:
            raise ForkServerGone("the shim fork server exited (-9)")
        self.spawned.append(run_dir)

    def ended(self) -> bool:
        try:
            return bool(os.read(self._r, 4096))
        except BlockingIOError:
            return False

    def check(self) -> None:
        if self.gone:
            raise ForkServerGone("the shim fork server exited (-9)")

    def done_with(self, run_dir: str) -> None:
        self.ended_dirs.discard(run_dir)
        self.exit_status.pop(run_dir, None)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self._r)
            os.close(self._w)


class Follower:
    """The committed-event follower as the loop uses it (bus.catchup.EventFollower):
    ``reset`` from the snapshot's head; ``poll`` gives ``events`` or raises ``error``
    (the registry refusing the fetch of a gap). ``sub``: its subscriber (the loop
    polls its socket)."""

    def __init__(self, sub: Any = None) -> None:
        self.sub = sub
        self.resets: list[int] = []
        self.events: list[Any] = []
        self.error: Optional[OrchestratorError] = None

    def reset(self, after_seq: int) -> None:
        self.resets.append(after_seq)

    def poll(self, timeout_s: float) -> list[Any]:
        if self.error is not None:
            raise self.error
        out, self.events = self.events, []
        return out


class Published:
    """The log lines published (bus.pubsub.Publisher.publish)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def publish(self, topic: str, mtype: str, payload: dict[str, Any]) -> None:
        self.messages.append((topic, mtype, payload))


# --- the dispatcher ----------------------------------------------------------------

class Harness:
    """The dispatcher's state, fed as DispatcherLoop.feed feeds it, its effects carried
    out by the real EffectRunner and ForkLauncher. ``done``: every effect, in order."""

    def __init__(self, settings: Settings, clock: FakeClock, registry: ScriptedRegistry,
                 forks: StandInForks, inventory: Inventory = Inventory(),
                 gpu_read: Optional[Callable[[frozenset[int]], Inventory]] = None,
                 cpu_slots: int = 4) -> None:
        self.settings, self.clock, self.registry, self.forks = settings, clock, registry, forks
        self.launcher = ForkLauncher(settings, forks=forks)  # type: ignore[arg-type]
        self.follower = Follower()
        self.published = Published()
        self.gpus = GpuReader(gpu_read)
        self.log = ServiceLogger("dispatcher-test")
        self.beacon = StatusBeacon(SOURCE, settings.status_interval, clock, dict)
        logs = RunLogFollowers(self.run_dir, settings.log_rate, self.published)  # type: ignore[arg-type]
        self.effects = EffectRunner(registry, self.launcher, self.follower,  # type: ignore[arg-type]
                                    logs, self.gpus, self.beacon, LogWriter(self.log, clock),
                                    clock)
        self.state = DispatcherState.initial(
            DispatcherConfig(cpu_slots, settings.max_runs, "test-host"), inventory,
            clock.monotonic(), clock.now())
        self.done: list[Any] = []
        self.locks: dict[str, int] = {}

    def run_dir(self, run_id: str) -> str:
        return launch.run_dir(self.settings, run_id)

    # --- feeding, as the loop does ---------------------------------------------------
    def feed(self, observation: Any) -> None:
        queue = deque([observation])
        while queue:
            self.state, effects = decide.step(self.state, queue.popleft())
            self.done.extend(effects)
            if effects:
                queue.extend(self.effects.run(effects))

    def tick(self, dt: float = 0.0) -> None:
        self.clock.advance(dt)
        self.feed(Tick(self.clock.monotonic(), self.clock.now()))

    def sweep(self) -> None:
        """The next sweep (the folders of starting, adopted and ended runs read)."""
        self.tick(SWEEP_S)

    def full_sweep(self) -> None:
        """The next full sweep (every run's exit record, the GPUs read again)."""
        self.tick(max(SWEEP_S, min(FULL_SWEEP_S, self.state.next_full - self.clock.monotonic())))

    def pass_time(self, seconds: float, step: float = 1.0) -> None:
        """``seconds`` go by in ticks of ``step``, our status coming back through the
        bus at each, from now on (the bus proven healthy, as the loop's probes prove
        it; the first proof gives every watched run a fresh window from now)."""
        end = self.clock.monotonic() + seconds
        while True:
            self.feed(BusSeen(self.clock.monotonic()))
            self.tick()
            if self.clock.monotonic() >= end - 1e-9:
                return
            self.clock.advance(min(step, end - self.clock.monotonic()))

    def boot(self) -> "Harness":
        """Start-up: the registry answers; its non-terminal runs are read (the
        snapshot) and each DISPATCHING or RUNNING run's folder judged."""
        self.feed(RegistryBack())
        assert self.state.registry is Registry.UP, self.state.registry
        return self

    def hear_forks(self) -> None:
        """What the loop does when the fork server's fd wakes it."""
        for ended in self.launcher.ended():
            if ended.run_id in self.state.runs:
                self.feed(ended)
            else:
                self.launcher.forget(ended.run_id)

    def hear_gpus(self, timeout: float = 10.0) -> None:
        """The GPU re-read (in its thread) done: its result fed, as the loop feeds it."""
        self.feed(wait_until(self.gpus.result, timeout, message="the GPU re-read"))

    # --- runs ------------------------------------------------------------------------
    def event(self, run_id: str, event: ev.Event, **changes: Any) -> None:
        """An event of the run committed by the registry, heard by the follower."""
        seq = self.registry.commit(run_id, **changes)
        self.feed(CommittedEvent(seq, self.clock.now(), event))

    def submit(self, run_id: str, **config: Any) -> None:
        run = self.registry.add(record(run_id, "PENDING", **config))
        self.feed(CommittedEvent(run["submitted_seq"], self.clock.now(), ev.RunSubmitted(
            run_id, "digest", dict(run["config"]), 0, "alice")))

    def ours(self, run_id: str, **config: Any) -> str:
        """A run submitted, claimed and started here: its shim asked of the fork
        server (STARTING: its worker record not read yet). Its folder."""
        self.submit(run_id, **config)
        path = self.run_dir(run_id)
        assert self.phase(run_id) is Phase.STARTING and path in self.forks.spawned, \
            (self.phase(run_id), self.forks.spawned)
        return path

    def started(self, run_id: str, pid: int, **config: Any) -> str:
        """Ours, its worker ``pid`` recorded by its shim and read (RUNNING)."""
        path = self.ours(run_id, **config)
        folder(self, run_id, pid)
        self.sweep()
        assert self.phase(run_id) is Phase.RUNNING and self.run(run_id).started_recorded
        return path

    def cancel(self, run_id: str, by: str, reason: str) -> None:
        self.event(run_id, ev.CancelRequested(run_id, by, reason),
                   cancel_requested_by=by, cancel_reason=reason)

    def shim_ended(self, run_id: str, status: Optional[int] = None) -> None:
        """The fork server tells of the end of the run's shim (``status``: its wait
        status; None: the notice with it is still on its way)."""
        self.forks.shim_ended(self.run_dir(run_id), status)
        self.hear_forks()

    def lock(self, run_id: str) -> None:
        """This test as the run's shim: its lock held (until ``unlock``)."""
        fd = take_run_lock(self.run_dir(run_id))
        assert fd is not None
        self.locks[run_id] = fd

    def unlock(self, run_id: str) -> None:
        os.close(self.locks.pop(run_id))

    # --- what it decided ---------------------------------------------------------------
    def run(self, run_id: str) -> RunRecord:
        return self.state.runs[run_id]

    def phase(self, run_id: str) -> Optional[Phase]:
        run = self.state.runs.get(run_id)
        return run.phase if run is not None else None

    def logged(self, event: str) -> list[fx.Log]:
        return [e for e in self.done if isinstance(e, fx.Log) and e.event == event]

    def observed(self) -> list[str]:
        return [e.run_id for e in self.done if isinstance(e, fx.ObserveRun)]

    def close(self) -> None:
        for run_id in list(self.locks):
            self.unlock(run_id)
        self.launcher.close()


# --- real run folders and real processes --------------------------------------------

def worker(procs: list[subprocess.Popen[bytes]], alive: bool = True) -> int:
    """A stand-in worker in its own process group; with ``alive`` False, already reaped."""
    p = subprocess.Popen(["sleep", "30"] if alive else ["true"], start_new_session=True)
    procs.append(p)
    if not alive:
        p.wait()
    return p.pid


def tagged(procs: list[subprocess.Popen[bytes]], run_id: str) -> int:
    """A process of run ``run_id`` known only by its environment (as a worker's, or a
    process it started), in a session of its own."""
    p = subprocess.Popen(["sleep", "30"], start_new_session=True,
                         env={**os.environ, "TRAINER_RUN_ID": run_id})
    procs.append(p)
    # Until it has exec'd, /proc shows the parent's environment: wait to see the tag.
    wait_until(lambda: p.pid in run_processes(run_id), 10,
               message=f"the tagged process of {run_id} to be seen in /proc")
    return p.pid


def folder(h: Harness, run_id: str, pid: Optional[int] = None, age_s: float = 1.0) -> str:
    """The run's folder; with ``pid``, the worker.json its shim writes (a shim that
    holds the run lock, the worker started ``age_s`` ago)."""
    path = h.run_dir(run_id)
    os.makedirs(path, exist_ok=True)
    if pid is not None:
        with open(os.path.join(path, WORKER_FILE), "w", encoding="utf-8") as fh:
            json.dump({"pid": pid, "pgid": pid, "start_time": process_start_time(pid) or 1.0,
                       "shim_pid": 0, "started_at": h.clock.now() - age_s,
                       RUN_LOCK: True}, fh)
    return path


def write_exit(path: str, code: int) -> None:
    with open(os.path.join(path, EXIT_FILE), "w", encoding="utf-8") as fh:
        json.dump({"exit_code": code, "signal": None}, fh)


def manifest(path: str, *names: str) -> None:
    with open(os.path.join(path, MANIFEST_FILE), "w", encoding="utf-8") as fh:
        for name in names:
            open(os.path.join(path, name), "wb").close()
            fh.write(json.dumps({"kind": "video", "path": name, "size": 0}) + "\n")
