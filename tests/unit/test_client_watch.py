"""Client.watch / AsyncClient.watch reconnecting: a live watch pins its start even when
its first connection fails, and a snapshot cut off is not passed on twice. The stub
is a scripted stand-in (no server): each WatchRuns call yields its messages, then
fails with UNAVAILABLE or ends."""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator, Iterator, Optional

import grpc
import pytest

from trainer.client import AsyncClient, Client
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(20)


class Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the gateway went away"

    def trailing_metadata(self) -> tuple:
        return ()


Script = list[tuple[list[pb.WatchRunsResponse], bool]]   # (messages, then fail?)


class FakeCall:
    def __init__(self, messages: list[pb.WatchRunsResponse], fail: bool) -> None:
        self.messages, self.fail = messages, fail

    def __iter__(self) -> Iterator[pb.WatchRunsResponse]:
        yield from self.messages
        if self.fail:
            raise Unavailable()

    async def _aiter(self) -> AsyncIterator[pb.WatchRunsResponse]:
        for msg in self.messages:
            yield msg
        if self.fail:
            raise Unavailable()

    def __aiter__(self) -> AsyncIterator[pb.WatchRunsResponse]:
        return self._aiter()

    def cancel(self) -> None:
        pass


class FakeStub:
    def __init__(self, script: Script, health: Optional[pb.GetHealthResponse]) -> None:
        self.script = list(script)
        self.health = health
        self.requests: list[pb.WatchRunsRequest] = []
        self.health_calls = 0

    def WatchRuns(self, request: pb.WatchRunsRequest, **kw: Any) -> FakeCall:
        self.requests.append(request)
        return FakeCall(*self.script.pop(0))

    def GetHealth(self, request: pb.GetHealthRequest, **kw: Any) -> pb.GetHealthResponse:
        self.health_calls += 1
        if self.health is None:
            raise Unavailable()
        return self.health


class AsyncFakeStub(FakeStub):
    async def _health(self) -> pb.GetHealthResponse:
        return FakeStub.GetHealth(self, pb.GetHealthRequest())

    def GetHealth(self, request: pb.GetHealthRequest, **kw: Any) -> Any:  # type: ignore
        return self._health()


def health(last_seq: int, registry_alive: bool = True) -> pb.GetHealthResponse:
    return pb.GetHealthResponse(last_seq=last_seq, services=[
        pb.ServiceHealth(name="registry", alive=registry_alive)])


def ev(seq: int, run_id: str) -> pb.RunEvent:
    return pb.RunEvent(seq=seq, run_id=run_id, type="RunWaiting")


def rec(run_id: str, last_seq: int) -> pb.RunRecord:
    return pb.RunRecord(run_id=run_id, last_seq=last_seq)


def sync_watch(script: Script, health_answer: Optional[pb.GetHealthResponse],
               **kw: Any) -> tuple[list[pb.WatchRunsResponse], FakeStub]:
    stub = FakeStub(script, health_answer)
    with Client("127.0.0.1:1", token="t") as c:
        c.stub = stub  # type: ignore[assignment]
        return list(c.watch(**kw)), stub


def async_watch(script: Script, health_answer: Optional[pb.GetHealthResponse],
                **kw: Any) -> tuple[list[pb.WatchRunsResponse], FakeStub]:
    stub = AsyncFakeStub(script, health_answer)

    async def run() -> list[pb.WatchRunsResponse]:
        c = AsyncClient("127.0.0.1:1", token="t")
        c.stub = stub  # type: ignore[assignment]
        try:
            return [m async for m in c.watch(**kw)]
        finally:
            await c.close()
    return asyncio.run(run()), stub


WATCHES = [sync_watch, async_watch]


@pytest.mark.parametrize("watch", WATCHES)
def test_a_live_watch_whose_first_connection_fails_starts_at_the_head(watch: Any) -> None:
    script: Script = [([], True),                                   # fails before any message
                      ([pb.WatchRunsResponse(seq=9, events=[ev(8, "r1"), ev(9, "r1")])], True),
                      ([], False)]
    got, stub = watch(script, health(7))
    first, second, third = stub.requests
    assert not first.HasField("since_seq") and not first.snapshot
    assert second.HasField("since_seq") and second.since_seq == 7  # pinned, not "from now"
    assert third.since_seq == 9
    assert [e.seq for m in got for e in m.events] == [8, 9]


@pytest.mark.parametrize("watch", WATCHES)
def test_a_live_watch_is_pinned_by_its_first_message(watch: Any) -> None:
    # GetHealth says nothing usable (registry down, or the gateway away): the next
    # connection's first message pins the start; it is never guessed.
    for answer in (health(0, registry_alive=False), None):
        script: Script = [([], True), ([pb.WatchRunsResponse(seq=4)], True), ([], False)]
        got, stub = watch(script, answer)
        assert [r.HasField("since_seq") for r in stub.requests] == [False, False, True]
        assert stub.requests[2].since_seq == 4 and stub.health_calls == 1
    _, stub = watch([([], True), ([], False)], health(3), since_seq=2)
    assert stub.health_calls == 0 and stub.requests[1].since_seq == 2


@pytest.mark.parametrize("watch", WATCHES)
def test_a_snapshot_cut_off_is_not_passed_on_twice(watch: Any) -> None:
    script: Script = [
        ([pb.WatchRunsResponse(seq=3, snapshot=[rec("a", 1), rec("b", 2)]),
          pb.WatchRunsResponse(seq=3, events=[ev(4, "b")])], True),       # cut off
        ([pb.WatchRunsResponse(seq=6, snapshot=[rec("a", 1), rec("b", 6), rec("c", 5)]),
          pb.WatchRunsResponse(seq=6, snapshot=[rec("a", 1)]),              # nothing new
          pb.WatchRunsResponse(seq=7, events=[ev(4, "b"), ev(7, "a")]),
          pb.WatchRunsResponse(seq=7, snapshot_complete=True),
          pb.WatchRunsResponse(seq=8, events=[ev(8, "c")])], True),
        ([], False)]
    got, stub = watch(script, health(99), snapshot=True)
    seen: list[tuple[str, str, int]] = []
    for m in got:
        seen += [("rec", r.run_id, r.last_seq) for r in m.snapshot]
        seen += [("ev", e.run_id, e.seq) for e in m.events]
        if m.snapshot_complete:
            seen.append(("complete", "", m.seq))
    assert seen == [("rec", "a", 1), ("rec", "b", 2), ("ev", "b", 4),       # first try
                    ("rec", "b", 6), ("rec", "c", 5), ("ev", "a", 7),       # only what is new
                    ("complete", "", 7), ("ev", "c", 8)]
    assert [(r.snapshot, r.HasField("since_seq")) for r in stub.requests] == \
        [(True, False), (True, False), (False, True)]
    assert stub.requests[2].since_seq == 8 and stub.health_calls == 0
