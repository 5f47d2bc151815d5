"""1. Registry command throughput: ``submit`` calls/s from 1 and 8 client processes
(each with its own bus.rpc.RpcClient, distinct ~300-byte configs) against the real
registry process, vs a bare DEALER/ROUTER msgpack echo server (plain pyzmq + msgpack,
its own process) answering the same clients with a reply of the same size.

Child roles (run by the benchmark itself):
    python -m bench.registry_rpc client INDEX
    python -m bench.registry_rpc echo ENDPOINT RESULT_BYTES
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from bench.common import Lab, StatusWatch, control_loop, wait_ping
from bench.table import Row, median

CLIENT_COUNTS = (1, 8)
TARGET = 0.5


def make_config(tag: str, n: int) -> dict[str, Any]:
    """A realistic run config (core.runconfig fields), ~300 bytes of msgpack, distinct
    for each (tag, n)."""
    return {"name": f"bench-{tag}-{n}", "worker": "cartpole", "env": "CartPole-v1",
            "seed": n, "steps": 200_000,
            "hyperparameters": {"algo": "ppo", "learning_rate": 0.0003, "gamma": 0.99,
                                "gae_lambda": 0.95, "clip_range": 0.2, "n_steps": 2048,
                                "batch_size": 64, "n_epochs": 10, "ent_coef": 0.0,
                                "vf_coef": 0.5, "net_arch": [64, 64]},
            "resources": {"gpus": 0, "cpu_slots": 1}, "priority": 0,
            "tags": ["bench", "cartpole"]}


def submit_args(tag: str, n: int) -> dict[str, Any]:
    return {"config": make_config(tag, n), "submitted_by": "bench"}


# --- child: a client process ---------------------------------------------------------

def client_main(index: str) -> None:
    import zmq

    from bus.rpc import RpcClient
    ctx = zmq.Context()
    clients: dict[str, RpcClient] = {}

    def handle(cmd: dict[str, Any]) -> dict[str, Any]:
        endpoint = cmd["endpoint"]
        client = clients.get(endpoint)
        if client is None:
            client = clients[endpoint] = RpcClient(ctx, endpoint, f"bench-{index}",
                                                   timeout_s=30, retries=0)
        if cmd["op"] == "warm":
            client.call("ping")
            return {"ok": True}
        tag = f"{index}-{os.getpid()}-{cmd['round']}"
        call, errors, n = client.call, 0, 0
        t0 = time.perf_counter()
        end = t0 + cmd["seconds"]
        while True:
            result = call("submit", submit_args(tag, n))
            n += 1
            if isinstance(result, dict) and result.get("created") is False:
                errors += 1  # a duplicate config: the benchmark would be wrong
            if time.perf_counter() >= end:
                break
        return {"calls": n, "elapsed": time.perf_counter() - t0, "duplicates": errors}

    try:
        control_loop(handle)
    finally:
        for c in clients.values():
            c.close()
        ctx.destroy(linger=0)


# --- child: the raw baseline server --------------------------------------------------

def echo_main(endpoint: str, result_bytes: str) -> None:
    """Bare ROUTER: unpack each request, answer a Reply map echoing its args, padded
    so that the reply is as large as the registry's."""
    import msgpack
    import zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(endpoint)
    want, pad = int(result_bytes), None
    try:
        while True:
            ident, frame = sock.recv_multipart()
            req = msgpack.unpackb(frame, raw=False)
            args = req["payload"]["args"]
            if pad is None and args:
                pad = b"\0" * max(0, want - len(msgpack.packb(args)) - 8)
            reply = {"v": 1, "type": "Reply", "source": "echo", "ts": time.time(),
                     "payload": {"ok": True, "result": {"run": args, "pad": pad or b""}},
                     "id": req["id"]}
            sock.send_multipart([ident, msgpack.packb(reply, use_bin_type=True)])
    finally:
        sock.close(linger=0)
        ctx.destroy(linger=0)


# --- the benchmark -------------------------------------------------------------------

def run(quick: bool = False) -> list[Row]:
    seconds = 1.0 if quick else 2.0
    repeats = 1 if quick else 3
    from bus.codec import pack
    # A status message every 0.25 s (default 2 s) gives the registry's batch sizes.
    with Lab("tb-rpc-", env={"TRAINER_STATUS_INTERVAL": "0.25"}) as lab:
        lab.start_bus()
        status = StatusWatch(lab, "registry")
        registry, _ = lab.start_registry()
        sample = lab.client(lab.settings.registry).call("submit", submit_args("sample", 0))
        result_bytes = len(pack(sample))
        request_bytes = len(pack(submit_args("sample", 0)))
        echo_ep = lab.ipc("echo")
        echo = lab.module("bench.registry_rpc", "echo", echo_ep, str(result_bytes))
        wait_ping(lab.client(echo_ep, timeout_s=0.25), echo, 30)
        clients = [lab.module("bench.registry_rpc", "client", str(i), control=True)
                   for i in range(max(CLIENT_COUNTS))]
        targets = {"ours": lab.settings.registry, "raw": echo_ep}
        for endpoint in targets.values():
            for c in clients:
                c.send({"op": "warm", "endpoint": endpoint})
            for c in clients:
                c.recv()
        rates: dict[tuple[str, int], list[float]] = {}
        batch: dict[int, list[float]] = {}
        dupes = 0
        counters = status.after(time.time())
        for r in range(repeats):
            order = list(targets.items()) if r % 2 == 0 else list(reversed(targets.items()))
            for count in CLIENT_COUNTS:
                for name, endpoint in order:
                    active = clients[:count]
                    for c in active:
                        c.send({"op": "run", "endpoint": endpoint, "seconds": seconds,
                                "round": f"{name}{count}r{r}"})
                    replies = [c.recv() for c in active]
                    dupes += sum(x["duplicates"] for x in replies)
                    rates.setdefault((name, count), []).append(
                        sum(x["calls"] / x["elapsed"] for x in replies))
                    if name == "ours":
                        before, counters = counters, status.after(time.time())
                        if "requests" in counters and "batches" in counters:
                            batch.setdefault(count, []).append(
                                (counters["requests"] - before.get("requests", 0))
                                / max(1, counters["batches"] - before.get("batches", 0)))
        if not registry.alive():
            raise RuntimeError(f"the registry died: {registry.log_tail()}")
    rows = []
    for count in CLIENT_COUNTS:
        ours, raw = median(rates[("ours", count)]), median(rates[("raw", count)])
        sizes = batch.get(count)
        notes = (f"median of {repeats} x {seconds:g}s; submit args ~{request_bytes} B, "
                 f"result ~{result_bytes} B"
                 + (f"; registry batch ~{median(sizes):.1f} requests" if sizes else "")
                 + (f"; {dupes} DUPLICATES" if dupes else ""))
        rows.append(Row(f"registry submit, {count} client{'s' if count > 1 else ''}",
                        "calls/s", ours, raw, f">= {TARGET:.0%} of echo",
                        ours >= TARGET * raw and not dupes, notes))
    return rows


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"client": client_main, "echo": echo_main}[role](*rest)
