"""The experiment RPCs (docs/API.md, "Experiments"): CreateExperiment, GetExperiment,
ListExperiments, CancelExperiment, RerunExperiment. The spec is checked here first
(core.sweepspec: INVALID_ARGUMENT naming the field), the code identity of each worker
its cells run is read once per worker (as SubmitRun reads one), and the registry
decides the rest in one request (core.experimentcommands)."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import grpc

from core import experimentcommands as xcmds
from core.digest import canonical_json
from core.errors import ValidationError
from core.protocol import GetEnv, GetExperiment, ListExperiments
from core.sweepspec import SweepSpec, cell_config, parse_spec, point_label
from services.gateway.calls import RegistryAccess
from services.gateway.configcheck import map_of
from services.gateway.errors import CallError, invalid
from services.gateway.mapping import Mapper, timestamp
from services.gateway.submitcode import SubmitIdentity
from trainer_api.v1 import trainer_pb2 as pb

MAX_SPEC_BYTES = 1024 * 1024      # a spec as canonical JSON
SUBMIT_TIMEOUT_S = 60.0           # one request creates up to core.sweepspec.MAX_CELLS runs
DEFAULT_PAGE, MAX_PAGE = 50, 1000
MAX_TEXT = 1000


def spec_of(request: pb.CreateExperimentRequest) -> dict[str, Any]:
    return map_of(request, "spec", MAX_SPEC_BYTES)


def parsed(spec: dict[str, Any]) -> SweepSpec:
    try:
        return parse_spec(spec)
    except ValidationError as exc:
        raise invalid(str(exc.details["field"]), str(exc.details["reason"])) from None


def workers_of(spec: SweepSpec) -> list[tuple[str, str]]:
    """The distinct (worker, python_env) its cells run (an axis may vary either)."""
    seen: dict[tuple[str, str], None] = {}
    for point in spec.points():
        config = cell_config(spec.template, point, spec.seeds[0])
        worker, env = config.get("worker", "cartpole"), config.get("python_env") or ""
        if isinstance(worker, str) and isinstance(env, str):
            seen[(worker, env)] = None
    return list(seen)


def text(value: str, field: str, limit: int = 200) -> str:
    if len(value) > limit:
        raise invalid(field, f"must be at most {limit} characters")
    return value


def name_of(value: str) -> str:
    try:
        return xcmds.check_experiment_name(value)
    except ValidationError as exc:
        raise invalid("name", str(exc.details["reason"])) from None


class ExperimentCalls:
    def __init__(self, registry: RegistryAccess, identity: SubmitIdentity,
                 mapper: Mapper) -> None:
        self.registry = registry
        self.identity = identity
        self.mapper = mapper

    async def create(self, request: pb.CreateExperimentRequest,
                     context: grpc.aio.ServicerContext) -> pb.CreateExperimentResponse:
        spec = spec_of(request)
        sweep = parsed(spec)
        by = text(request.submitted_by or "grpc", "submitted_by")
        codes, found = [], {}
        for worker, env_name in workers_of(sweep):
            env = await self._env(env_name, context) if env_name else None
            code = await self.identity.of({"worker": worker}, env)
            if code is not None:
                found[(worker, env_name)] = code
                codes.append({"worker": worker, "python_env": env_name, "code": code.code})
        got = await self.registry.call(xcmds.SubmitExperiment(spec, by, codes), context,
                                       timeout_s=SUBMIT_TIMEOUT_S)
        view = got["experiment"]
        if got["created"] and any(code.diff for code in found.values()):
            self._save_diffs(view, found)
        return pb.CreateExperimentResponse(experiment=self.experiment(view),
                                           created_runs=int(got["created"]))

    def _save_diffs(self, view: Mapping[str, Any], found: dict[tuple[str, str], Any]) -> None:
        """The dirty checkout's diff in each cell's run folder (SubmitRun does the same
        for one run); a run that has it already is written again, the same content."""
        points = view.get("points") or []
        spec = view.get("spec") or {}
        template, seeds = spec.get("template") or {}, spec.get("seeds") or [0]
        for cell in view.get("cells") or ():
            config = cell_config(template, points[int(cell["point"])], int(seeds[0]))
            code = found.get((config.get("worker", "cartpole"), config.get("python_env") or ""))
            if code is not None:
                self.identity.save_soon(str(cell["run_id"]), code)

    async def _env(self, name: str, context: grpc.aio.ServicerContext) -> Optional[dict]:
        try:
            env = (await self.registry.call(GetEnv(name), context))["env"]
        except CallError as exc:  # the registry refuses the cells, naming python_env
            if exc.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return None
            raise
        return None if env.get("removed") else env

    async def get(self, request: pb.GetExperimentRequest,
                  context: grpc.aio.ServicerContext) -> pb.GetExperimentResponse:
        got = await self.registry.call(GetExperiment(name_of(request.name)), context)
        return pb.GetExperimentResponse(experiment=self.experiment(got["experiment"]))

    async def listing(self, request: pb.ListExperimentsRequest,
                      context: grpc.aio.ServicerContext) -> pb.ListExperimentsResponse:
        size = request.page_size or DEFAULT_PAGE
        if not 0 < size <= MAX_PAGE:
            raise invalid("page_size", f"must be from 1 to {MAX_PAGE}")
        offset = 0
        if request.page_token:
            if not request.page_token.startswith("e") or not request.page_token[1:].isdigit():
                raise invalid("page_token", "is not a token this server gave")
            offset = int(request.page_token[1:])
        got = await self.registry.call(ListExperiments(size, offset), context)
        out = pb.ListExperimentsResponse(
            experiments=[self.experiment(v) for v in got["experiments"]])
        if got["more"]:
            out.next_page_token = f"e{offset + size}"
        return out

    async def cancel(self, request: pb.CancelExperimentRequest,
                     context: grpc.aio.ServicerContext) -> pb.CancelExperimentResponse:
        cmd = xcmds.CancelExperiment(name_of(request.name),
                                     text(request.requested_by or "grpc", "requested_by"),
                                     text(request.reason, "reason", MAX_TEXT))
        got = await self.registry.call(cmd, context, timeout_s=SUBMIT_TIMEOUT_S)
        return pb.CancelExperimentResponse(experiment=self.experiment(got["experiment"]),
                                           cancelled_run_ids=list(got["cancelled"]))

    async def rerun(self, request: pb.RerunExperimentRequest,
                    context: grpc.aio.ServicerContext) -> pb.RerunExperimentResponse:
        cmd = xcmds.RerunExperiment(name_of(request.name),
                                    text(request.requested_by or "grpc", "requested_by"),
                                    text(request.reason, "reason", MAX_TEXT),
                                    from_scratch=request.from_scratch)
        got = await self.registry.call(cmd, context, timeout_s=SUBMIT_TIMEOUT_S)
        return pb.RerunExperimentResponse(experiment=self.experiment(got["experiment"]),
                                          rerun_run_ids=list(got["rerun"]))

    def experiment(self, view: Mapping[str, Any]) -> pb.Experiment:
        """The registry's experiment view (core.experimentstate.experiment_view)."""
        spec = view.get("spec") or {}
        points = view.get("points")
        msg = pb.Experiment(
            name=str(view["name"]), status=str(view["status"]),
            spec_json=canonical_json(spec), spec_digest=str(view.get("spec_digest") or ""),
            cell_count=int(view.get("cell_count") or len(view.get("cells") or ())),
            max_concurrent=int(view.get("max_concurrent") or 0),
            has_priority=view.get("priority") is not None,
            priority=int(view.get("priority") or 0),
            submitted_by=str(view.get("submitted_by") or ""),
            revision=int(view.get("revision") or 1),
            cancelled_by=str(view.get("cancelled_by") or ""),
            cancel_reason=str(view.get("cancel_reason") or ""),
            description=str(spec.get("description") or ""))
        if isinstance(points, list):
            msg.points_json.extend(canonical_json(p) for p in points)
            msg.point_labels.extend(point_label(p) for p in points)
        for status, count in (view.get("runs") or {}).items():
            msg.run_counts[str(status)] = int(count)
        for name in ("created_at", "updated_at"):
            value = view.get(name)
            if isinstance(value, (int, float)) and math.isfinite(value):
                getattr(msg, name).CopyFrom(timestamp(value))
        for cell in view.get("cells") or ():
            msg.cells.append(pb.ExperimentCell(
                point=int(cell["point"]), seed=int(cell["seed"]), run_id=str(cell["run_id"]),
                status=self.mapper.status.to_wire(cell.get("status")),
                attempt=int(cell.get("attempt") or 0),
                cause=self.mapper.cause.to_wire(cell.get("cause") or None)))
        return msg
