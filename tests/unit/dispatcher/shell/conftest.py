"""Fakes for the dispatcher shell's unit tests: every collaborator of the effect runner
held in memory, as plain recorded values (no process, no socket, no monkeypatch).

    launcher       FakeLauncher: the launcher seam (shell/launcher.py), scripted
    registry       ScriptedRegistry: call_many answers (or an error) per batch, in order
    follower       FakeFollower: reset(seq) recorded
    beacon         FakeBeacon: hurry() counted
    run_logs       FakeRunLogs: the run log followers (follow, poll, flush, forget)
    gpu_reader     FakeGpuReader: start(our_pids) recorded, its answer scripted
    logger         RecordingLogger: a ServiceLogger stand-in keeping its lines
    clock          core.clock.FakeClock
    runner         an EffectRunner on all of the above

The fakes' public methods are those of the interfaces they stand in for (the launcher's
is checked: test_fakes.py); what a test scripts or reads is in plain attributes.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Container, Optional, Union

import pytest

from core.clock import FakeClock
from core.runconfig import RunConfig
from services.dispatcher.decide.inputs import FolderRead, GpusRead, KillRecord, ShimEnded
from services.dispatcher.decide.supervise import Sig
from services.dispatcher.shell.effectrunner import EffectRunner, LogWriter
from services.dispatcher.shell.launcher import LauncherGone, StartError

NO_FD = -1   # the fake has no file to poll: nothing in the unit tier polls it


class FakeLauncher:
    """The launcher seam in memory. Scripted: ``start_errors`` (run -> StartError text),
    ``reads`` (run -> the FolderRead observe returns; default: an empty one),
    ``exits`` (the runs whose end is recorded), ``kill_record_errors`` (run -> why
    record_kill fails), ``notices`` (what the next ended() returns), ``moves`` (what the
    next moved() returns), ``groups`` (pgid
    -> its processes), ``gone`` (check raises LauncherGone with it). Recorded: the rest."""

    def __init__(self) -> None:
        self.wake_fd: int = NO_FD
        self.start_errors: dict[str, str] = {}
        self.reads: dict[str, FolderRead] = {}
        self.exits: set[str] = set()
        self.kill_record_errors: dict[str, str] = {}
        self.notices: list[ShimEnded] = []
        self.moves: list[str] = []
        self.groups: dict[int, frozenset[int]] = {}
        self.gone = ""
        self.starts: list[tuple[str, RunConfig, tuple[str, ...]]] = []
        self.attempts: list[tuple[str, int, str]] = []   # (run, attempt, resume_from)
        self.signals: list[tuple[str, int, Sig]] = []
        self.kills: list[tuple[str, frozenset[int]]] = []
        self.kill_records: list[tuple[str, KillRecord]] = []
        self.cores: list[tuple[str, tuple[int, ...]]] = []
        self.observed: list[str] = []
        self.exit_checks: list[str] = []
        self.forgotten: list[str] = []
        self.checks = 0
        self.closed = False

    def start(self, run_id: str, config: RunConfig, gpus: tuple[str, ...],
              attempt: int = 1, resume_from: str = "", cores: tuple[int, ...] = (),
              python: str = "") -> None:
        if run_id in self.start_errors:
            raise StartError(self.start_errors[run_id])
        self.cores.append((run_id, cores))
        self.starts.append((run_id, config, gpus))
        self.attempts.append((run_id, attempt, resume_from))

    def signal(self, run_id: str, pgid: int, sig: Sig) -> None:
        self.signals.append((run_id, pgid, sig))

    def kill(self, run_id: str, pids: frozenset[int]) -> None:
        self.kills.append((run_id, pids))

    def observe(self, run_id: str) -> FolderRead:
        self.observed.append(run_id)
        return self.reads.get(run_id, FolderRead(run_id))

    def exited(self, run_id: str) -> bool:
        self.exit_checks.append(run_id)
        return run_id in self.exits

    def record_kill(self, run_id: str, record: KillRecord) -> str:
        self.kill_records.append((run_id, record))
        return self.kill_record_errors.get(run_id, "")

    def ended(self) -> list[ShimEnded]:
        out, self.notices = self.notices, []
        return out

    def moved(self) -> list[str]:
        out, self.moves = self.moves, []
        return out

    def processes_of(self, pgids: frozenset[int]) -> frozenset[int]:
        return frozenset(p for g in pgids for p in self.groups.get(g, ()))

    def forget(self, run_id: str) -> None:
        self.forgotten.append(run_id)

    def check(self) -> None:
        self.checks += 1
        if self.gone:
            raise LauncherGone(self.gone)

    def problem(self) -> str:
        return ""

    def close(self) -> None:
        self.closed = True


Script = Union[list[Any], BaseException, None]


class ScriptedRegistry:
    """A RegistryClient stand-in. Each call_many takes the next entry of ``script``: a
    list of results (a result or a typed error per request), an exception to raise, or
    None (every request applied: an empty map each); with the script spent, None.
    ``batches``: the requests of each call_many, in order; ``calls``: call()'s."""

    def __init__(self) -> None:
        self.script: deque[Script] = deque()
        self.batches: list[list[Any]] = []
        self.calls: list[Any] = []
        self.call_answer: Any = {}

    def call_many(self, requests: list[Any], *, timeout_s: Optional[float] = None,
                  retries: Optional[int] = None) -> list[Any]:
        self.batches.append(list(requests))
        answer = self.script.popleft() if self.script else None
        if isinstance(answer, BaseException):
            raise answer
        if answer is None:
            return [{} for _ in requests]
        assert len(answer) == len(requests), "the script answers another batch"
        return list(answer)

    def call(self, request: Any, *, timeout_s: Optional[float] = None,
             retries: Optional[int] = None, request_id: Optional[str] = None) -> Any:
        self.calls.append(request)
        if isinstance(self.call_answer, BaseException):
            raise self.call_answer
        return self.call_answer

    def close(self) -> None:
        pass


class FakeFollower:
    def __init__(self) -> None:
        self.resets: list[int] = []

    def reset(self, after_seq: int) -> None:
        self.resets.append(after_seq)


class FakeBeacon:
    def __init__(self) -> None:
        self.hurries = 0

    def hurry(self) -> None:
        self.hurries += 1


class FakeRunLogs:
    """effectrunner.RunLogFollowers' methods; ``calls``: (method, args...) in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def follow(self, run_id: str, from_end: bool) -> None:
        self.calls.append(("follow", run_id, from_end))

    def poll(self, now: float, skip: Container[str] = ()) -> None:
        self.calls.append(("poll", now, tuple(skip)))

    def flush(self, run_id: str, now: float) -> None:
        self.calls.append(("flush", run_id, now))

    def forget(self, run_id: str) -> None:
        self.calls.append(("forget", run_id))


class FakeGpuReader:
    """gpuread.GpuReader's start and result; ``answer``: what start returns."""

    def __init__(self) -> None:
        self.answer: Optional[GpusRead] = None
        self.starts: list[frozenset[int]] = []

    def start(self, our_pids: frozenset[int]) -> Optional[GpusRead]:
        self.starts.append(our_pids)
        return self.answer

    def result(self) -> Optional[GpusRead]:
        return None


class RecordingLogger:
    """runtime.logs.ServiceLogger's methods; ``lines``: (level, event, fields)."""

    def __init__(self) -> None:
        self.service = "dispatcher-test"
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def debug(self, event: str, **fields: Any) -> None:
        self.lines.append(("debug", event, fields))

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append(("info", event, fields))

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append(("warning", event, fields))

    def error(self, event: str, **fields: Any) -> None:
        self.lines.append(("error", event, fields))

    def exception(self, event: str, **fields: Any) -> None:
        self.lines.append(("exception", event, fields))

    def events(self, event: str) -> list[dict[str, Any]]:
        """The fields of each line of ``event``, in order."""
        return [fields for _, name, fields in self.lines if name == event]


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher()


@pytest.fixture
def registry() -> ScriptedRegistry:
    return ScriptedRegistry()


@pytest.fixture
def follower() -> FakeFollower:
    return FakeFollower()


@pytest.fixture
def beacon() -> FakeBeacon:
    return FakeBeacon()


@pytest.fixture
def run_logs() -> FakeRunLogs:
    return FakeRunLogs()


@pytest.fixture
def gpu_reader() -> FakeGpuReader:
    return FakeGpuReader()


@pytest.fixture
def logger() -> RecordingLogger:
    return RecordingLogger()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def writer(logger: RecordingLogger, clock: FakeClock) -> LogWriter:
    return LogWriter(logger, clock)


@pytest.fixture
def runner(registry: ScriptedRegistry, launcher: FakeLauncher, follower: FakeFollower,
           run_logs: FakeRunLogs, gpu_reader: FakeGpuReader, beacon: FakeBeacon,
           writer: LogWriter, clock: FakeClock) -> EffectRunner:
    return EffectRunner(registry, launcher, follower, run_logs, gpu_reader,
                        beacon, writer, clock)
