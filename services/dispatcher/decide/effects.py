"""Effects: what ``step`` asks the shell to do, as plain values.

Registry calls carry the typed commands of core.commands and a tag; the shell sends
the Call and Query effects of one step as one pipelined batch, in order, and feeds
each answer back as inputs.Replied(tag, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Union

from core import commands as cmd
from core.protocol import GetExperiment, GetRun, Snapshot
from core.runconfig import RunConfig
from services.dispatcher.decide.supervise import Sig

Command = Union[cmd.ClaimGpus, cmd.RecordWaiting, cmd.RecordStarted, cmd.RecordAdopted,
                cmd.FinishRun, cmd.RegisterArtifact]
NON_TERMINAL = ("PENDING", "DISPATCHING", "RUNNING")
SNAPSHOT_PAGE = 500


def snapshot_page(before_seq: int = 0) -> Snapshot:
    """A page of the non-terminal runs, newest submission first, before ``before_seq``
    (0: no bound). Keyed by seq, a run ending between pages cannot shift a later one.
    Each page also lists the experiments that set a limit or a priority."""
    return Snapshot(status=NON_TERMINAL, limit=SNAPSHOT_PAGE, before_seq=before_seq,
                    newest_first=True)


Question = Union[Snapshot, GetRun, GetExperiment]


@dataclass(frozen=True)
class Call:
    tag: int
    command: Command


@dataclass(frozen=True)
class Query:
    tag: int
    query: Question


@dataclass(frozen=True)
class StartWorker:
    """Prepare the run folder and ask the fork server for its shim; a failure comes
    back as inputs.StartFailed."""

    run_id: str
    config: RunConfig
    gpus: tuple[str, ...]
    attempt: int = 1
    resume_from: str = ""          # a checkpoint in the run folder ("": none)
    cores: tuple[int, ...] = ()    # the CPUs to pin its worker to (() = not pinned)
    python: str = ""               # the interpreter to run ("": the dispatcher's own)


@dataclass(frozen=True)
class Signal:
    pgid: int
    sig: Sig
    run_id: str = ""


@dataclass(frozen=True)
class KillProcesses:
    """SIGKILL these pids (processes of a run whose shim is gone)."""

    run_id: str
    pids: frozenset[int]


@dataclass(frozen=True)
class RecordKill:
    """Write the kill just begun to the run folder (kill.json): a restarted dispatcher
    keeps its grace. term_at is wall clock."""

    run_id: str
    outcome: str
    cause: str
    message: str
    term_at: float
    grace_s: float


@dataclass(frozen=True)
class ObserveRun:
    """Read the run's folder and processes: comes back as inputs.FolderRead.
    ``if_exited``: only if its exit record is there (nothing comes back otherwise):
    the check of a run whose shim is ours and has not ended (an exit notice missed)."""

    run_id: str
    if_exited: bool = False


@dataclass(frozen=True)
class ReadGpus:
    """Read the GPUs again (in the background), our runs' process groups excluded
    from the foreign processes: comes back as inputs.GpusRead."""

    our_pgids: frozenset[int] = frozenset()


@dataclass(frozen=True)
class FlushLogs:
    """The run's process group is empty: publish its last log bytes now."""

    run_id: str


@dataclass(frozen=True)
class ForgetRun:
    """The run is done with: the shell drops what it keeps for it (log follower,
    the fork server's note of its shim)."""

    run_id: str


@dataclass(frozen=True)
class FollowFrom:
    """Follow the committed events from after ``seq`` (the snapshot's head)."""

    seq: int


@dataclass(frozen=True)
class ProbeBus:
    """Send our status now: a fresh proof that the bus works (or not)."""


@dataclass(frozen=True)
class Log:
    level: str            # info | warning | error
    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Optional[Any] = None) -> Any:
        return self.fields.get(name, default)


Effect = Union[Call, Query, StartWorker, Signal, KillProcesses, RecordKill, ObserveRun,
               ReadGpus, FlushLogs, ForgetRun, FollowFrom, ProbeBus, Log]


def calls(effects: list[Any]) -> list[Union[Call, Query]]:
    """The registry calls of one step, in order: one pipelined batch for the shell."""
    return [e for e in effects if isinstance(e, (Call, Query))]
