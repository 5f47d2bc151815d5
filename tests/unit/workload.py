"""A seeded, random but legal mix of registry commands, for projection tests."""

from __future__ import annotations

import random
import sqlite3
from typing import Any

from core.clock import FakeClock
from services.registry.handlers import RequestHandler
from services.registry.migrations import connect, migrate

GPUS = [f"GPU-{i}" for i in range(4)]


def open_registry(path: str) -> tuple[sqlite3.Connection, RequestHandler, FakeClock]:
    conn = connect(path)
    migrate(conn)
    clock = FakeClock()
    counter = iter(range(10**9))
    return conn, RequestHandler(conn, clock, path, make_run_id=lambda: f"r{next(counter):012x}"), clock


def run_workload(registry: RequestHandler, clock: FakeClock, commands: int, seed: int = 1,
                 per_batch: int = 16) -> dict[str, int]:
    """Drive ``commands`` random commands in batches of ``per_batch`` transactions."""
    rng = random.Random(seed)
    runs: list[str] = []
    counts: dict[str, int] = {}
    n = 0
    while n < commands:
        registry.conn.execute("BEGIN IMMEDIATE")
        for _ in range(per_batch):
            method, args = _pick(rng, registry, runs)
            out = registry.handle(method, args, f"req-{n}", "workload")
            if method == "submit" and out.reply["ok"]:
                runs.append(out.reply["result"]["run"]["run_id"])
            key = method if out.reply["ok"] else f"{method}:error"
            counts[key] = counts.get(key, 0) + 1
            n += 1
            clock.advance(0.25)
        registry.conn.execute("COMMIT")
    return counts


def _pick(rng: random.Random, registry: RequestHandler, runs: list[str]) -> tuple[str, dict[str, Any]]:
    if not runs or rng.random() < 0.25:
        return "submit", {"config": {"env": "CartPole-v1", "seed": rng.randrange(10**6),
                                     "hyperparameters": {"lr": rng.random()},
                                     "priority": rng.randrange(-5, 5)}}
    run_id = rng.choice(runs[-40:])
    method = rng.choice(["claim_gpus", "record_started", "finish", "request_cancel",
                         "register_artifact", "record_waiting", "record_adopted"])
    if method == "claim_gpus":
        return method, {"run_id": run_id, "gpu_uuids": rng.sample(GPUS, rng.randrange(0, 3)),
                        "claimed_by": "d"}
    if method == "record_started":
        return method, {"run_id": run_id, "pid": rng.randrange(2, 99999), "pid_start_time": 1.0}
    if method == "finish":
        outcome = rng.choice(["completed", "failed", "cancelled"])
        return method, {"run_id": run_id, "outcome": outcome,
                        "cause": rng.choice(["exit_code", "signal", "lost", "time_limit"]),
                        "exit_code": 0 if outcome == "completed" else rng.randrange(1, 3),
                        "result": {"steps": len(runs), "return": 0.5}}
    if method == "request_cancel":
        return method, {"run_id": run_id, "requested_by": "u", "reason": "r"}
    if method == "register_artifact":
        return method, {"run_id": run_id, "kind": rng.choice(["video", "checkpoint"]),
                        "path": f"out/{rng.randrange(5)}.bin", "size": rng.randrange(1000),
                        "meta": {"episode": rng.randrange(10)}}
    if method == "record_waiting":
        return method, {"run_id": run_id, "reason": rng.choice(["no GPU", "cap reached"])}
    return method, {"run_id": run_id, "pid": 7, "adopted_by": "d"}
