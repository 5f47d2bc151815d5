"""A gateway restart ends every open stream with UNAVAILABLE (docs/API.md: retry),
never INTERNAL; and a retrying watch flows again soon after the gateway is back."""

from __future__ import annotations

import threading
from typing import Any

import grpc
import pytest

from tests.conftest import Stack
from tests.helpers import wait_until
from tests.integration.test_gateway import Gateway
from tests.integration.test_gateway_watch import submit_many
from trainer.v1 import trainer_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


class Ended:
    """Reads a stream in a thread; keeps how it ended."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.messages = 0
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for _ in self.call:
                self.messages += 1
            self.code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            self.code, self.details = exc.code(), exc.details() or ""


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_a_restart_ends_every_stream_unavailable(stack: Stack, how: str) -> None:
    submit_many(stack, 3000, 0)  # enough events that catching-up watches are mid-read
    gw = Gateway(stack)
    try:
        gw.start()
        run_id = gw.client().list(page_size=1).runs[0].run_id
        seen: list[tuple[Any, str]] = []
        for _ in range(3):
            stub = gw.stub()
            streams = [Ended(stub.WatchRuns(pb.WatchRunsRequest(), metadata=gw.auth))
                       for _ in range(4)]                              # live
            streams += [Ended(stub.WatchRuns(pb.WatchRunsRequest(since_seq=0),
                                             metadata=gw.auth)) for _ in range(4)]
            streams += [Ended(stub.WatchRuns(pb.WatchRunsRequest(snapshot=True),
                                             metadata=gw.auth)) for _ in range(2)]
            streams.append(Ended(stub.StreamLogs(pb.StreamLogsRequest(run_id=run_id,
                                                                      follow=True),
                                                 metadata=gw.auth)))
            wait_until(lambda: all(s.messages or s.code for s in streams[:-1]), 20,
                       message="every watch to have its first message")
            if how == "sigkill":
                gw.proc.kill9()
            else:
                assert gw.proc.stop() == 0
            for s in streams:
                s.thread.join(15)
                seen.append((s.code, s.details))
            gw.start()
        assert {code for code, _ in seen} == {grpc.StatusCode.UNAVAILABLE}, seen
        if how == "sigterm":  # the gateway said so itself, before grpc's stop cancelled them
            assert all("restarting" in details for _, details in seen), seen
        assert "Traceback" not in gw.log()
    finally:
        gw.close()
