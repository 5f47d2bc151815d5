"""GetExperimentResults: the experiment's cells from the registry, their metrics read
from the run folders and the statistics computed in the pool, never on the event loop
(runtime.experimentresults; docs/EXPERIMENTS.md, "Results: the statistics")."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import grpc

from core.digest import canonical_json
from core.protocol import GetExperiment
from services.gateway.calls import RegistryAccess
from services.gateway.errors import invalid
from services.gateway.experimentcalls import name_of
from services.gateway.mapping import Mapper
from services.gateway.runfiles import LogFiles
from trainer_api.v1 import trainer_pb2 as pb

DEFAULT_METRIC = "eval_return_mean"
DEFAULT_GRID, MAX_GRID = 200, 5000
MAX_METRIC = 200


class ResultCalls:
    def __init__(self, registry: RegistryAccess, logs: LogFiles, mapper: Mapper) -> None:
        self.registry = registry
        self.logs = logs          # whose runs_dir holds the cells' metrics files
        self.mapper = mapper

    async def results(self, request: pb.GetExperimentResultsRequest,
                      context: grpc.aio.ServicerContext) -> pb.GetExperimentResultsResponse:
        name = name_of(request.name)
        metric = request.metric or DEFAULT_METRIC
        if len(metric) > MAX_METRIC or not metric.isprintable():
            raise invalid("metric", f"must be at most {MAX_METRIC} printable characters")
        grid = request.grid_points or DEFAULT_GRID
        if not 2 <= grid <= MAX_GRID:
            raise invalid("grid_points", f"must be from 2 to {MAX_GRID}")
        view = (await self.registry.call(GetExperiment(name), context))["experiment"]
        # numpy is loaded by the first results call, not at the gateway's start
        from runtime.experimentresults import CellRef, experiment_results
        cells = [CellRef(int(c["point"]), int(c["seed"]), str(c["run_id"]), str(c["status"]))
                 for c in view["cells"]]
        data = await self.registry.run(
            lambda: experiment_results(self.logs.runs_dir, list(view["points"]), cells, metric,
                                       curves=request.curves, grid_points=grid))
        return self.message(data)

    def message(self, data: Mapping[str, Any]) -> pb.GetExperimentResultsResponse:
        out = pb.GetExperimentResultsResponse(
            metric=str(data["metric"]), metrics=[str(m) for m in data.get("metrics", ())],
            skipped_lines=int(data.get("skipped_lines") or 0),
            results_json=json.dumps(data, separators=(",", ":"), allow_nan=False,
                                    default=_plain))
        for p in data["points"]:
            seeds = p.get("seeds") or {}
            msg = pb.PointResult(
                point=int(p["point"]), label=str(p.get("label") or ""),
                values_json=canonical_json(p.get("values") or {}),
                seeds_total=int(seeds.get("total", 0)),
                seeds_completed=int(seeds.get("completed", 0)),
                seeds_failed=int(seeds.get("failed", 0)),
                seeds_cancelled=int(seeds.get("cancelled", 0)),
                seeds_running=int(seeds.get("running", 0)),
                seeds_pending=int(seeds.get("pending", 0)),
                n=int(p.get("n") or 0), missing=int(p.get("missing") or 0),
                has_stats=_number(p.get("mean")) is not None,
                rank=int(p.get("rank") or 0), best=bool(p.get("best")))
            for name in ("mean", "std", "median", "iqm", "ci_low", "ci_high"):
                value = _number(p.get(name))
                if value is not None:
                    setattr(msg, name, value)
            for f in p.get("finals") or ():
                final = pb.SeedFinal(seed=int(f["seed"]), run_id=str(f["run_id"]),
                                     status=self.mapper.status.to_wire(f.get("status")))
                value = _number(f.get("value"))
                if value is not None:
                    final.has_value, final.value = True, value
                if isinstance(f.get("step"), int):
                    final.step = int(f["step"])
                msg.finals.append(final)
            out.points.append(msg)
        for c in data.get("curves") or ():
            out.curves.append(pb.Curve(point=int(c["point"]), steps=_floats(c["steps"]),
                                       mean=_floats(c["mean"]), low=_floats(c["low"]),
                                       high=_floats(c["high"]), n=int(c.get("n") or 0)))
        return out


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _floats(values: Any) -> list[float]:
    return [float(v) for v in values]


def _plain(value: Any) -> Any:
    """numpy scalars and arrays, as JSON numbers and lists."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON data")
