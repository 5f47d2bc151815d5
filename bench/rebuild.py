"""4. Rebuild (replay) of a large log: eventstore.rebuild.rebuild(src, dst)
events/s vs a plain sqlite3 scan that msgpack.unpackb-decodes the same payloads and
folds them into dicts (run_id -> dict of fields). Then the real registry process is
started on that log (projections copied from the rebuild), answers ping, get_run,
list_runs and events_since, and its resident memory (VmRSS) is read."""

from __future__ import annotations

import os
import sqlite3
import tempfile
import time
from typing import Any

from bench.common import Lab, rss_mb
from bench.eventgen import generate
from bench.table import Row, median

REPLAY_TARGET = 0.5
RSS_LIMIT_MB = 150.0


def ours(src_path: str, dst_path: str) -> float:
    from eventstore.rebuild import rebuild
    src = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    dst = sqlite3.connect(dst_path, isolation_level=None)  # as the audit tool opens it
    t0 = time.perf_counter()
    n = rebuild(src, dst)
    elapsed = time.perf_counter() - t0
    src.close()
    dst.close()
    return n / elapsed


def raw(src_path: str) -> tuple[float, int]:
    import msgpack
    conn = sqlite3.connect(f"file:{src_path}?mode=ro", uri=True)
    unpackb = msgpack.unpackb
    runs: dict[str, dict[str, Any]] = {}
    n = 0
    t0 = time.perf_counter()
    for seq, kind, payload, at in conn.execute(
            "SELECT seq, type, payload, recorded_at FROM events ORDER BY seq"):
        fields = unpackb(payload)
        run = runs.get(fields["run_id"])
        if run is None:
            run = runs[fields["run_id"]] = {}
        run.update(fields)
        run["last_type"], run["last_seq"], run["updated_at"] = kind, seq, at
        n += 1
    elapsed = time.perf_counter() - t0
    conn.close()
    return n / elapsed, len(runs)


def install_projections(home_db: str, rebuilt: str) -> None:
    """Give the generated log the projections the live registry would have."""
    from core.projection import TABLES
    conn = sqlite3.connect(home_db, isolation_level=None)
    conn.execute("ATTACH ? AS r", (rebuilt,))
    conn.execute("BEGIN")
    for table, (cols, _) in TABLES.items():
        c = ", ".join(cols)
        conn.execute(f"INSERT INTO main.{table} ({c}) SELECT {c} FROM r.{table}")
    conn.execute("COMMIT")
    conn.execute("DETACH r")
    conn.close()


def registry_rss(home: str) -> dict[str, Any]:
    with Lab(home=home) as lab:
        lab.start_bus()
        child, startup = lab.start_registry(timeout=300)
        c = lab.client(lab.settings.registry, timeout_s=60)
        head = c.call("ping")["head_seq"]
        listed = c.call("list_runs", {"limit": 100})
        for run in listed["runs"][:10]:
            c.call("get_run", {"run_id": run["run_id"]})
        c.call("list_runs", {"status": ["COMPLETED"], "limit": 1000})
        c.call("list_runs", {"status": ["RUNNING", "PENDING", "DISPATCHING"]})
        c.call("events_since", {"after_seq": 0, "limit": 1000})
        c.call("events_since", {"after_seq": max(0, head - 5000), "limit": 5000})
        c.call("ping")
        return {"rss": rss_mb(child.pid), "startup": startup, "head": head,
                "runs": listed["total"]}


def run(quick: bool = False) -> list[Row]:
    n = 100_000 if quick else 1_000_000
    budget_s = 20.0 if quick else 60.0  # up to 3 repeats while they fit in this budget
    with tempfile.TemporaryDirectory(prefix="tb-replay-", dir="/tmp") as tmp:
        home = os.path.join(tmp, "home")
        os.makedirs(home, mode=0o700)
        src = os.path.join(home, "events.db")
        t0 = time.perf_counter()
        generate(src, n)
        gen_s = time.perf_counter() - t0
        raw_rates, ours_rates, runs = [], [], 0
        t0 = time.perf_counter()
        while len(ours_rates) < 3 and (not ours_rates or (time.perf_counter() - t0) * (
                len(ours_rates) + 1) / len(ours_rates) < budget_s):
            rate, runs = raw(src)  # interleaved, so that both see the same machine
            raw_rates.append(rate)
            ours_rates.append(ours(src, os.path.join(tmp, f"rebuilt{len(ours_rates)}.db")))
        install_projections(src, os.path.join(tmp, "rebuilt0.db"))
        mem = registry_rss(home)
    o, b = median(ours_rates), median(raw_rates)
    size = f"{n // 1000:,}k" if n < 1_000_000 else f"{n / 1e6:g}M"
    return [
        Row(f"rebuild {size} events", "events/s", o, b, f">= {REPLAY_TARGET:.0%} of raw fold",
            o >= REPLAY_TARGET * b,
            f"{runs:,} runs; ours {n / o:.1f}s, raw {n / b:.1f}s (median of "
            f"{len(ours_rates)}); log generated in {gen_s:.1f}s"),
        Row(f"registry RSS on {size} events", "MB", mem["rss"], None,
            f"< {RSS_LIMIT_MB:.0f} MB", mem["rss"] < RSS_LIMIT_MB,
            f"after ping, get_run, list_runs, events_since; head_seq={mem['head']:,}, "
            f"runs={mem['runs']:,}; ping answered {mem['startup']:.1f}s after start"),
    ]
