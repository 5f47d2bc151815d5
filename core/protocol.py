"""The registry's request/reply protocol, typed: one enum of methods, one frozen
dataclass per request (the commands are in ``core.commands``, the queries here), and
``parse``, which both sides use to read a request's ``args`` map.

The wire format is docs/BUS.md's (section "Registry requests"): a request is
``{"method": str, "args": map}``; ``to_args`` gives the map of a request object and
``parse`` the object back, raising ValidationError naming the field. Callers name a
method as ``Method.GET_RUN``, never as a string literal, and build its arguments as
a dataclass (bus.registry.RegistryClient does both).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, Union

from core import commands as cmds
from core import envcommands as envcmds
from core import experimentcommands as xcmds
from core import flagcommands as flagcmds
from core.errors import ValidationError
from core.fields import from_map
from core.runstate import RunStatus

MAX_PAGE = 1000          # runs or artifacts in one reply
MAX_EVENTS_PAGE = 5000   # events in one events_since reply
MAX_OFFSET = 2**62


class Method(str, enum.Enum):
    # commands: each appends events (or changes nothing) and is idempotent by request id
    SUBMIT = "submit"
    CLAIM_GPUS = "claim_gpus"
    RECORD_WAITING = "record_waiting"
    RECORD_STARTED = "record_started"
    RECORD_ADOPTED = "record_adopted"
    REQUEST_CANCEL = "request_cancel"
    RERUN = "rerun"
    FINISH = "finish"
    REGISTER_ARTIFACT = "register_artifact"
    ADD_ENV = "add_env"
    REMOVE_ENV = "remove_env"
    SUBMIT_EXPERIMENT = "submit_experiment"
    CANCEL_EXPERIMENT = "cancel_experiment"
    RERUN_EXPERIMENT = "rerun_experiment"
    FLAG_RUN = "flag_run"
    CLEAR_RUN_FLAG = "clear_run_flag"
    # queries: read only
    GET_RUN = "get_run"
    LIST_RUNS = "list_runs"
    SNAPSHOT = "snapshot"
    EVENTS_SINCE = "events_since"
    GPU_SLOTS = "gpu_slots"
    LIST_ARTIFACTS = "list_artifacts"
    LIST_ENVS = "list_envs"
    GET_ENV = "get_env"
    GET_EXPERIMENT = "get_experiment"
    LIST_EXPERIMENTS = "list_experiments"
    PING = "ping"


def _bounded(name: str, value: int, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValidationError(name, f"must be an integer from {lo} to {hi}")


def _statuses(value: tuple[str, ...]) -> None:
    for s in value:
        if s not in RunStatus.__members__:
            raise ValidationError("status", f"unknown status {str(s)[:40]!r}")


@dataclass(frozen=True, slots=True)
class GetRun:
    run_id: str

    def __post_init__(self) -> None:
        if not self.run_id:
            raise ValidationError("run_id", "must be a non-empty string")


@dataclass(frozen=True, slots=True)
class ListRuns:
    """Runs newest first (or oldest first), at most ``limit``; ``status``: any of these
    statuses (none: all); ``tag``: only runs with it; ``before_seq``: submitted before."""

    status: tuple[str, ...] = ()
    limit: int = 100
    offset: int = 0
    tag: str = ""
    before_seq: int = 0
    newest_first: bool = True

    def __post_init__(self) -> None:
        _statuses(self.status)
        _bounded("limit", self.limit, 1, MAX_PAGE)
        _bounded("offset", self.offset, 0, MAX_OFFSET)
        _bounded("before_seq", self.before_seq, 0, MAX_OFFSET)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A page of runs, oldest first (or newest first), as of the reply's ``as_of_seq``,
    with the experiments that set a limit or a priority."""

    status: tuple[str, ...] = ()
    limit: int = 100
    offset: int = 0
    tag: str = ""
    before_seq: int = 0
    newest_first: bool = False

    def __post_init__(self) -> None:
        ListRuns(self.status, self.limit, self.offset, self.tag, self.before_seq)


@dataclass(frozen=True, slots=True)
class EventsSince:
    after_seq: int = 0
    limit: int = 1000

    def __post_init__(self) -> None:
        _bounded("after_seq", self.after_seq, 0, MAX_OFFSET)
        _bounded("limit", self.limit, 1, MAX_EVENTS_PAGE)


@dataclass(frozen=True, slots=True)
class GpuSlots:
    pass


@dataclass(frozen=True, slots=True)
class ListArtifacts:
    run_id: str
    after_seq: int = 0
    limit: int = MAX_PAGE
    kind: str = ""

    def __post_init__(self) -> None:
        GetRun(self.run_id)
        _bounded("after_seq", self.after_seq, 0, MAX_OFFSET)
        _bounded("limit", self.limit, 1, MAX_PAGE)


@dataclass(frozen=True, slots=True)
class ListEnvs:
    """The registered Python environments by name; ``include_removed``: those removed
    too (marked removed)."""

    include_removed: bool = False


@dataclass(frozen=True, slots=True)
class GetEnv:
    name: str

    def __post_init__(self) -> None:
        envcmds.check_env_name(self.name)


@dataclass(frozen=True, slots=True)
class GetExperiment:
    """One experiment, each cell with its run's status."""

    name: str

    def __post_init__(self) -> None:
        xcmds.check_experiment_name(self.name)


@dataclass(frozen=True, slots=True)
class ListExperiments:
    """The experiments newest first, with how many cells' runs are in each status."""

    limit: int = 100
    offset: int = 0

    def __post_init__(self) -> None:
        _bounded("limit", self.limit, 1, MAX_PAGE)
        _bounded("offset", self.offset, 0, MAX_OFFSET)


@dataclass(frozen=True, slots=True)
class Ping:
    pass


Query = Union[GetRun, ListRuns, Snapshot, EventsSince, GpuSlots, ListArtifacts, ListEnvs,
              GetEnv, GetExperiment, ListExperiments, Ping]

COMMANDS: dict[Method, type] = {
    Method.SUBMIT: cmds.SubmitRun, Method.CLAIM_GPUS: cmds.ClaimGpus,
    Method.RECORD_WAITING: cmds.RecordWaiting, Method.RECORD_STARTED: cmds.RecordStarted,
    Method.RECORD_ADOPTED: cmds.RecordAdopted, Method.REQUEST_CANCEL: cmds.RequestCancel,
    Method.RERUN: cmds.RerunRun,
    Method.FINISH: cmds.FinishRun, Method.REGISTER_ARTIFACT: cmds.RegisterArtifact,
    Method.ADD_ENV: envcmds.AddEnv, Method.REMOVE_ENV: envcmds.RemoveEnv,
    Method.SUBMIT_EXPERIMENT: xcmds.SubmitExperiment,
    Method.CANCEL_EXPERIMENT: xcmds.CancelExperiment,
    Method.RERUN_EXPERIMENT: xcmds.RerunExperiment,
    Method.FLAG_RUN: flagcmds.FlagRun, Method.CLEAR_RUN_FLAG: flagcmds.ClearRunFlag,
}
QUERIES: dict[Method, type] = {
    Method.GET_RUN: GetRun, Method.LIST_RUNS: ListRuns, Method.SNAPSHOT: Snapshot,
    Method.EVENTS_SINCE: EventsSince, Method.GPU_SLOTS: GpuSlots,
    Method.LIST_ARTIFACTS: ListArtifacts, Method.LIST_ENVS: ListEnvs, Method.GET_ENV: GetEnv,
    Method.GET_EXPERIMENT: GetExperiment, Method.LIST_EXPERIMENTS: ListExperiments,
    Method.PING: Ping,
}
METHODS: dict[Method, type] = {**COMMANDS, **QUERIES}
METHOD_OF: dict[type, Method] = {cls: m for m, cls in METHODS.items()}
assert set(METHODS) == set(Method), "every method has a request type"


def method_named(name: Any) -> Method:
    """The Method of a request's ``method`` string; ValidationError if there is none."""
    try:
        return Method(name)
    except ValueError:
        raise ValidationError("method", f"unknown method {str(name)[:60]!r}") from None


def parse(method: Method, args: Any) -> Any:
    """The request object of ``method`` from its ``args`` map (absent/nil: no args).
    A ``status`` given as one name (list_runs, snapshot) counts as a list of one."""
    args = {} if args is None else args
    if method in QUERIES and isinstance(args, dict):
        args = {k: v for k, v in args.items() if v is not None}  # nil counts as absent
        if method in (Method.LIST_RUNS, Method.SNAPSHOT) and "status" in args:
            status = args["status"]
            if isinstance(status, str):
                args["status"] = [status]
            elif not isinstance(status, list) or not all(isinstance(s, str) for s in status):
                raise ValidationError("status", "must be a status name or a list of them")
    return from_map(METHODS[method], args, method.value)


def to_args(request: Any) -> dict[str, Any]:
    """The ``args`` map of a request object (tuples as lists, as on the wire)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(request):
        value = getattr(request, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def method_of(request: Any) -> Method:
    return METHOD_OF[type(request)]

