"""The gateway: SubmitRun throughput and WatchRuns fan-out latency.

1. SubmitRun calls/s from 1 and 8 client processes (distinct configs, each a new
   run: gateway -> registry -> commit -> reply) vs a bare grpc.aio unary echo
   server (its own process) answering the same clients with a reply of the same
   size. Target: >= 40 % of echo with 8 clients.
2. WatchRuns fan-out: 100 watchers (in 4 client processes) while events are
   appended at 1,000/s; latency from the registry's commit (the event's
   recorded_at) to each watcher's receipt. Target: p99 < 50 ms and no watcher
   missing or repeating an event.

Child roles (run by the benchmark itself):
    python -m bench.bench_gateway client INDEX
    python -m bench.bench_gateway echo PORT REPLY_BYTES
    python -m bench.bench_gateway watchers INDEX
    python -m bench.bench_gateway appender
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import socket
import sys
import time
from typing import Any

from bench.common import Lab, control_loop

SUBMIT = "/trainer.v1.TrainerService/SubmitRun"
CLIENT_COUNTS = (1, 8)
SUBMIT_TARGET = 0.40
WATCHERS, WATCH_PROCS = 100, 4
RATE = 1000
P99_TARGET_MS = 50.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def submit_request(tag: str, n: int) -> bytes:
    from trainer_api.v1 import trainer_pb2 as pb
    config = {"name": f"bench-{tag}-{n}", "env": "CartPole-v1", "seed": n, "steps": 200_000,
              "hyperparameters": {"algo": "ppo", "learning_rate": 0.0003, "gamma": 0.99},
              "tags": ["bench"]}
    return pb.SubmitRunRequest(config_json=json.dumps(config),
                               submitted_by="bench").SerializeToString()


# --- children ---------------------------------------------------------------------

def client_main(index: str) -> None:
    import grpc
    channels: dict[str, Any] = {}

    def handle(cmd: dict[str, Any]) -> dict[str, Any]:
        addr = cmd["addr"]
        if addr not in channels:
            channels[addr] = grpc.insecure_channel(addr).unary_unary(SUBMIT)
        call = channels[addr]
        meta = (("authorization", f"Bearer {cmd['token']}"),)
        tag = f"{index}-{os.getpid()}-{cmd['round']}"
        n, t0 = 0, time.perf_counter()
        end = t0 + cmd["seconds"]
        while True:
            call(submit_request(tag, n), metadata=meta, timeout=30, wait_for_ready=True)
            n += 1
            if time.perf_counter() >= end:
                break
        return {"calls": n, "elapsed": time.perf_counter() - t0}
    control_loop(handle)


def echo_main(port: str, reply_bytes: str) -> None:
    import grpc
    reply = b"\n" + b"\0" * (int(reply_bytes) - 1)

    async def echo(_request: bytes, _context: Any) -> bytes:
        return reply

    async def serve() -> None:
        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(echo)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "trainer.v1.TrainerService", {"SubmitRun": handler}),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()
    asyncio.run(serve())


def watchers_main(index: str) -> None:
    """Holds watchers; commands: start (n, since_seq), collect (until seq)."""
    import grpc

    from trainer_api.v1 import trainer_pb2 as pb
    from trainer_api.v1 import trainer_pb2_grpc as pb_grpc

    async def watch(stub: Any, meta: Any, since: int, out: dict[str, Any],
                    started: asyncio.Event, counter: list[int]) -> None:
        call = stub.WatchRuns(pb.WatchRunsRequest(since_seq=since), metadata=meta)
        expect, lat = since + 1, out["lat"]
        async for msg in call:
            out["msgs"] += 1
            if not started.is_set():
                counter[0] += 1
                if counter[0] == out["n"]:
                    started.set()
            now = time.time()
            for ev in msg.events:
                if ev.seq != expect:
                    out["bad"] += 1
                expect = ev.seq + 1
                lat.append(int((now - ev.recorded_at.ToNanoseconds() / 1e9) * 1e6))
            out["last"][id(call)] = expect - 1
            if out["stop"] and expect - 1 >= out["stop"]:
                break
        call.cancel()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        state: dict[str, Any] = {"lat": [], "bad": 0, "last": {}, "stop": 0, "n": 0,
                                 "msgs": 0}
        tasks: list[asyncio.Task[None]] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            cmd = json.loads(line)
            if cmd["op"] == "start":
                channel = grpc.aio.insecure_channel(cmd["addr"])
                stub = pb_grpc.TrainerServiceStub(channel)
                meta = (("authorization", f"Bearer {cmd['token']}"),)
                started, counter = asyncio.Event(), [0]
                state["n"] = cmd["n"]
                tasks = [asyncio.create_task(watch(stub, meta, cmd["since"], state, started,
                                                   counter)) for _ in range(cmd["n"])]
                await asyncio.wait_for(started.wait(), 30)
                reply: dict[str, Any] = {"ok": True}
            else:
                state["stop"] = cmd["until"]
                await asyncio.wait_for(asyncio.gather(*tasks), 60)
                reply = {"lat": state["lat"], "bad": state["bad"], "msgs": state["msgs"],
                         "short": sum(1 for v in state["last"].values() if v < cmd["until"])}
                await channel.close()
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    asyncio.run(main())


def appender_main() -> None:
    """Appends events at a steady rate (submits straight to the registry)."""
    import zmq

    from bus.codec import Envelope, MessageType, decode, encode
    from core.settings import Settings
    settings = Settings.from_env(os.environ)
    ctx = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.LINGER, 0)
    d.connect(settings.registry)

    def handle(cmd: dict[str, Any]) -> dict[str, Any]:
        n, rate, tag = cmd["count"], cmd["rate"], cmd["tag"]
        t0, sent, got = time.perf_counter(), 0, 0
        while got < n:
            due = min(n, int((time.perf_counter() - t0) * rate) + 1)
            while sent < due:
                d.send(encode(Envelope(type=MessageType.REQUEST.value, source="bench", ts=0.0,
                                       id=f"{tag}-{sent}", payload={"method": "submit", "args": {
                                           "config": {"seed": sent, "name": f"{tag}-{sent}"}}})))
                sent += 1
            while got < n and d.poll(0 if sent < n else 10_000):
                reply = decode(d.recv()).payload
                if not reply.get("ok"):
                    raise RuntimeError(f"append failed: {reply}")
                got += 1
            if sent < n:
                wait = t0 + sent / rate - time.perf_counter()
                if wait > 0:
                    d.poll(max(1, math.ceil(wait * 1000)))  # a reply or the next send
        return {"elapsed": time.perf_counter() - t0}
    try:
        control_loop(handle)
    finally:
        d.close(linger=0)
        ctx.destroy(linger=0)


# --- the benchmark ----------------------------------------------------------------

def _gateway(lab: Lab) -> tuple[str, str]:
    from trainer.client import Client, TrainerError
    addr = f"127.0.0.1:{free_port()}"
    lab.env["TRAINER_GATEWAY_ADDR"] = addr
    child = lab.module("services.gateway")
    token_file = lab.path("gateway.token")
    deadline = time.monotonic() + 60
    while True:
        if not child.alive():
            raise RuntimeError(f"the gateway exited: {child.log_tail()}")
        if os.path.exists(token_file):
            with open(token_file, encoding="utf-8") as fh:
                token = fh.read().strip()
            try:
                with Client(addr, token, timeout=1) as c:
                    if c.health().gateway_seq >= 0 and "bus.following" in child.log_tail(10**6):
                        return addr, token
            except TrainerError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError("the gateway did not come up")
        time.sleep(0.05)  # poll interval of a readiness wait


def _pct(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000.0 if values else float("nan")


def run(quick: bool = False) -> list[dict[str, Any]]:
    seconds, repeats = (1.0, 1) if quick else (2.0, 3)
    watch_events = 2000 if quick else 5000
    rows: list[dict[str, Any]] = []
    with Lab("tb-gw-", env={"TRAINER_STATUS_INTERVAL": "0.5"}) as lab:
        lab.start_bus()
        lab.start_registry()
        addr, token = _gateway(lab)
        from trainer.client import Client
        from trainer_api.v1 import trainer_pb2 as pb
        with Client(addr, token) as c:
            sample = c._call("SubmitRun", pb.SubmitRunRequest.FromString(
                submit_request("sample", 0)))
        echo_port = free_port()
        echo = lab.module("bench.bench_gateway", "echo", str(echo_port),
                          str(sample.ByteSize()))
        echo_addr = f"127.0.0.1:{echo_port}"
        clients = [lab.module("bench.bench_gateway", "client", str(i), control=True)
                   for i in range(max(CLIENT_COUNTS))]
        for target in (addr, echo_addr):
            for cl in clients:
                cl.send({"addr": target, "token": token, "seconds": 0.05, "round": "warm"})
            for cl in clients:
                cl.recv()
        rates: dict[tuple[str, int], list[float]] = {}
        for r in range(repeats):
            for count in CLIENT_COUNTS:
                pair = [("ours", addr), ("echo", echo_addr)]
                for name, target in pair if r % 2 == 0 else pair[::-1]:
                    for cl in clients[:count]:
                        cl.send({"addr": target, "token": token, "seconds": seconds,
                                 "round": f"{name}{count}r{r}"})
                    got = [cl.recv() for cl in clients[:count]]
                    rates.setdefault((name, count), []).append(
                        sum(g["calls"] / g["elapsed"] for g in got))
        if not echo.alive():
            raise RuntimeError(f"the echo server died: {echo.log_tail()}")
        for count in CLIENT_COUNTS:
            ours = sorted(rates[("ours", count)])[len(rates[("ours", count)]) // 2]
            base = sorted(rates[("echo", count)])[len(rates[("echo", count)]) // 2]
            ratio = ours / base
            ok = ratio >= SUBMIT_TARGET if count == 8 else None
            rows.append({"name": f"gateway SubmitRun, {count} client{'s' * (count > 1)}",
                         "ours": ours, "baseline": base, "unit": "calls/s", "ratio": ratio,
                         "target": f">= {SUBMIT_TARGET:.0%} of grpc.aio echo"
                         if count == 8 else "-", "ok": ok,
                         "notes": f"median of {repeats} x {seconds:g}s; each call a new run "
                                  f"(gateway -> registry commit); reply {sample.ByteSize()} B"})
        rows += _fanout(lab, addr, token, watch_events)
    return rows


def _fanout(lab: Lab, addr: str, token: str, count: int) -> list[dict[str, Any]]:
    from bus.rpc import RpcClient
    head = RpcClient(lab.ctx, lab.settings.registry, "bench").call("ping")["head_seq"]
    procs = [lab.module("bench.bench_gateway", "watchers", str(i), control=True)
             for i in range(WATCH_PROCS)]
    for p in procs:
        p.send({"op": "start", "addr": addr, "token": token, "since": head,
                "n": WATCHERS // WATCH_PROCS})
    for p in procs:
        p.recv()
    appender = lab.module("bench.bench_gateway", "appender", control=True)
    appender.send({"count": count, "rate": RATE, "tag": "fan"})
    elapsed = appender.recv()["elapsed"]
    for p in procs:
        p.send({"op": "collect", "until": head + count})
    replies = [p.recv() for p in procs]
    lat = [v for r in replies for v in r["lat"]]
    bad = sum(r["bad"] for r in replies) + sum(r["short"] for r in replies)
    expected = WATCHERS * count
    missing = expected - len(lat)
    p50, p99 = _pct(lat, 0.50), _pct(lat, 0.99)
    rate = count / elapsed
    ok = p99 < P99_TARGET_MS and missing == 0 and bad == 0
    msgs = sum(r["msgs"] for r in replies)
    note = (f"{WATCHERS} watchers, {rate:.0f} events/s, {missing} missing, {bad} out of "
            f"order; {len(lat) / max(1, msgs):.1f} events per message")
    return [
        {"name": "gateway WatchRuns fan-out p50", "ours": p50, "baseline": None,
         "unit": "ms", "ratio": None, "target": "-", "ok": None, "notes": note},
        {"name": "gateway WatchRuns fan-out p99", "ours": p99, "baseline": None,
         "unit": "ms", "ratio": None, "target": f"< {P99_TARGET_MS:g} ms, none missing",
         "ok": ok, "notes": note},
    ]


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"client": client_main, "echo": echo_main, "watchers": watchers_main,
     "appender": appender_main}[role](*rest)
