"""ListArtifacts and ListRuns pages, through a plain gRPC channel with the default
4 MiB receive limit (what grpcurl and most clients have): however large the items,
every answer fits it, and following next_page_token yields every item exactly once.
Before, ListArtifacts had no paging at all: a run whose artifacts carried more than
4 MiB of meta could not be listed (RESOURCE_EXHAUSTED on the client)."""

from __future__ import annotations

import grpc
import pytest

from tests.system.stack import Stack
from tests.system.gateway import CONFIG, Gateway, rpc_error
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(90)

LIMIT = 4 * 1024 * 1024   # gRPC's default receive limit


def _register(stack: Stack, run_id: str, count: int, meta_bytes: int) -> None:
    reg = stack.client()
    reg.call("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "test"})
    calls = [("register_artifact", {"run_id": run_id, "kind": "video" if n % 3 == 0 else
                                    "checkpoint", "path": f"a/{n:04d}.bin", "size": n,
                                    "meta": {"blob": "m" * meta_bytes, "n": n}})
             for n in range(count)]
    for i in range(0, count, 50):
        for reply in reg.call_many(calls[i:i + 50]):
            assert not isinstance(reply, Exception), reply


def test_artifact_pages_fit_the_default_grpc_limit(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    run_id = c.submit(CONFIG).run.run_id
    _register(stack, run_id, 300, 15_000)   # ~4.5 MB of meta
    stub = gateway.stub()                   # a default channel: 4 MiB receive limit
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListArtifacts(pb.ListArtifactsRequest(run_id=run_id, page_token=token),
                                  metadata=gateway.auth, timeout=20)
        assert page.ByteSize() < LIMIT
        pages += 1
        seen += [int(a.meta["n"]) for a in page.artifacts]
        token = page.next_page_token
        if not token:
            break
    assert seen == list(range(300)) and pages >= 2

    videos, token = [], ""
    while True:
        page = stub.ListArtifacts(pb.ListArtifactsRequest(
            run_id=run_id, kind="video", page_size=7, page_token=token),
            metadata=gateway.auth, timeout=20)
        assert len(page.artifacts) <= 7 and {a.kind for a in page.artifacts} <= {"video"}
        videos += [a.path for a in page.artifacts]
        token = page.next_page_token
        if not token:
            break
    assert videos == [f"a/{n:04d}.bin" for n in range(0, 300, 3)]
    # The client library pages by itself.
    assert [a.path for a in c.artifacts(run_id)] == [f"a/{n:04d}.bin" for n in range(300)]
    assert len(c.artifacts(run_id, kind="video")) == 100

    err = rpc_error(c._call, "ListArtifacts",
                    pb.ListArtifactsRequest(run_id=run_id, page_size=1001))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.field == "page_size"
    runs_token = c.list(page_size=1).next_page_token or "djE6OQ"   # a ListRuns token
    err = rpc_error(c._call, "ListArtifacts",
                    pb.ListArtifactsRequest(run_id=run_id, page_token=runs_token))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.field == "page_token"


def test_run_pages_fit_the_default_grpc_limit(gateway: Gateway) -> None:
    c = gateway.client()
    blob = "x" * 60_000   # configs near their 64 KiB limit
    ids = [c.submit({**CONFIG, "seed": n, "hyperparameters": {"blob": blob}}).run.run_id
           for n in range(70)]   # ~4.2 MB of configs
    stub = gateway.stub()
    seen, token, pages = [], "", 0
    while True:
        page = stub.ListRuns(pb.ListRunsRequest(page_size=1000, page_token=token),
                             metadata=gateway.auth, timeout=20)
        assert page.ByteSize() < LIMIT and page.total_size == 70
        pages += 1
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1] and pages >= 2
