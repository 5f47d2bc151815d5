"""The dispatcher's loop: poll, turn what was heard into observations, step the
decision core (services/dispatcher/decide), run its effects, and send our status.

    step(timeout):
        the registry away?  ping it (at most every second); it answers: RegistryBack
        wait for a committed event, a launcher's news, or the next tick
        ShimEnded*  BackEndMoved  CommittedEvent*  Heartbeats  ArtifactReported*
        BusSeen  GpusRead
        Tick(monotonic, wall)           timers, sweeps, deadlines
    each observation: state, effects = step(state, observation); the effects run at
    once (effectrunner.py) and what they find is stepped next, before anything new is
    heard: the registry calls of one step stay one pipelined round trip.

One thread; no sleep: every wait is the poll's. The loop owns its sockets (the
follower's, the telemetry subscriber, the status publisher) and the launcher.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any

import zmq

from bus.catchup import EventFollower
from bus.pubsub import Publisher, Subscriber
from bus.registry import RegistryClient
from core.clock import Clock
from core.errors import OrchestratorError, Unavailable
from core.protocol import Ping
from core.settings import Settings
from runtime.logs import ServiceLogger
from runtime.status import StatusBeacon
from services.dispatcher import launch
from services.dispatcher.decide import step as decide
from services.dispatcher.decide.gpus import Inventory
from services.dispatcher.decide.inputs import (BackEndMoved, RegistryBack, RegistryLost,
                                               ShimEnded, Tick)
from services.dispatcher.decide.phases import HOLDING, Phase
from services.dispatcher.decide.state import (FULL_SWEEP_S, SOURCE, SWEEP_S,
                                              DispatcherConfig, DispatcherState, Registry)
from services.dispatcher.shell import hearing
from services.dispatcher.shell.effectrunner import EffectRunner, LogWriter, RunLogFollowers
from services.dispatcher.shell.gpuread import GpuReader
from services.dispatcher.shell.launcher import Launcher, LauncherGone
from services.dispatcher.shell.pacing import Pacer, poll_ms

PING_EVERY_S = 1.0         # the registry away: a quick ping at most this often
PING_TIMEOUT_S = 0.5


def own_cores() -> tuple[int, ...]:
    """The CPUs this process may run on (its affinity mask): the cores runs are pinned
    to (decide/cores.py); () where the platform cannot tell."""
    try:
        return tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return ()


class DispatcherLoop:
    def __init__(self, settings: Settings, registry: RegistryClient, follower: EventFollower,
                 telemetry: Subscriber, publisher: Publisher, launcher: Launcher,
                 inventory: Inventory, cpu_slots: int, clock: Clock, log: ServiceLogger,
                 gpus: GpuReader, host: str) -> None:
        self.settings = settings
        self.registry = registry
        self.follower = follower
        self.telemetry = telemetry
        self.publisher = publisher
        self.launcher = launcher
        self.clock = clock
        self.log = log
        self.gpus = gpus
        config = DispatcherConfig(cpu_slots, settings.max_runs, host,
                                  3 * settings.status_interval, own_cores(),
                                  settings.launcher)
        self.state = DispatcherState.initial(config, inventory, clock.monotonic(), clock.now())
        self.beacon = StatusBeacon(SOURCE, settings.status_interval, clock, self.counters)
        self.pacer = Pacer(self.beacon, settings.status_interval, settings.tick)
        self.logs = RunLogFollowers(self.run_dir, settings.log_rate, publisher)
        self.effects = EffectRunner(registry, launcher, follower, self.logs, gpus,
                                    self.beacon, LogWriter(log, clock), clock)
        self._next_ping = clock.monotonic()
        self._next_logs = self._next_check = clock.monotonic()
        hearing.subscribe(telemetry)
        self.poller = zmq.Poller()
        self.poller.register(follower.sub.sock, zmq.POLLIN)
        self.poller.register(launcher.wake_fd, zmq.POLLIN)

    def run_dir(self, run_id: str) -> str:
        return launch.run_dir(self.settings, run_id)

    def wake_on(self, fd: int) -> None:
        self.poller.register(fd, zmq.POLLIN)

    # --- the decision core, fed -------------------------------------------------------
    def feed(self, observation: Any) -> None:
        """Step ``observation``, run its effects, and step what they found, in order."""
        queue = deque([observation])
        while queue:
            self.state, effects = decide.step(self.state, queue.popleft())
            if effects:
                queue.extend(self.effects.run(effects))

    # --- the loop --------------------------------------------------------------------
    def step(self, timeout_s: float) -> None:
        try:
            self._find_registry()
            wait = self.pacer.wait_s(self.state, self.clock.monotonic(), timeout_s)
            ready = dict(self.poller.poll(poll_ms(wait)))
            if self.launcher.wake_fd in ready:
                for ended in self.launcher.ended():
                    self._shim_ended(ended)
                moved = self.launcher.moved()
                if moved:
                    self.feed(BackEndMoved(tuple(moved)))
            self._hear()
            now = self.clock.monotonic()
            self.feed(Tick(now, self.clock.now()))
            self._chores(now)
        except LauncherGone as exc:
            self.log.error(exc.event, reason=str(exc),
                           hint="exiting; runs are adopted or started again at restart")
            raise
        except Unavailable as exc:
            self.feed(RegistryLost(exc.message))
        except OrchestratorError as exc:
            # An error where the loop needed an answer (a follower's fetch refused: the
            # registry's disk full, say): read the state again once the registry answers.
            self.log.warning("registry.refused", method="events_since", code=exc.code,
                             reason=exc.message)
            self.feed(RegistryLost(exc.message))
        changed = self.pacer.update(self.state)
        if changed is not None:
            self.feed(changed)
        self.send_status()

    def _find_registry(self) -> None:
        if self.state.registry in (Registry.UP, Registry.READING):
            return
        now = self.clock.monotonic()
        if now < self._next_ping:
            return
        self._next_ping = now + PING_EVERY_S
        try:
            self.registry.call(Ping(), timeout_s=PING_TIMEOUT_S, retries=0)
        except Unavailable:
            return
        self.feed(RegistryBack())

    def _shim_ended(self, ended: ShimEnded) -> None:
        if ended.run_id in self.state.runs:
            self.feed(ended)
        else:  # its run was finished first (from its exit record): nothing will ask
            self.launcher.forget(ended.run_id)

    def _hear(self) -> None:
        if self.state.registry is Registry.UP:
            for event in hearing.committed(self.follower, self.log):
                self.feed(event)
        for heard in hearing.drain(self.telemetry, self.clock.monotonic(), self.state.runs,
                                   self.run_dir):
            self.feed(heard)
        read = self.gpus.result()
        if read is not None:
            self.feed(read)

    def _chores(self, now: float) -> None:
        """The shell's own timers: log files published, the launcher checked."""
        if now >= self._next_logs:
            self._next_logs = now + SWEEP_S
            self.logs.poll(now, skip=self.state.backlogged)
        if now >= self._next_check:
            self._next_check = now + FULL_SWEEP_S
            self.launcher.check()

    def send_status(self) -> None:
        """Our status when it is due: every step, also while the registry is away, and
        while a registry call holds the loop (the client's on_wait): the dispatcher is
        alive, and its status is its probe of the bus."""
        due = self.beacon.due()
        if due is not None:
            self.publisher.send(*due)

    def counters(self) -> dict[str, Any]:
        s = self.state
        return {**vars(s.stats),
                "pending": sum(r.phase is Phase.QUEUED for r in s.runs.values()),
                "active": sum(r.phase in HOLDING or r.phase is Phase.ENDING
                              for r in s.runs.values()),
                "gpus": [g.to_map() for g in s.inventory.gpus],
                "gpu_source": s.inventory.source.value, "cpu_slots": s.config.cpu_slots,
                "bus_healthy": s.bus.healthy(self.clock.monotonic()),
                "registry_reachable": s.registry is Registry.UP,
                "launcher_problem": self.launcher.problem()}

    def close(self) -> None:
        self.launcher.close()
        self.registry.close()
        self.follower.sub.sock.close(linger=0)
        self.telemetry.sock.close(linger=0)
        self.publisher.sock.close(linger=500)
