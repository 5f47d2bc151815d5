"""Helpers for the decision core's tests: the decision core driven with plain values: a Driver holds a DispatcherState, feeds
observations to ``step`` and answers its registry calls as a scripted registry would.
No process, no socket, no file, no sleep."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from core import events as ev
from core.commands import ClaimGpus
from services.dispatcher.decide import effects as fx
from services.dispatcher.decide import inputs as obs
from services.dispatcher.decide.gpus import Gpu, GpuSource, Inventory
from services.dispatcher.decide.phases import Phase
from services.dispatcher.decide.state import DispatcherConfig, DispatcherState
from services.dispatcher.decide.step import step

GIB = 1024**3
WALL0 = 1_000_000.0


def gpus(count: int, free: int = 16 * GIB) -> Inventory:
    if not count:
        return Inventory()
    return Inventory(tuple(Gpu(i, f"GPU-{i}", "Fake", 16 * GIB, free) for i in range(count)),
                     GpuSource.FAKE)


class Driver:
    def __init__(self, cpu_slots: int = 4, gpu_count: int = 0, max_runs: int = 0,
                 cores: tuple[int, ...] = ()) -> None:
        config = DispatcherConfig(cpu_slots, max_runs, "host-1", cores=cores)
        self.state = DispatcherState.initial(config, gpus(gpu_count), 0.0, WALL0)
        self.seq = 0
        self.log: list[Any] = []   # every effect, in order

    # --- feeding ------------------------------------------------------------------
    def feed(self, observation: Any) -> list[Any]:
        self.state, effects = step(self.state, observation)
        self.log.extend(effects)
        runs = self.state.runs.values()
        assert self.state.starting == {r.run_id for r in runs if r.phase is Phase.STARTING
                                       and not r.backlogged}, "the STARTING index"
        assert self.state.backlogged == {r.run_id for r in runs if r.backlogged}, "backlogged"
        assert self.state.past_queue == {r.run_id for r in runs
                                         if r.phase is not Phase.QUEUED}, "past_queue"
        return effects

    @property
    def now(self) -> float:
        return self.state.now

    def tick(self, dt: float = 0.0) -> list[Any]:
        now = self.state.now + dt
        return self.feed(obs.Tick(now, WALL0 + now))

    def boot(self, *runs: obs.RunView) -> list[Any]:
        """Start-up: the snapshot read (one page) and the calls that follow."""
        effects = self.feed(obs.RegistryBack())
        (query,) = fx.calls(effects)
        assert isinstance(query.query, fx.Snapshot)
        effects = self.feed(obs.Replied(query.tag, obs.ReplyKind.APPLIED, runs=runs[::-1],
                                        head_seq=self.seq))
        return effects + self.tick(0.0)  # the first sweep (reads every run's folder)

    def event(self, event: ev.Event, ts: Optional[float] = None) -> list[Any]:
        self.seq += 1
        return self.feed(obs.CommittedEvent(self.seq, WALL0 + self.now if ts is None else ts,
                                            event))

    def submit(self, run_id: str, priority: int = 0, **config: Any) -> list[Any]:
        return self.event(ev.RunSubmitted(run_id, "d", config, priority, "me"))

    def answer(self, effects: Iterable[Any], kind: obs.ReplyKind = obs.ReplyKind.APPLIED,
               only: Optional[type] = None, **fields: Any) -> list[Any]:
        """Answer the registry calls among ``effects`` (those of type ``only``), in order;
        the effects of the answers."""
        out: list[Any] = []
        for call in fx.calls(list(effects)):
            command = getattr(call, "command", None)
            if only is not None and not isinstance(command, only):
                continue
            extra = dict(fields)
            if isinstance(command, ClaimGpus) and kind is obs.ReplyKind.APPLIED:
                self.seq += 1
                extra.setdefault("run", obs.RunView(command.run_id, "DISPATCHING", {},
                                                    self.seq, gpus=command.gpu_uuids))
            out += self.feed(obs.Replied(call.tag, kind, **extra))
        return out

    def settle(self, effects: Iterable[Any]) -> list[Any]:
        """Answer every call (applied) until none is left; every effect on the way."""
        pending, seen = list(effects), []
        while fx.calls(pending):
            pending = self.answer(pending)
            seen += pending
        return seen

    # --- reading --------------------------------------------------------------------
    def phase(self, run_id: str) -> Optional[Phase]:
        run = self.state.runs.get(run_id)
        return run.phase if run is not None else None

    def start(self, run_id: str, pid: int = 100, age_s: float = 0.0, **config: Any) -> None:
        """A run submitted, claimed and seen running with RunStarted stored."""
        self.settle(self.submit(run_id, **config))
        assert self.phase(run_id) is Phase.STARTING
        self.settle(self.feed(folder(run_id, worker=worker(pid, WALL0 + self.now - age_s))))
        assert self.phase(run_id) is Phase.RUNNING


def worker(pid: int = 100, started_at: Optional[float] = None) -> obs.WorkerRecord:
    return obs.WorkerRecord(pid, pid, 12345.0, started_at)


def folder(run_id: str, **fields: Any) -> obs.FolderRead:
    return obs.FolderRead(run_id, **fields)


def commands(effects: Iterable[Any], kind: type) -> list[Any]:
    return [e.command for e in effects if isinstance(e, fx.Call) and isinstance(e.command, kind)]


def of(effects: Iterable[Any], kind: type) -> list[Any]:
    return [e for e in effects if isinstance(e, kind)]


def logged(effects: Iterable[Any], event: str) -> list[fx.Log]:
    return [e for e in effects if isinstance(e, fx.Log) and e.event == event]
