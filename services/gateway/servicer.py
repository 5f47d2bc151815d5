"""TrainerService: each RPC checks its request, asks the registry (or the run files,
or the hub) and translates the answer. No business logic: the registry decides."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
from collections import Counter
from typing import Any, AsyncIterator, TypeVar

import grpc

from core.commands import RequestCancel, RerunRun, SubmitRun
from core.protocol import GetEnv, GetRun, ListArtifacts, ListRuns
from runtime.logs import ServiceLogger
from services.gateway import pyenvs, tbpoints
from services.gateway.rpcguard import streaming, unary
from services.gateway.experimentcalls import ExperimentCalls
from services.gateway.resultcalls import ResultCalls
from services.gateway.buslisten import Telemetry
from services.gateway.calls import RegistryAccess
from services.gateway.submitcode import SubmitIdentity
from services.gateway.config import GatewayConfig
from services.gateway.configcheck import config_of
from services.gateway.errors import CallError, invalid, restarting
from services.gateway.health import Health
from services.gateway.runfiles import LogFiles, check_run_id
from services.gateway.mapping import Mapper, struct, timestamp
from services.gateway.watch import WatchHub
from services.gateway.watchsession import WatchSession
from trainer_api.v1 import trainer_pb2 as pb

T = TypeVar("T")
DEFAULT_PAGE, MAX_PAGE = 50, 1000
# A ListRuns or ListArtifacts answer stops growing past this many bytes (the next
# page token says where to go on), so that it fits the 4 MiB receive limit that gRPC
# clients (grpcurl included) have by default.
REPLY_BYTES = 3 * 1024 * 1024
RUNS_TOKEN, ARTIFACTS_TOKEN = "v1", "a1"   # ListRuns: before seq; ListArtifacts: after seq
DEFAULT_POINTS, MAX_POINTS = 1000, 10_000
MAX_TEXT = 1000


class Servicer:
    def __init__(self, cfg: GatewayConfig, registry: RegistryAccess, hub: WatchHub,
                 telemetry: Telemetry, mapper: Mapper, logs: LogFiles, health: Health,
                 log: ServiceLogger, identity: SubmitIdentity) -> None:
        self.cfg = cfg
        self.registry = registry
        self.hub = hub
        self.telemetry = telemetry
        self.mapper = mapper
        self.logs = logs
        self.health = health
        self.log = log
        self.identity = identity
        self.experiments = ExperimentCalls(registry, identity, mapper)
        self.results = ResultCalls(registry, logs, mapper)
        self.calls: Counter[str] = Counter()
        self.streams = 0
        self.stopping = False
        self.open_streams: dict[asyncio.Task[Any], grpc.aio.ServicerContext] = {}

    async def end_streams(self) -> None:
        """At shutdown (SIGTERM): end every open stream with UNAVAILABLE (retry; a
        watch resumes by seq), before grpc's server.stop would cancel them with no
        status of ours (and a CancelledError traceback in the log)."""
        self.stopping = True
        for task, context in list(self.open_streams.items()):
            err = restarting()
            try:
                await context.abort(err.code, err.message, err.metadata())
            except grpc.aio.AbortError:
                pass
            except Exception as exc:  # noqa: BLE001 - the call ended meanwhile
                self.log.debug("stream.end_failed", error=repr(exc))
            task.cancel()
        self.open_streams.clear()

    def record(self, view: dict[str, Any]) -> pb.RunRecord:
        return self.mapper.run_record(view, self.telemetry.last_heartbeat(view["run_id"]))

    @unary
    async def SubmitRun(self, request: pb.SubmitRunRequest,
                        context: grpc.aio.ServicerContext) -> pb.SubmitRunResponse:
        config = config_of(request)
        by = _text(request.submitted_by or "grpc", "submitted_by", 200)
        rid = request.request_id or None
        if rid is not None and (len(rid) > 64 or not rid.isprintable()):
            raise invalid("request_id", "must be at most 64 printable characters")
        code = await self.identity.of(config, await self._python_env(config, context))
        submit = SubmitRun(config, by, code.code if code is not None else {})
        result = await self.registry.call(submit, context,
                                          request_id=f"grpc-{rid}" if rid else None)
        if result["created"] and code is not None:
            self.identity.save_soon(result["run"]["run_id"], code)
        same = result.get("same_config") or {}
        return pb.SubmitRunResponse(run=self.record(result["run"]), created=result["created"],
                                    same_config_run_id=str(same.get("run_id") or ""),
                                    code_changes=[str(c) for c in same.get("changes") or ()])

    async def _python_env(self, config: dict[str, Any],
                          context: grpc.aio.ServicerContext) -> dict[str, Any] | None:
        """The registered environment the config names (its view), None for none, or
        for one not registered (the submit is refused for it, naming python_env)."""
        name = config.get("python_env")
        if not isinstance(name, str) or not name:
            return None
        try:
            env = (await self.registry.call(GetEnv(name), context))["env"]
        except CallError as exc:  # not registered, or not a name: the submit says so
            if exc.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return None if env.get("removed") else env

    @unary
    async def GetRun(self, request: pb.GetRunRequest,
                     context: grpc.aio.ServicerContext) -> pb.GetRunResponse:
        run_id = check_run_id(request.run_id)
        got = await self.registry.call(GetRun(run_id), context)
        return pb.GetRunResponse(run=self.record(got["run"]), head_seq=got["head_seq"])

    @unary
    async def ListRuns(self, request: pb.ListRunsRequest,
                       context: grpc.aio.ServicerContext) -> pb.ListRunsResponse:
        statuses = []
        for number in request.statuses:
            status = self.mapper.status.to_core(number)
            if status is None:
                raise invalid("statuses", f"unknown run status {number}")
            statuses.append(status.value)
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise invalid("page_size", f"must be from 1 to {MAX_PAGE}")
        query = ListRuns(tuple(statuses), size, tag=_text(request.tag, "tag", 200),
                         before_seq=_decode_token(request.page_token), newest_first=True)
        got = await self.registry.call(query, context)
        runs = got["runs"]
        out = pb.ListRunsResponse(total_size=got["total"], head_seq=got["head_seq"])
        size = 0
        for i, view in enumerate(runs):
            record = self.record(view)
            size += record.ByteSize() + 6  # with its tag and length
            if i and size > REPLY_BYTES:
                out.next_page_token = _encode_token(int(runs[i - 1]["submitted_seq"]))
                return out
            out.runs.append(record)
        if got["more"] and runs:  # more after these (the page may be cut short by size)
            out.next_page_token = _encode_token(int(runs[-1]["submitted_seq"]))
        return out

    @streaming
    async def WatchRuns(self, request: pb.WatchRunsRequest,
                        context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        session = WatchSession(self.hub, self.registry, self.mapper, self.telemetry,
                               self.log, (self.cfg.watch_buffer, self.cfg.watch_buffer_bytes),
                               self.cfg.watch_keepalive,
                               request, context)
        async for msg in session.stream():
            yield msg

    @unary
    async def CancelRun(self, request: pb.CancelRunRequest,
                        context: grpc.aio.ServicerContext) -> pb.CancelRunResponse:
        cancel = RequestCancel(check_run_id(request.run_id),
                               _text(request.requested_by or "grpc", "requested_by", 200),
                               _text(request.reason, "reason", MAX_TEXT))
        got = await self.registry.call(cancel, context)
        return pb.CancelRunResponse(run=self.record(got["run"]))

    @unary
    async def RerunRun(self, request: pb.RerunRunRequest,
                       context: grpc.aio.ServicerContext) -> pb.RerunRunResponse:
        rerun = RerunRun(check_run_id(request.run_id),
                         _text(request.requested_by or "grpc", "requested_by", 200),
                         _text(request.reason, "reason", MAX_TEXT),
                         from_scratch=request.from_scratch, force=request.force)
        try:
            got = await self.registry.call(rerun, context)
        except CallError as exc:
            raise _rerun_refusal(rerun.run_id, exc) from None
        return pb.RerunRunResponse(run=self.record(got["run"]))

    @unary
    async def AddEnvironment(self, request: pb.AddEnvironmentRequest,
                             context: grpc.aio.ServicerContext) -> pb.AddEnvironmentResponse:
        return await pyenvs.add(self.registry, request, context)

    @unary
    async def ListEnvironments(self, request: pb.ListEnvironmentsRequest,
                               context: grpc.aio.ServicerContext
                               ) -> pb.ListEnvironmentsResponse:
        return await pyenvs.listing(self.registry, request, context)

    @unary
    async def RemoveEnvironment(self, request: pb.RemoveEnvironmentRequest,
                                context: grpc.aio.ServicerContext
                                ) -> pb.RemoveEnvironmentResponse:
        return await pyenvs.remove(self.registry, request, context)

    @streaming
    async def StreamLogs(self, request: pb.StreamLogsRequest,
                         context: grpc.aio.ServicerContext) -> AsyncIterator[pb.LogChunk]:
        async for chunk in self.logs.stream(request, context):
            yield chunk

    @unary
    async def GetHealth(self, request: pb.GetHealthRequest,
                        context: grpc.aio.ServicerContext) -> pb.GetHealthResponse:
        return await self.health.report(context)

    @unary
    async def ListArtifacts(self, request: pb.ListArtifactsRequest,
                            context: grpc.aio.ServicerContext) -> pb.ListArtifactsResponse:
        run_id = check_run_id(request.run_id)
        size = request.page_size or MAX_PAGE
        if not 0 < size <= MAX_PAGE:
            raise invalid("page_size", f"must be from 1 to {MAX_PAGE}")
        query = ListArtifacts(run_id, _decode_token(request.page_token, ARTIFACTS_TOKEN),
                              size, _text(request.kind, "kind", 200))
        await self.registry.call(GetRun(run_id), context)
        got = await self.registry.call(query, context)
        out = pb.ListArtifactsResponse()
        arts, size = got["artifacts"], 0
        for a in arts:
            art = pb.Artifact(path=str(a["path"]), kind=str(a["kind"]),
                              size=int(a["size"] or 0), seq=int(a["seq"] or 0))
            art.meta.CopyFrom(struct(_json_object(a.get("meta"))))
            if isinstance(a.get("registered_at"), (int, float)):
                art.registered_at.CopyFrom(timestamp(a["registered_at"]))
            size += art.ByteSize() + 6  # with its tag and length
            if out.artifacts and size > REPLY_BYTES:
                out.next_page_token = _encode_token(out.artifacts[-1].seq, ARTIFACTS_TOKEN)
                return out
            out.artifacts.append(art)
        if got["more"] and arts:
            out.next_page_token = _encode_token(out.artifacts[-1].seq, ARTIFACTS_TOKEN)
        return out

    @unary
    async def GetMetrics(self, request: pb.GetMetricsRequest,
                         context: grpc.aio.ServicerContext) -> pb.GetMetricsResponse:
        run_id = check_run_id(request.run_id)
        if request.offset < 0:
            raise invalid("offset", "must not be negative")
        limit = request.limit or DEFAULT_POINTS
        if not 0 < limit <= MAX_POINTS:
            raise invalid("limit", f"must be from 1 to {MAX_POINTS}")
        cursor = tbpoints.decode_cursor(request.tensorboard_cursor)
        await self.registry.call(GetRun(run_id), context)
        keys = frozenset(request.keys)
        out = await self.registry.run(self.logs.metrics, run_id, request.offset, limit, keys)
        if request.tensorboard:   # the worker's own TensorBoard scalars, after the jsonl's
            got, cursor = await self.registry.run(
                tbpoints.points, os.path.join(self.logs.runs_dir, run_id), cursor,
                limit - len(out.points), keys, self.log)
            out.points.extend(got)
            out.next_tensorboard_cursor = tbpoints.encode_cursor(cursor)
        return out

    @unary
    async def CreateExperiment(self, request: pb.CreateExperimentRequest,
                               context: grpc.aio.ServicerContext
                               ) -> pb.CreateExperimentResponse:
        return await self.experiments.create(request, context)

    @unary
    async def GetExperiment(self, request: pb.GetExperimentRequest,
                            context: grpc.aio.ServicerContext) -> pb.GetExperimentResponse:
        return await self.experiments.get(request, context)

    @unary
    async def ListExperiments(self, request: pb.ListExperimentsRequest,
                              context: grpc.aio.ServicerContext
                              ) -> pb.ListExperimentsResponse:
        return await self.experiments.listing(request, context)

    @unary
    async def CancelExperiment(self, request: pb.CancelExperimentRequest,
                               context: grpc.aio.ServicerContext
                               ) -> pb.CancelExperimentResponse:
        return await self.experiments.cancel(request, context)

    @unary
    async def RerunExperiment(self, request: pb.RerunExperimentRequest,
                              context: grpc.aio.ServicerContext
                              ) -> pb.RerunExperimentResponse:
        return await self.experiments.rerun(request, context)

    @unary
    async def GetExperimentResults(self, request: pb.GetExperimentResultsRequest,
                                   context: grpc.aio.ServicerContext
                                   ) -> pb.GetExperimentResultsResponse:
        return await self.results.results(request, context)


# --- request checks ------------------------------------------------------------------

def _rerun_refusal(run_id: str, err: CallError) -> CallError:
    """A rerun the registry refused for the run's status, said as what to do instead;
    any other failure as it came."""
    status = str(err.details.get("status") or "")
    if err.trainer_code != "failed_precondition" or not status:
        return err
    if status == "COMPLETED":
        message = f"run {run_id} is COMPLETED: a completed run is rerun only with force"
    elif status in ("PENDING", "DISPATCHING", "RUNNING"):
        message = (f"run {run_id} is {status}: only an ended run can be rerun (cancel it "
                   "first)")
    else:
        return err
    return CallError(err.code, message, err.trainer_code, details=err.details)


def _text(value: str, field: str, limit: int) -> str:
    if len(value) > limit:
        raise invalid(field, f"must be at most {limit} characters")
    return value


def _encode_token(seq: int, kind: str = RUNS_TOKEN) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode()).decode().rstrip("=")


def _decode_token(token: str, kind: str = RUNS_TOKEN) -> int:
    """The seq in a page token of ``kind`` (0: no token); INVALID_ARGUMENT for
    anything else, a token of another RPC included."""
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        version, _, seq = text.partition(":")
        if version != kind or not seq.isdigit() or int(seq) <= 0:
            raise ValueError(text)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("page_token", "is not a token this server issued") from None


def _json_object(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    try:
        loaded = json.loads(value) if isinstance(value, str) else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
