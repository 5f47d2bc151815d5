"""StreamLogs: a run's stdout/stderr by byte offset; with follow, the stream ends right
after the last bytes once the run is terminal (a fake run folder, the run finished
through the registry directly)."""

from __future__ import annotations

import os
import threading

import grpc
import pytest

from tests.system.stack import Stack
from tests.helpers import wait_until
from tests.system.gateway import CONFIG, Gateway, rpc_error
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)


def append(path: str, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def test_follow_ends_after_the_final_bytes(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    run_id = c.submit(CONFIG).run.run_id
    folder = os.path.join(stack.settings.runs_dir, run_id)
    os.makedirs(folder, exist_ok=True)
    out = os.path.join(folder, "stdout.log")
    append(out, b"hello\n")
    chunks: list[pb.LogChunk] = []
    done = threading.Event()

    def follow() -> None:
        for chunk in c.logs(run_id, "stdout", follow=True):
            chunks.append(chunk)
        done.set()
    threading.Thread(target=follow, daemon=True).start()
    wait_until(lambda: chunks, 10, message="the first chunk")
    append(out, b"world\n")
    wait_until(lambda: sum(len(ch.data) for ch in chunks) == 12, 10, message="the 2nd write")
    reg = stack.client()
    reg.call("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "test"})
    reg.call("record_started", {"run_id": run_id, "pid": 4242, "pid_start_time": 1.0})
    append(out, b"last words\n" * 10_000)          # more than one chunk
    reg.call("finish", {"run_id": run_id, "outcome": "completed", "exit_code": 0})
    assert done.wait(20), "the followed stream did not end"
    data = b"".join(ch.data for ch in chunks)
    assert data == b"hello\nworld\n" + b"last words\n" * 10_000
    assert chunks[-1].eof and not chunks[-1].data and chunks[-1].offset == len(data)
    offsets = [ch.offset for ch in chunks]
    assert offsets == sorted(offsets) and all(
        a.offset + len(a.data) == b.offset for a, b in zip(chunks, chunks[1:]))
    # resumable from any offset; the run has ended, so it ends at once with eof
    tail = list(c.logs(run_id, "stdout", offset=len(data) - 11, follow=True))
    assert b"".join(ch.data for ch in tail) == b"last words\n" and tail[-1].eof


def test_logs_without_follow_and_errors(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    run_id = c.submit(CONFIG).run.run_id
    folder = os.path.join(stack.settings.runs_dir, run_id)
    assert list(c.logs(run_id, "stderr")) == []    # no folder yet: nothing, no error
    os.makedirs(folder, exist_ok=True)
    append(os.path.join(folder, "stderr.log"), b"oops\n")
    got = list(c.logs(run_id, "stderr", offset=1))
    assert [(ch.offset, ch.data, ch.eof) for ch in got] == [(1, b"ops\n", False)]
    assert rpc_error(lambda: list(c.logs("r000000000000"))).code == grpc.StatusCode.NOT_FOUND
    assert rpc_error(lambda: list(c.logs(run_id, 7))).field == "stream"  # unknown enum
    assert rpc_error(lambda: list(c.logs(run_id, offset=-1))).field == "offset"
    assert rpc_error(lambda: list(c.logs("../etc"))).field == "run_id"
