"""What the gateway does with bad bytes on the wire and values the bus cannot carry
(NaN, infinities, integers beyond msgpack's range), and reflection v1 + v1alpha."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.system.gateway import CONFIG, Gateway, _AddToken, rpc_error
from trainer.client import TrainerError
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)


def struct_submit(gateway: Gateway, config: dict[str, Any]) -> grpc.RpcError:
    req = pb.SubmitRunRequest()
    req.config.update(config)
    with pytest.raises(grpc.RpcError) as info:
        gateway.stub().SubmitRun(req, metadata=gateway.auth, timeout=10)
    return info.value


def test_values_the_registry_cannot_store_are_invalid_argument(gateway: Gateway) -> None:
    nan = struct_submit(gateway, {**CONFIG, "hyperparameters": {"lr": float("nan")}})
    assert nan.code() == grpc.StatusCode.INVALID_ARGUMENT, nan
    err = TrainerError.from_rpc(nan)
    assert err.field == "hyperparameters.lr" and "finite" in err.reason
    inf = struct_submit(gateway, {**CONFIG, "hyperparameters": {"x": [1, float("-inf")]}})
    assert TrainerError.from_rpc(inf).field == "hyperparameters.x[1]"
    c = gateway.client()
    cases = {'{"env": "CartPole-v1", "seed": 18446744073709551616}': "seed",
             '{"env": "CartPole-v1", "hyperparameters": {"a": [{"b": -9223372036854775809}]}}':
             "hyperparameters.a[0].b",
             '{"env": "CartPole-v1", "seed": NaN}': "seed",
             '{"env": "CartPole-v1", "hyperparameters": {"lr": Infinity}}': "hyperparameters.lr",
             '{"env": "CartPole-v1", "hyperparameters": {"lr": 1e400}}': "hyperparameters.lr",
             '{"env": "CartPole-v1", "hyperparameters": ' + "[" * 100_000 + "]" * 100_000 + "}":
             "config_json"}
    for text, field in cases.items():
        bad = rpc_error(c.submit, text)
        assert (bad.code, bad.field) == (grpc.StatusCode.INVALID_ARGUMENT, field), (text[:80], bad)
    # the edges of msgpack's range still go through (and are refused by the config's
    # own rules, as any other big seed: a registry answer, not an internal error)
    edge = rpc_error(c.submit, json.dumps({**CONFIG, "seed": 2**64 - 1}))
    assert edge.code == grpc.StatusCode.INVALID_ARGUMENT and edge.trainer_code == "invalid_argument"
    assert c.submit(json.dumps({**CONFIG, "hyperparameters": {"big": -(2**63)}})).created
    log = gateway.log()
    assert "Traceback" not in log and '"rpc.failed"' not in log


def test_a_body_that_is_not_a_protobuf_message_is_invalid_argument(gateway: Gateway) -> None:
    ch = gateway.channel()
    garbage = b"\xff\xff\xff\xff\x0f"
    for method in ("SubmitRun", "GetRun", "ListRuns"):
        call = ch.unary_unary(f"/trainer.v1.TrainerService/{method}",
                              request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(garbage, metadata=gateway.auth, timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, info.value)
        assert "protobuf" in (info.value.details() or "")
        assert TrainerError.from_rpc(info.value).field == "request"
    for method in ("WatchRuns", "StreamLogs"):
        stream = ch.unary_stream(f"/trainer.v1.TrainerService/{method}",
                                 request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            next(stream(garbage, metadata=gateway.auth, timeout=10))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, info.value)
    health = ch.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None,
                            response_deserializer=None)
    with pytest.raises(grpc.RpcError) as info:
        health(garbage, timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # without the token the answer is still UNAUTHENTICATED (the body is not read)
    with pytest.raises(grpc.RpcError) as info:
        ch.unary_unary("/trainer.v1.TrainerService/GetRun", request_serializer=None,
                       response_deserializer=None)(garbage, timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    # a well-formed call on the same channel still works; nothing was logged as a bug
    ok = ch.unary_unary("/grpc.health.v1.Health/Check",
                        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                        response_deserializer=health_pb2.HealthCheckResponse.FromString)
    assert ok(health_pb2.HealthCheckRequest(), timeout=10).status == \
        health_pb2.HealthCheckResponse.SERVING
    log = gateway.log()
    assert "Traceback" not in log and "Exception deserializing" not in log


@pytest.mark.parametrize("version", ["v1alpha", "v1"])
def test_reflection_v1_and_v1alpha(gateway: Gateway, version: str) -> None:
    from grpc_reflection.v1alpha import reflection_pb2
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)
    channel = grpc.intercept_channel(gateway.channel(), _AddToken(gateway.token))
    db = ProtoReflectionDescriptorDatabase(channel)
    # the same messages on the wire; only the service's name differs
    db._stub.ServerReflectionInfo = channel.stream_stream(
        f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
    services = set(db.get_services())
    assert {"trainer.v1.TrainerService", "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection"} <= services
    methods = {m.name for m in db.FindFileContainingSymbol(
        "trainer.v1.TrainerService").service[0].method}
    assert {"SubmitRun", "WatchRuns", "StreamLogs", "GetHealth"} <= methods
    v1 = db.FindFileContainingSymbol("grpc.reflection.v1.ServerReflection")
    assert v1.package == "grpc.reflection.v1"
    assert {m.name for m in v1.message_type} >= {"ServerReflectionRequest",
                                                 "ServerReflectionResponse"}


def test_documented_edges_request_id_reuse_and_log_offsets(gateway: Gateway) -> None:
    """docs/API.md: a request_id reused with another config answers the first run;
    StreamLogs: a negative offset is INVALID_ARGUMENT, one past the end reads nothing."""
    c = gateway.client()
    first = c.submit({**CONFIG, "seed": 41}, request_id="same")
    other = c.submit({**CONFIG, "seed": 42}, request_id="same")
    assert first.created and other.created  # the first answer, as it was
    assert other.run.run_id == first.run.run_id and c.list().total_size == 1
    run_id = first.run.run_id
    stub = gateway.stub()
    with pytest.raises(grpc.RpcError) as negative:
        list(stub.StreamLogs(pb.StreamLogsRequest(run_id=run_id, offset=-1),
                             metadata=gateway.auth, timeout=10))
    assert TrainerError.from_rpc(negative.value).field == "offset"
    past = pb.StreamLogsRequest(run_id=run_id, offset=10**9)
    assert list(stub.StreamLogs(past, metadata=gateway.auth, timeout=10)) == []
    c.cancel(run_id)
    ended = list(stub.StreamLogs(past, metadata=gateway.auth, timeout=10))
    assert [(m.offset, m.data, m.eof) for m in ended] == [(10**9, b"", True)]
