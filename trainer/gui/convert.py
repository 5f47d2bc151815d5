"""Protobuf messages -> plain dicts (what crosses from worker threads to the GUI)."""

from __future__ import annotations

import json
from typing import Any, Optional

from google.protobuf.json_format import MessageToDict

from trainer.client import TrainerError
from trainer_api.v1 import trainer_pb2 as pb

STATUS = {pb.RUN_STATUS_PENDING: "pending", pb.RUN_STATUS_DISPATCHING: "dispatching",
          pb.RUN_STATUS_RUNNING: "running", pb.RUN_STATUS_COMPLETED: "completed",
          pb.RUN_STATUS_FAILED: "failed", pb.RUN_STATUS_CANCELLED: "cancelled"}
TERMINAL = frozenset({"completed", "failed", "cancelled"})
CAUSE = {v.number: v.name[len("TERMINAL_CAUSE_"):].lower()
         for v in pb.TerminalCause.DESCRIPTOR.values if v.number}


def _ts(msg: Any, field: str) -> Optional[float]:
    if not msg.HasField(field):
        return None
    t = getattr(msg, field)
    return t.seconds + t.nanos / 1e9


def heartbeat(hb: pb.Heartbeat) -> dict[str, Any]:
    return {"beat": hb.beat, "step": hb.step, "episode": hb.episode,
            "last_return": hb.last_return if hb.HasField("last_return") else None,
            "mean_return": hb.mean_return if hb.HasField("mean_return") else None,
            "steps_per_s": hb.steps_per_s, "received_at": _ts(hb, "received_at"),
            "progress": MessageToDict(hb.progress), "updates": hb.updates,
            "metrics_finite": hb.metrics_finite if hb.HasField("metrics_finite") else None,
            "phase": hb.phase}


def flag(f: pb.RunFlag) -> dict[str, Any]:
    """A liveness flag (RunRecord.flags); ``standing`` while ``cleared_at`` is unset."""
    cleared = _ts(f, "cleared_at")
    return {"rule": f.rule, "action": f.action, "flagged_at": _ts(f, "flagged_at"),
            "cleared_at": cleared, "standing": cleared is None,
            "evidence": MessageToDict(f.evidence),
            "cleared_evidence": MessageToDict(f.cleared_evidence), "seq": f.seq,
            "attempt": f.attempt}


def run(r: pb.RunRecord) -> dict[str, Any]:
    try:
        config = json.loads(r.config_json) if r.config_json else {}
    except ValueError:
        config = {}
    return {"run_id": r.run_id, "status": STATUS.get(r.status, "unknown"),
            "cause": CAUSE.get(r.cause, ""), "config": config,
            "worker": config.get("worker", ""), "env": config.get("env", ""),
            "steps": config.get("steps", 0), "gpus": list(r.gpus),
            "gpus_wanted": (config.get("resources") or {}).get("gpus", 0),
            "exit_code": r.exit_code if r.HasField("exit_code") else None,
            "waiting_reason": r.waiting_reason, "message": r.message,
            "submitted_at": _ts(r, "submitted_at"), "started_at": _ts(r, "started_at"),
            "finished_at": _ts(r, "finished_at"), "priority": r.priority,
            "heartbeat": heartbeat(r.last_heartbeat) if r.HasField("last_heartbeat") else None,
            "artifact_count": r.artifact_count, "last_seq": r.last_seq, "name": r.name,
            "tags": list(r.tags), "cancel_reason": r.cancel_reason,
            "cancel_requested_by": r.cancel_requested_by, "pid": r.pid if r.HasField("pid")
            else None, "host": r.host, "launcher": r.launcher, "job_id": r.job_id,
            "job_gpus": list(r.job_gpus), "flags": [flag(f) for f in r.flags]}


def placement(run: dict[str, Any]) -> str:
    """Where a run's worker runs, for the details' header: "SLURM job 12 on node7, GPUs
    0,1" (SLURM's numbers, on that node); "" for a local run (or one not started)."""
    if run.get("launcher") != "slurm":
        return ""
    gpus = ",".join(run.get("job_gpus") or []) or "none"
    return f"SLURM job {run.get('job_id') or '?'} on {run.get('host') or '?'}, GPUs {gpus}"


def event(e: pb.RunEvent) -> dict[str, Any]:
    return {"seq": e.seq, "run_id": e.run_id, "type": e.type,
            "status": STATUS.get(e.status, ""), "payload": MessageToDict(e.payload),
            "recorded_at": _ts(e, "recorded_at")}


def health(h: pb.GetHealthResponse) -> dict[str, Any]:
    return {"services": [{"name": s.name, "alive": s.alive, "error": s.error,
                          "age_s": s.age_s} for s in h.services],
            "gpus": [{"index": g.index, "uuid": g.uuid, "name": g.name,
                      "run_id": g.run_id} for g in h.gpus],
            "gpu_source": h.gpu_source, "db_bytes": h.db_bytes, "last_seq": h.last_seq,
            "watchers": h.watchers}


def artifact(a: pb.Artifact) -> dict[str, Any]:
    return {"path": a.path, "kind": a.kind, "size": a.size, "meta": MessageToDict(a.meta)}


def metrics(m: pb.GetMetricsResponse) -> dict[str, Any]:
    return {"points": [{"step": p.step, "values": dict(p.values), "source": p.source}
                       for p in m.points],
            "next_offset": m.next_offset, "next_tensorboard_cursor": m.next_tensorboard_cursor}


def experiment(e: pb.Experiment) -> dict[str, Any]:
    """An experiment (ListExperiments: no cells; GetExperiment: with each cell's run)."""
    return {"name": e.name, "status": e.status, "revision": e.revision,
            "description": e.description, "cell_count": e.cell_count,
            "run_counts": {k: int(v) for k, v in e.run_counts.items()},
            "point_labels": list(e.point_labels), "max_concurrent": e.max_concurrent,
            "created_at": _ts(e, "created_at"), "updated_at": _ts(e, "updated_at"),
            "cells": [{"point": c.point, "seed": c.seed, "run_id": c.run_id,
                       "status": STATUS.get(c.status, "unknown"), "attempt": c.attempt,
                       "cause": CAUSE.get(c.cause, "")} for c in e.cells]}


STATS = ("mean", "std", "median", "iqm", "ci_low", "ci_high")


def results(r: pb.GetExperimentResultsResponse) -> dict[str, Any]:
    """GetExperimentResults: the statistics per point (None where a point has none)
    and, when asked for, each point's curve."""
    points = []
    for p in r.points:
        stats = {k: (getattr(p, k) if p.has_stats else None) for k in STATS}
        points.append({"point": p.point, "label": p.label, "seeds_total": p.seeds_total,
                       "completed": p.seeds_completed, "failed": p.seeds_failed,
                       "cancelled": p.seeds_cancelled, "running": p.seeds_running,
                       "pending": p.seeds_pending, "n": p.n, "missing": p.missing,
                       "rank": p.rank, "best": p.best, **stats})
    return {"metric": r.metric, "metrics": list(r.metrics), "points": points,
            "curves": [{"point": c.point, "steps": list(c.steps), "mean": list(c.mean),
                        "low": list(c.low), "high": list(c.high), "n": c.n}
                       for c in r.curves]}


def error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, TrainerError):
        return {"code": exc.code.name, "message": exc.message, "field": exc.field,
                "reason": exc.reason, "retryable": exc.retryable}
    return {"code": type(exc).__name__, "message": str(exc), "field": "", "reason": "",
            "retryable": False}
