"""The effects of one step, carried out; what they find comes back as observations.

    Call, Query          one pipelined batch (registrycalls.send): Replied, in order
    StartWorker          the launcher (StartFailed if it cannot)
    Signal, KillProcesses, RecordKill, ObserveRun (FolderRead)   the launcher
    ReadGpus             the GPU reader's thread (GpusRead comes later, from the loop)
    FlushLogs, ForgetRun the run's log follower (and the launcher's note of the run)
    FollowFrom           the committed-event follower
    ProbeBus             our status goes out now
    Log                  one structured line (refusals that are retried: throttled)

The calls go out where the first of them stands; the replies come first in what
comes back (the answers of this step's calls), then the folder reads.
"""

from __future__ import annotations

from typing import Any, Callable, Container, Union

from bus.catchup import EventFollower
from bus.pubsub import Publisher
from bus.registry import RegistryClient
from core.clock import Clock
from runtime.logs import ServiceLogger
from runtime.status import StatusBeacon
from runtime.throttle import LogThrottle
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide.inputs import KillRecord, StartFailed
from services.dispatcher.logfollow import RunLogs
from services.dispatcher.shell import registrycalls
from services.dispatcher.shell.gpuread import GpuReader
from services.dispatcher.shell.launcher import Launcher, StartError

REFUSED_LOG_S = 10.0   # a refusal retried every pass is logged at most this often


class RunLogFollowers:
    """Each run's stdout/stderr follower (logfollow.RunLogs), published from the loop."""

    def __init__(self, run_dir: Callable[[str], str], rate: int, publisher: Publisher) -> None:
        self.run_dir = run_dir
        self.rate = rate
        self.publisher = publisher
        self.runs: dict[str, RunLogs] = {}

    def follow(self, run_id: str, from_end: bool) -> None:
        if run_id not in self.runs:
            logs = RunLogs(run_id, self.run_dir(run_id), self.rate)
            if from_end:  # adopted: the bus copy of what was written meanwhile is skipped
                logs.skip_to_end()
            self.runs[run_id] = logs

    def poll(self, now: float, skip: Container[str] = ()) -> None:
        """Publish what each run's logs gained, but ``skip``'s (runs waiting in their
        back end's queue: nothing of theirs runs yet, and a thousand of them would
        cost two stats each, four times a second)."""
        for run_id, logs in self.runs.items():
            if run_id not in skip:
                logs.poll(self.publisher, now)

    def flush(self, run_id: str, now: float) -> None:
        logs = self.runs.get(run_id)
        if logs is not None:
            logs.poll(self.publisher, now + 3600)  # the final bytes, past the rate limit

    def forget(self, run_id: str) -> None:
        self.runs.pop(run_id, None)


class LogWriter:
    def __init__(self, log: ServiceLogger, clock: Clock) -> None:
        self.log = log
        self._retried = LogThrottle(REFUSED_LOG_S, clock)   # per (method, code)

    def write(self, effect: fx.Log) -> None:
        fields = {k: v for k, v in effect.fields.items() if v is not None}
        if effect.event == "registry.refused" and fields.pop("retried", False):
            held = self._retried.admit((fields.get("method"), fields.get("code")))
            if held is None:
                return
            fields["not_logged_since"] = held
        fields.pop("retried", None)
        getattr(self.log, effect.level)(effect.event, **fields)


class EffectRunner:
    def __init__(self, registry: RegistryClient, launcher: Launcher, follower: EventFollower,
                 logs: RunLogFollowers, gpus: GpuReader, beacon: StatusBeacon,
                 writer: LogWriter, clock: Clock) -> None:
        self.registry = registry
        self.launcher = launcher
        self.follower = follower
        self.logs = logs
        self.gpus = gpus
        self.beacon = beacon
        self.writer = writer
        self.clock = clock

    def run(self, effects: list[Any]) -> list[Any]:
        """Carry out ``effects`` in order, the step's registry calls as one batch where
        the first of them stands (so a log line the step wrote about its decision is
        out before the registry records it); the observations they produced, the
        calls' replies first."""
        replies: list[Any] = []
        found_all: list[Any] = []
        observed: set[str] = set()
        sent = False
        for effect in effects:
            if isinstance(effect, (fx.Call, fx.Query)):
                if not sent:
                    replies = registrycalls.send(self.registry, fx.calls(effects))
                    sent = True
                continue
            handler = self._handlers.get(type(effect))
            if handler is None:
                raise TypeError(f"not an effect: {type(effect).__name__}")
            if isinstance(effect, fx.ObserveRun) and effect.run_id in observed:
                continue  # one read per run and step is enough
            found = handler(self, effect)
            if found is not None:
                found_all.append(found)
                if isinstance(effect, fx.ObserveRun):
                    observed.add(effect.run_id)
        return replies + found_all

    # --- one handler per effect --------------------------------------------------
    def _start(self, e: fx.StartWorker) -> Any:
        try:
            self.launcher.start(e.run_id, e.config, e.gpus, e.attempt, e.resume_from,
                                cores=e.cores, python=e.python)
        except StartError as exc:
            return StartFailed(e.run_id, str(exc))
        self.logs.follow(e.run_id, from_end=e.attempt > 1)  # (earlier attempts' lines: sent)
        return None

    def _signal(self, e: fx.Signal) -> None:
        self.launcher.signal(e.run_id, e.pgid, e.sig)

    def _kill(self, e: fx.KillProcesses) -> None:
        self.launcher.kill(e.run_id, e.pids)

    def _record_kill(self, e: fx.RecordKill) -> None:
        why = self.launcher.record_kill(e.run_id, KillRecord(e.outcome, e.cause, e.message,
                                                             e.term_at, e.grace_s))
        if why:
            self.writer.log.warning("run.kill_unrecorded", run_id=e.run_id, reason=why,
                                    hint="a dispatcher restart would give it its whole "
                                         "grace again")

    def _observe(self, e: fx.ObserveRun) -> Any:
        self.logs.follow(e.run_id, from_end=True)   # (a run we did not start: adopted)
        if e.if_exited and not self.launcher.exited(e.run_id):
            return None
        return self.launcher.observe(e.run_id)

    def _read_gpus(self, e: fx.ReadGpus) -> Any:
        return self.gpus.start(self.launcher.processes_of(e.our_pgids))

    def _flush(self, e: fx.FlushLogs) -> None:
        self.logs.flush(e.run_id, self.clock.monotonic())

    def _forget(self, e: fx.ForgetRun) -> None:
        self.logs.forget(e.run_id)
        self.launcher.forget(e.run_id)

    def _follow(self, e: fx.FollowFrom) -> None:
        self.follower.reset(e.seq)

    def _probe(self, e: fx.ProbeBus) -> None:
        self.beacon.hurry()

    def _log(self, e: fx.Log) -> None:
        self.writer.write(e)

    _handlers: dict[type, Callable[["EffectRunner", Any], Union[Any, None]]] = {
        fx.StartWorker: _start, fx.Signal: _signal, fx.KillProcesses: _kill,
        fx.RecordKill: _record_kill, fx.ObserveRun: _observe, fx.ReadGpus: _read_gpus,
        fx.FlushLogs: _flush, fx.ForgetRun: _forget, fx.FollowFrom: _follow,
        fx.ProbeBus: _probe, fx.Log: _log,
    }
