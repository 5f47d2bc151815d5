"""WatchRuns never loses or repeats an event: snapshot + events, resume by since_seq
across a gateway SIGKILL and a registry SIGKILL, and a stalled watcher that neither
delays a healthy one nor loses anything once it reads again."""

from __future__ import annotations

import threading
import time
from typing import Any, Iterator

import grpc
import pytest

from tests.system.stack import Stack, submit_many
from tests.helpers import wait_until
from tests.system.gateway import CONFIG, Gateway, rpc_error
from trainer.client import Client
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)


class Collector:
    """Reads a watch in a thread and keeps every event's seq (and receipt time)."""

    def __init__(self, messages: Iterator[pb.WatchRunsResponse]) -> None:
        self.messages = messages
        self.seqs: list[int] = []
        self.latency: list[float] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for msg in self.messages:
                now = time.time()
                for ev in msg.events:
                    self.seqs.append(ev.seq)
                    self.latency.append(now - ev.recorded_at.ToNanoseconds() / 1e9)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                self.error = exc
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def until(self, seq: int, timeout: float = 20) -> None:
        wait_until(lambda: self.error is None and self.seqs and self.seqs[-1] >= seq or
                   self.error, timeout, message=f"events up to seq {seq} (have "
                   f"{self.seqs[-1:] or 'none'})")
        assert self.error is None, self.error


def events_until(call: Any, seq: int) -> list[int]:
    out: list[int] = []
    for msg in call:
        out += [e.seq for e in msg.events]
        if msg.seq >= seq:
            return out
    raise AssertionError("the stream ended")  # pragma: no cover


def test_snapshot_then_every_later_event(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    ids = [c.submit({**CONFIG, "seed": i}).run.run_id for i in range(3)]
    c.cancel(ids[1], reason="x")                       # seqs 4, 5
    call = gateway.stub().WatchRuns(pb.WatchRunsRequest(snapshot=True), metadata=gateway.auth)
    runs: dict[str, pb.RunRecord] = {}
    for msg in call:
        runs.update((r.run_id, r) for r in msg.snapshot)
        if msg.snapshot_complete:
            assert msg.seq == 5
            break
    assert sorted(runs) == sorted(ids)
    assert runs[ids[1]].status == pb.RUN_STATUS_CANCELLED
    assert runs[ids[0]].status == pb.RUN_STATUS_PENDING
    new = c.submit({**CONFIG, "seed": 10}).run.run_id
    msg = next(m for m in call if m.events)
    assert [(e.seq, e.run_id, e.type, e.status) for e in msg.events] == \
        [(6, new, "RunSubmitted", pb.RUN_STATUS_PENDING)]
    assert msg.events[0].payload["config"]["seed"] == 10
    call.cancel()
    one = gateway.stub().WatchRuns(pb.WatchRunsRequest(snapshot=True, run_ids=[ids[2]]),
                                   metadata=gateway.auth)
    first = next(one)
    assert [r.run_id for r in first.snapshot] == [ids[2]]
    c.cancel(ids[2])
    c.cancel(ids[0])
    got = []
    for msg in one:
        got += [(e.type, e.run_id) for e in msg.events]
        if len(got) >= 2:
            break
    assert got == [("CancelRequested", ids[2]), ("RunCancelled", ids[2])]
    one.cancel()


def test_resume_after_gateway_and_registry_sigkill_is_exact(gateway: Gateway,
                                                            stack: Stack) -> None:
    watcher = Client(gateway.addr, gateway.token)
    gateway.clients.append(watcher)
    auto = Collector(watcher.watch(since_seq=0))       # reconnects by itself
    call = gateway.stub().WatchRuns(pb.WatchRunsRequest(since_seq=0), metadata=gateway.auth)
    submit_many(stack, 5, 0)
    assert events_until(call, 5) == [1, 2, 3, 4, 5]
    auto.until(5)
    gateway.proc.kill9()
    submit_many(stack, 5, 100)                          # seqs 6..10, no gateway
    gateway.start()
    resumed = gateway.stub().WatchRuns(pb.WatchRunsRequest(since_seq=5),
                                       metadata=gateway.auth)
    assert events_until(resumed, 10) == [6, 7, 8, 9, 10]
    stack.registry.kill9()
    stack.start_registry()
    submit_many(stack, 5, 200)                          # seqs 11..15, a new registry
    assert events_until(resumed, 15) == [11, 12, 13, 14, 15]
    auto.until(15)
    assert auto.seqs == list(range(1, 16))
    resumed.cancel()


def test_stalled_watcher_does_not_delay_others_and_loses_nothing(stack: Stack) -> None:
    gw = Gateway(stack, {"TRAINER_GATEWAY_WATCH_BUFFER": "50",
                         "TRAINER_GATEWAY_MAX_WATCHERS": "2"})
    try:
        gw.start()
        stalled = gw.stub().WatchRuns(pb.WatchRunsRequest(), metadata=gw.auth)
        start = next(stalled).seq                     # then it stops reading
        healthy = Collector(gw.client().watch(since_seq=start))
        n = 250
        t0 = time.time()
        submit_many(stack, n, 0, blob=60_000)         # 15 MB: more than gRPC buffers
        healthy.until(start + n)
        done = time.time()
        assert healthy.seqs == list(range(start + 1, start + n + 1))
        assert max(healthy.latency) < 5.0 and done - t0 < 30
        third = rpc_error(next, gw.client().watch(resume=False))   # 2 streams at most
        assert (third.code, third.field) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "streams")
        wait_until(lambda: '"watch.lagging"' in gw.log(), 10, message="the lagging warning")
        got: list[int] = []
        for msg in stalled:                            # read again: catch-up, then live
            got += [e.seq for e in msg.events]
            if msg.seq >= start + n:
                break
        assert got == list(range(start + 1, start + n + 1))
        submit_many(stack, 1, 10_000)
        assert [e.seq for e in next(m for m in stalled if m.events).events] == [start + n + 1]
        wait_until(lambda: '"watch.resumed"' in gw.log(), 10, message="the resumed log line")
        lag = next(line for line in gw.log().splitlines() if '"watch.lagging"' in line)
        assert '"peer"' in lag and '"behind"' in lag
        stalled.cancel()
    finally:
        gw.close()
