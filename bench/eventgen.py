"""A realistic event log, written fast: interleaved run lifecycles as rows with the
same payloads (bus.codec.pack of each event's fields) and hash chain
(core.chain.chain_hash) that EventLog.append writes, inserted with executemany in
large transactions into a database made by the registry's own migrations.

Lifecycles (of ~7 events on average): 70% complete (some wait first, 0-3 artifacts),
15% fail, 8% are cancelled while pending, 7% while running. Up to 32 runs are in
flight at once; 8 GPUs are shared (a run without a free one runs CPU-only).
"""

from __future__ import annotations

import random
from typing import Any, Iterator

from bus.codec import pack
from core.chain import GENESIS, chain_hash
from core.digest import config_digest
from core.events import EVENT_TYPES
from services.registry.migrations import connect, migrate

IN_FLIGHT = 32
GPUS = [f"GPU-{i:08x}-bench" for i in range(8)]
T0 = 1_760_000_000.0
CHUNK = 50_000


def _base_config() -> dict[str, Any]:
    from core.runconfig import RunConfig

    from bench.registry_rpc import make_config
    return RunConfig.from_map(make_config("gen", 0)).to_map()  # defaults applied


class _Run:
    __slots__ = ("run_id", "plan", "version", "gpus", "started")

    def __init__(self, run_id: str, plan: list[str]) -> None:
        self.run_id, self.plan, self.version, self.gpus = run_id, plan, 0, []
        self.started = False


def _plan(rng: random.Random) -> list[str]:
    x = rng.random()
    head = ["RunWaiting"] if rng.random() < 0.2 else []
    arts = ["ArtifactRegistered"] * rng.randrange(4)
    if x < 0.70:
        return head + ["GpusClaimed", "RunStarted", *arts, "RunCompleted", "GpusReleased"]
    if x < 0.85:
        return head + ["GpusClaimed", "RunStarted", *arts[:1], "RunFailed", "GpusReleased"]
    if x < 0.93:
        return head + ["CancelRequested", "RunCancelled"]
    return ["GpusClaimed", "RunStarted", "CancelRequested", "RunCancelled", "GpusReleased"]


def _events(n: int, seed: int) -> Iterator[tuple[str, int, str, dict[str, Any]]]:
    """(stream, version, type, payload) in log order, exactly n of them."""
    rng = random.Random(seed)
    base = _base_config()
    free = list(GPUS)
    active: list[_Run] = []
    made = runs = 0
    while made < n:
        if len(active) < IN_FLIGHT:
            runs += 1
            run = _Run(f"r{runs:012x}", _plan(rng))
            config = {**base, "name": f"gen-{runs}", "seed": runs}
            payload: dict[str, Any] = {"run_id": run.run_id, "digest": config_digest(config),
                                       "config": config, "priority": 0,
                                       "submitted_by": "bench"}
            kind = "RunSubmitted"
            active.append(run)
        else:
            i = rng.randrange(len(active))
            run = active[i]
            kind = run.plan.pop(0)
            payload = _payload(kind, run, free, rng)
            if not run.plan:
                active[i] = active[-1]
                active.pop()
        run.version += 1
        made += 1
        yield f"run-{run.run_id}", run.version, kind, payload


def _payload(kind: str, run: _Run, free: list[str], rng: random.Random) -> dict[str, Any]:
    rid = run.run_id
    if kind == "RunWaiting":
        return {"run_id": rid, "reason": "no free GPU"}
    if kind == "GpusClaimed":
        run.gpus = [free.pop()] if free else []
        return {"run_id": rid, "gpu_uuids": list(run.gpus), "claimed_by": "dispatcher"}
    if kind == "RunStarted":
        run.started = True
        return {"run_id": rid, "pid": rng.randrange(1000, 4_000_000),
                "pid_start_time": 12345.67, "host": "node-1"}
    if kind == "ArtifactRegistered":
        k = run.version
        return {"run_id": rid, "kind": "video", "path": f"videos/episode-{k}.mp4",
                "size": 30_000 + k, "meta": {"episode": k, "reward": 200.0}}
    if kind == "RunCompleted":
        return {"run_id": rid, "exit_code": 0}
    if kind == "RunFailed":
        return {"run_id": rid, "cause": "exit_code", "exit_code": 1, "signal": None,
                "message": "Traceback (most recent call last): ... RuntimeError: diverged"}
    if kind == "CancelRequested":
        return {"run_id": rid, "requested_by": "alice", "reason": "wrong seed"}
    if kind == "RunCancelled":
        return {"run_id": rid, "requested_by": "alice", "reason": "wrong seed",
                "exit_code": None, "signal": 15 if run.started else None}
    if kind == "GpusReleased":
        free.extend(run.gpus)
        return {"run_id": rid, "gpu_uuids": run.gpus}
    raise AssertionError(kind)


def generate(path: str, n: int, seed: int = 1) -> int:
    """Write an events.db with n events at ``path``; returns n."""
    conn = connect(path)
    migrate(conn)
    schema = {t: cls.SCHEMA_VERSION for t, cls in EVENT_TYPES.items()}
    sql = ("INSERT INTO events (seq, stream, version, type, schema_version, payload, "
           "caused_by, correlation_id, recorded_at, hash) VALUES (?,?,?,?,?,?,?,?,?,?)")
    prev, seq, rows = GENESIS, 0, []
    conn.execute("BEGIN")
    for stream, version, kind, payload in _events(n, seed):
        seq += 1
        body = pack(payload)
        by = "cli" if version == 1 else "dispatcher"
        cid, at = f"{seq:016x}", T0 + seq * 0.001
        prev = chain_hash(prev, seq, stream, version, kind, schema[kind], body, by, cid, at)
        rows.append((seq, stream, version, kind, schema[kind], body, by, cid, at, prev))
        if len(rows) >= CHUNK:
            conn.executemany(sql, rows)
            rows.clear()
    conn.executemany(sql, rows)
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return n
