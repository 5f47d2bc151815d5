"""The registry's commands and queries: read state, decide (core.commands), append
events and update projections. No sockets here; ``service.py`` owns those.

Every mutating command runs in a savepoint of the batch's transaction and its reply
is stored by request id, so a retried request gets the first answer back instead of
being applied twice.
"""

from __future__ import annotations

import json
import os
import posixpath
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Callable

from core import commands as cmds
from core import flagcommands as flagcmds
from core.clock import Clock
from core.codeid import code_changes
from core.digest import legacy_digest
from core.errors import Conflict, NotFound, OrchestratorError, ValidationError
from core.events import DomainEvent, RunSubmitted
from core.fields import from_map
from core.ids import RunIds
from core import protocol as proto
from core.projection import State, changes, run_view
from core.protocol import COMMANDS, QUERIES, Method, parse
from core.runconfig import RunConfig
from core.runstate import RunState
from services.registry import store
from eventstore.reader import StoredEvent
from services.registry.eventlog import EventLog
from services.registry.envhandlers import EnvHandlers
from services.registry.experiments import ExperimentHandlers
from services.registry.pyenvs import EnvWorkers
from services.registry.replylog import ReplyLog
from services.registry.storage import failure

# A page of runs or events stops growing past this many bytes (estimated), with at
# least one item: a reply stays well under the codec's 16 MiB frame limit even when
# every config is near its 64 KiB limit. A page cut short says "more": true.
REPLY_BUDGET = 8 * 1024 * 1024
RUN_OVERHEAD = 1024  # a run view's bytes besides its config and message
ARTIFACT_OVERHEAD = 128  # an artifact's bytes besides its path and meta
MAX_ID_TRIES = 1000  # new run ids tried at one submit (see _submit)


@dataclass
class Handled:
    """What one request produced: its reply payload and the events it committed."""

    reply: dict[str, Any]
    events: list[StoredEvent] = field(default_factory=list)


class RequestHandler:
    """The registry's methods (core.protocol.Method) over events.db: ``handle`` applies
    one request inside the batch's transaction (RegistryService runs the batches)."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock, db_path: str = "",
                 make_run_id: Callable[[], str] | None = None,
                 known_worker: Callable[[str], bool] | None = None,
                 known_env: Callable[[str], bool] | None = None,
                 test_workers: bool = False) -> None:
        self.conn = conn
        self.clock = clock
        self.db_path = db_path
        self.log = EventLog(conn)
        self.proj = store.SqlProjection(conn)
        self.replies = ReplyLog(conn, self._view_of)
        self.legacy_until = store.legacy_digests_until(conn)
        self.make_run_id = make_run_id or self._run_ids()
        self.known_worker = known_worker
        self.known_env = known_env
        self.python_envs = EnvWorkers(conn, test_workers)  # the workers of each python_env
        self.started_at = clock.now()
        experiments = ExperimentHandlers(self)
        envs = EnvHandlers(self, self.python_envs)
        # The GPUs that exist, as the dispatcher's last claim listed them (its inventory,
        # stored in gpu_inventory): a claim naming another GPU is refused. None until a
        # claim has listed them.
        self.gpu_inventory: frozenset[str] | None = store.gpu_inventory(conn)
        self._offered: frozenset[str] | None = None  # the inventory of the claim at hand
        self.commands: dict[Method, Callable[..., tuple[Any, list[StoredEvent]]]] = {
            Method.SUBMIT: self._submit, Method.CLAIM_GPUS: self._claim,
            Method.RECORD_WAITING: self._waiting, Method.RECORD_STARTED: self._started,
            Method.RECORD_ADOPTED: self._adopted, Method.REQUEST_CANCEL: self._cancel,
            Method.RERUN: self._rerun,
            Method.FINISH: self._finish, Method.REGISTER_ARTIFACT: self._artifact,
            Method.ADD_ENV: envs.add, Method.REMOVE_ENV: envs.remove,
            Method.SUBMIT_EXPERIMENT: experiments.submit,
            Method.CANCEL_EXPERIMENT: experiments.cancel,
            Method.RERUN_EXPERIMENT: experiments.rerun,
            Method.FLAG_RUN: lambda a, rid, src: self._command(
                flagcmds.FlagRun, flagcmds.decide_flag, a, rid, src),
            Method.CLEAR_RUN_FLAG: lambda a, rid, src: self._command(
                flagcmds.ClearRunFlag, flagcmds.decide_clear_flag, a, rid, src),
        }
        self.queries: dict[Method, Callable[[Any], Any]] = {
            Method.GET_RUN: self._get_run, Method.LIST_RUNS: self._list_runs,
            Method.EVENTS_SINCE: self._events_since, Method.SNAPSHOT: self._snapshot,
            Method.GPU_SLOTS: self._gpu_slots, Method.LIST_ARTIFACTS: self._list_artifacts,
            Method.LIST_ENVS: lambda q: envs.list(q, self.log.head_seq),
            Method.GET_ENV: lambda q: envs.get(q, self.log.head_seq),
            Method.GET_EXPERIMENT: experiments.get, Method.LIST_EXPERIMENTS: experiments.list,
            Method.PING: self._ping,
        }
        assert set(self.commands) == set(COMMANDS) and set(self.queries) == set(QUERIES)

    # --- the batch ---------------------------------------------------------------
    def handle(self, method: str, args: dict[str, Any], request_id: str,
               source: str) -> Handled:
        """One request, inside the caller's open transaction."""
        if method in self.queries:
            query = Method(method)
            try:
                return Handled({"ok": True,
                                "result": self.queries[query](parse(query, args))})
            except OrchestratorError as exc:
                return Handled({"ok": False, "error": exc.to_dict()})
            except Exception as exc:
                if not self.conn.in_transaction:
                    raise  # SQLite rolled the whole batch back (I/O error, full disk)
                return Handled({"ok": False, "error": failure(method, exc, self.db_path)})
        if method not in self.commands:
            err = ValidationError("method", f"unknown method {method!r}")
            return Handled({"ok": False, "error": err.to_dict()})
        earlier = self.replies.find(request_id)
        if earlier is not None:
            if earlier[0] != method:
                err = ValidationError("id", f"request id {request_id} was already used for "
                                            f"{earlier[0]}")
                return Handled({"ok": False, "error": err.to_dict()})
            return Handled(earlier[1])  # a retry: the first answer, nothing applied again
        mark = self.log.mark()
        self.conn.execute("SAVEPOINT request")
        try:
            result, events = self.commands[method](args, request_id, source)
            done = Handled({"ok": True, "result": result}, events)
        except OrchestratorError as exc:
            self.conn.execute("ROLLBACK TO request")
            self.log.reset(mark)
            done = Handled({"ok": False, "error": exc.to_dict()})
        except Exception as exc:
            self.log.reset(mark)
            if not self.conn.in_transaction:
                raise  # SQLite rolled the whole batch back (I/O error, full disk)
            # A bug or an input no check caught: this request fails alone, not its batch,
            # and its reply is not stored, so a retry after a fix can succeed.
            self.conn.execute("ROLLBACK TO request")
            self.conn.execute("RELEASE request")
            return Handled({"ok": False, "error": failure(method, exc, self.db_path)})
        except BaseException:
            self.log.reset(mark)
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO request")
                self.conn.execute("RELEASE request")
            raise
        self.replies.record(request_id, method, done.reply, self.clock.now())
        self.conn.execute("RELEASE request")
        return done

    def _append(self, before: State | None, events: list[DomainEvent], request_id: str,
                source: str) -> tuple[State | None, list[StoredEvent]]:
        """Check every transition first, then append and project, atomically. The
        events are of one stream (a run's, an environment's, an experiment's), whose
        state is ``before``."""
        if not events:
            return before, []
        at = self.clock.now()
        state, planned = before, []
        for i, event in enumerate(events):
            state, extra = changes(state, event, self.log.head_seq + 1 + i, at)
            planned.append((state, extra))
        stored = self.log.append(events[0].stream, before.version if before else 0, events,
                                 caused_by=source, correlation_id=request_id, at=at)
        for after, extra in planned:
            self.proj.write(after, extra)
        return state, stored

    def _load(self, run_id: str) -> RunState | None:
        return store.load_run(self.conn, run_id)

    def _run_ids(self) -> RunIds:
        """Ids after the newest time-ordered one stored (ids from before they were
        time-ordered are random; one of those is avoided by _submit's retry)."""
        ceiling = RunIds()()
        newest = self.conn.execute("SELECT MAX(run_id) FROM runs WHERE run_id <= ?",
                                   (ceiling,)).fetchone()[0]
        return RunIds(after=newest)

    def _view_of(self, run_id: str) -> dict[str, Any] | None:
        state = self._load(run_id)
        return run_view(state) if state is not None else None

    # --- commands ----------------------------------------------------------------
    def check_config(self, cmd: cmds.SubmitRun) -> RunConfig:
        """A submitted config checked with the registry's catalogs (core.commands)."""
        return cmds.validate_config(cmd, self.known_worker, self.known_env,
                                    getattr(self.known_worker, "resumes", None),
                                    self.python_envs)

    def env_gone(self, state: RunState) -> str:
        """Why ``state`` cannot be rerun: its python_env is not registered any more
        ("": it can)."""
        name = state.config.get("python_env")
        if name and store.get_env(self.conn, name) is None:
            return (f"run {state.run_id} names the environment {name!r}, which is not "
                    "registered any more: add it again (trainer env add) to rerun it")
        return ""

    def _submit(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(cmds.SubmitRun, args, "submit")
        config = self.check_config(cmd)
        events = cmds.decide_submit(cmd, config, self.make_run_id())
        submitted = events[0]
        assert isinstance(submitted, RunSubmitted)
        digest, code = submitted.digest, submitted.code_digest
        existing = store.run_by_digest(self.conn, digest, code)
        if existing is None and self.legacy_until and \
                (legacy := legacy_digest(config.canonical_map())):
            digest = legacy  # a run from before the rule (and before code identities)
            existing = store.run_by_digest(self.conn, legacy, code)
        if existing is not None:
            return {"run": run_view(existing), "created": False}, []
        # The same config with other code is a new run: say which run had the config.
        earlier = store.latest_with_config(self.conn, submitted.digest) or \
            (store.latest_with_config(self.conn, digest) if digest != submitted.digest
             else None)
        for _ in range(MAX_ID_TRIES):
            try:
                state, stored = self._append(None, events, rid, src)
                break
            except Conflict:
                # The new id is taken: by a random id of an older registry, or by one
                # issued while the clock was ahead. The next ids are later ones.
                events = cmds.decide_submit(cmd, config, self.make_run_id())
        else:
            raise Conflict(f"no free run id after {MAX_ID_TRIES} tries")
        assert state is not None
        reply: dict[str, Any] = {"run": run_view(state), "created": True}
        if earlier is not None:
            reply["same_config"] = {"run_id": earlier.run_id,
                                    "changes": code_changes(earlier.code, submitted.code)}
        return reply, stored

    def _command(self, cls: type, decide: Callable[..., list[DomainEvent]], args: dict[str, Any],
                 rid: str, src: str, *extra: Any) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(cls, args, cls.__name__)
        before = self._load(cmd.run_id)
        extra_args = [x(cmd) for x in extra]
        state, stored = self._append(before, decide(before, cmd, *extra_args), rid, src)
        assert state is not None
        return {"run": run_view(state), "events": [e.seq for e in stored]}, stored

    def _claim(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        self._offered = None
        reply = self._command(cmds.ClaimGpus, cmds.decide_claim, args, rid, src,
                              lambda c: store.gpu_holders(self.conn, c.gpu_uuids),
                              self._inventory_of)
        offered = self._offered
        if offered is not None and offered != self.gpu_inventory:  # stored with the claim
            store.save_gpu_inventory(self.conn, offered, self.clock.now())
            self.gpu_inventory = offered
        self._interpreter(reply[0]["run"])
        return reply

    def _interpreter(self, view: dict[str, Any]) -> None:
        """The claim's run with the interpreter its worker runs with: ``python``, the
        path of its python_env's ("": the orchestrator's own), and ``python_error``
        where that environment is gone (the dispatcher fails the run spawn_error)."""
        name = view["config"].get("python_env") or ""
        env = store.get_env(self.conn, name) if name else None
        view["python"] = env.python if env is not None else ""
        view["python_error"] = "" if env is not None or not name else (
            f"python_env {name!r} is not registered any more (trainer env ls)")

    def _inventory_of(self, cmd: cmds.ClaimGpus) -> frozenset[str] | None:
        """The claim's own inventory (remembered once the claim is applied), else the
        last one stored."""
        if cmd.inventory is not None:
            self._offered = frozenset(cmd.inventory)
            return self._offered
        return self.gpu_inventory

    def _waiting(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.RecordWaiting, cmds.decide_waiting, args, rid, src)

    def _started(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.RecordStarted, cmds.decide_started, args, rid, src)

    def _adopted(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.RecordAdopted, cmds.decide_adopted, args, rid, src)

    def _cancel(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.RequestCancel, cmds.decide_cancel, args, rid, src)

    def _rerun(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        cmd = from_map(cmds.RerunRun, args, "RerunRun")
        state = self._load(cmd.run_id)
        gone = self.env_gone(state) if state is not None else ""
        if gone:
            raise ValidationError("python_env", gone)
        return self._command(cmds.RerunRun, cmds.decide_rerun, args, rid, src)

    def _finish(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.FinishRun, cmds.decide_finish, args, rid, src)

    def _artifact(self, args: dict[str, Any], rid: str, src: str) -> tuple[Any, list[StoredEvent]]:
        return self._command(cmds.RegisterArtifact, cmds.decide_artifact, args, rid, src,
                             lambda c: self.conn.execute(
                                 "SELECT 1 FROM artifacts WHERE run_id = ? AND path = ?",
                                 (c.run_id, posixpath.normpath(c.path))).fetchone() is not None)

    # --- queries -----------------------------------------------------------------
    def _get_run(self, q: proto.GetRun) -> Any:
        state = self._load(q.run_id)
        if state is None:
            raise NotFound(f"run {q.run_id} does not exist", run_id=q.run_id)
        return {"run": run_view(state), "head_seq": self.log.head_seq}

    def _list_runs(self, q: proto.ListRuns) -> Any:
        statuses = sorted(set(q.status))  # at most one per status: a bounded query
        runs, total = store.list_runs(self.conn, statuses, q.limit + 1, q.offset,
                                      q.newest_first, q.tag, q.before_seq)
        kept = _within_budget(runs[:q.limit], lambda r: RUN_OVERHEAD + len(r.config_json)
                              + len(r.message))
        return {"runs": [run_view(r) for r in kept], "total": total,
                "head_seq": self.log.head_seq, "more": len(kept) < len(runs)}

    def _snapshot(self, q: proto.Snapshot) -> Any:
        """A page of runs as of ``as_of_seq``; each run also carries its own last_seq,
        so a client applies only later events to it. With the experiments that set a
        limit or a priority (the dispatcher's)."""
        result = self._list_runs(proto.ListRuns(q.status, q.limit, q.offset, q.tag,
                                                q.before_seq, q.newest_first))
        return {"runs": result["runs"], "total": result["total"], "as_of_seq": result["head_seq"],
                "more": result["more"], "experiments": store.experiment_limits(self.conn)}

    def _events_since(self, q: proto.EventsSince) -> Any:
        rows = _within_budget(self.log.read(q.after_seq, q.limit),
                              lambda r: 256 + len(r.payload))
        return {"events": [r.envelope("registry").to_map() for r in rows],
                "head_seq": self.log.head_seq}

    def _gpu_slots(self, q: proto.GpuSlots) -> Any:
        rows = self.conn.execute("SELECT gpu_uuid, run_id, claimed_seq FROM gpu_slots "
                                 "ORDER BY gpu_uuid").fetchall()
        return {"slots": [{"gpu_uuid": u, "run_id": r, "claimed_seq": s} for u, r, s in rows]}

    def _list_artifacts(self, q: proto.ListArtifacts) -> Any:
        """A run's artifacts after ``after_seq`` in seq order, at most ``limit`` (and
        REPLY_BUDGET bytes), only those of ``kind`` if given; ``more`` when the page
        was cut short."""
        run_id, after, limit, kind = q.run_id, q.after_seq, q.limit, q.kind
        sql = ("SELECT path, kind, size, meta, seq, registered_at FROM artifacts "
               "WHERE run_id = ? AND seq > ?" + (" AND kind = ?" if kind else "") +
               " ORDER BY seq LIMIT ?")
        params = (run_id, after, *((kind,) if kind else ()), limit + 1)
        rows = self.conn.execute(sql, params).fetchall()
        kept = _within_budget(rows[:limit], lambda r: ARTIFACT_OVERHEAD + len(r[0]) + len(r[3]))
        keys = ("path", "kind", "size", "meta", "seq", "registered_at")
        return {"artifacts": [{**dict(zip(keys, r)), "meta": json.loads(r[3])} for r in kept],
                "more": len(kept) < len(rows)}

    def _ping(self, q: proto.Ping) -> Any:
        size = os.path.getsize(self.db_path) if self.db_path and os.path.exists(self.db_path) \
            else 0
        return {"service": "registry", "pid": os.getpid(), "head_seq": self.log.head_seq,
                "db_bytes": size, "started_at": self.started_at, "now": self.clock.now()}


def _within_budget(items: list[Any], size: Callable[[Any], int]) -> list[Any]:
    """The longest head of ``items`` whose estimated size fits REPLY_BUDGET (one item
    at least)."""
    total = 0
    for i, item in enumerate(items):
        total += size(item)
        if total > REPLY_BUDGET and i:
            return items[:i]
    return items

