"""The gateway process (python -m services.gateway) in front of real bus and registry
processes, through real gRPC clients: every RPC's happy path and its error codes,
the token, the standard health and reflection services.

The Gateway helper is in tests/system/gateway.py, the ``gateway`` fixture in
tests/system/conftest.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from core.settings import Settings
from tests.helpers import ServiceProcess, free_port, wait_until
from tests.system.gateway import CONFIG, Gateway, _AddToken, rpc_error
from tests.system.stack import Stack
from trainer.client import Client, TrainerError
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(60)

# --- the happy paths ----------------------------------------------------------------

def test_submit_get_list_cancel(gateway: Gateway) -> None:
    c = gateway.client()
    first = c.submit(CONFIG)
    assert first.created and first.run.status == pb.RUN_STATUS_PENDING
    again = c.submit(dict(reversed(list(CONFIG.items()))))
    assert not again.created and again.run.run_id == first.run.run_id
    run = c.get(first.run.run_id)
    assert run.tags == ["gw", "smoke"] and run.last_seq == 1 and run.submitted_at.seconds > 0
    assert '"seed":1' in run.config_json and run.digest == first.run.digest
    cancelled = c.cancel(run.run_id, reason="not needed", requested_by="me")
    assert cancelled.status == pb.RUN_STATUS_CANCELLED
    assert cancelled.cause == pb.TERMINAL_CAUSE_CANCELLED
    assert (cancelled.cancel_requested_by, cancelled.cancel_reason) == ("me", "not needed")
    assert cancelled.HasField("finished_at") and not cancelled.HasField("exit_code")
    listed = c.list(statuses=[pb.RUN_STATUS_CANCELLED], tag="smoke")
    assert [r.run_id for r in listed.runs] == [run.run_id] and listed.total_size == 1


def test_submit_as_struct_keeps_integers(gateway: Gateway) -> None:
    req = pb.SubmitRunRequest(submitted_by="struct")
    req.config.update({"env": "CartPole-v1", "seed": 5, "steps": 1000})
    got = gateway.stub().SubmitRun(req, metadata=gateway.auth, timeout=10)
    assert got.created and '"seed":5' in got.run.config_json
    assert '"steps":1000' in got.run.config_json and got.run.submitted_by == "struct"


def test_list_pages_newest_first_by_tag_and_status(gateway: Gateway) -> None:
    c = gateway.client()
    ids = [c.submit({**CONFIG, "seed": i, "tags": ["even" if i % 2 else "odd"]}).run.run_id
           for i in range(7)]
    c.cancel(ids[0])
    seen, token = [], ""
    while True:
        page = c.list(page_size=3, page_token=token)
        assert page.total_size == 7
        seen += [r.run_id for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == ids[::-1]
    full = c.list(page_size=1000)  # the documented largest page
    assert [r.run_id for r in full.runs] == ids[::-1] and not full.next_page_token
    assert [r.run_id for r in c.iter_runs(tag="odd", page_size=2)] == ids[::-2]
    pending = c.list(statuses=[pb.RUN_STATUS_PENDING, pb.RUN_STATUS_RUNNING])
    assert [r.run_id for r in pending.runs] == ids[:0:-1]


def test_eight_clients_submitting_the_same_config_get_one_run(gateway: Gateway) -> None:
    clients = [gateway.client() for _ in range(8)]
    barrier = threading.Barrier(8)
    answers: list[pb.SubmitRunResponse] = []

    def submit(c: Client) -> None:
        barrier.wait(10)
        answers.append(c.submit({**CONFIG, "seed": 99}))
    threads = [threading.Thread(target=submit, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert len(answers) == 8
    assert len({a.run.run_id for a in answers}) == 1
    assert sum(a.created for a in answers) == 1
    assert clients[0].list().total_size == 1


def test_artifacts_and_metrics(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    run_id = c.submit(CONFIG).run.run_id
    reg = stack.client()
    reg.call("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "test"})
    reg.call("register_artifact", {"run_id": run_id, "kind": "video", "path": "videos/a.mp4",
                                   "size": 123, "meta": {"episode": 4}})
    arts = c.artifacts(run_id)
    assert [(a.path, a.kind, a.size, dict(a.meta)) for a in arts] == \
        [("videos/a.mp4", "video", 123, {"episode": 4.0})]
    assert c.get(run_id).artifact_count == 1
    folder = os.path.join(stack.settings.runs_dir, run_id)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "metrics.jsonl"), "w", encoding="utf-8") as fh:
        for step in range(5):
            fh.write(f'{{"run_id": "{run_id}", "step": {step}, "ts": 1.5, '
                     f'"values": {{"loss": {step / 10}, "return": {step}}}}}\n')
        fh.write('{"torn": ')
    first = c.metrics(run_id, limit=3, keys=["loss"])
    assert [(p.step, dict(p.values)) for p in first.points] == \
        [(0, {"loss": 0.0}), (1, {"loss": 0.1}), (2, {"loss": 0.2})]
    rest = c.metrics(run_id, offset=first.next_offset)
    assert [p.step for p in rest.points] == [3, 4] and rest.points[0].values["return"] == 3
    assert c.metrics(run_id, offset=rest.next_offset).points == []
    assert rpc_error(c.artifacts, "r0000000000aa").code == grpc.StatusCode.NOT_FOUND


# --- errors ------------------------------------------------------------------------

def test_error_codes_carry_field_and_reason(gateway: Gateway) -> None:
    c = gateway.client()
    bad = rpc_error(c.submit, {**CONFIG, "seed": "seven"})
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT
    assert (bad.field, bad.trainer_code) == ("seed", "invalid_argument")
    assert "seed" in bad.message and "integer" in bad.reason
    assert rpc_error(c.submit, "[1, 2]").field == "config_json"
    assert rpc_error(c.get, "not-a-run").field == "run_id"
    missing = rpc_error(c.get, "r000000000000")
    assert missing.code == grpc.StatusCode.NOT_FOUND and missing.trainer_code == "not_found"
    run_id = c.submit(CONFIG).run.run_id
    c.cancel(run_id)
    late = rpc_error(c.cancel, run_id)
    assert late.code == grpc.StatusCode.FAILED_PRECONDITION and "CANCELLED" in late.message
    assert rpc_error(c.list, page_token="garbage!").field == "page_token"
    assert rpc_error(c.list, page_size=5000).field == "page_size"
    assert rpc_error(c.list, statuses=[99]).field == "statuses"  # unknown enum value
    assert rpc_error(c.metrics, run_id, limit=-1).field == "limit"
    assert rpc_error(c.metrics, "r000000000000").code == grpc.StatusCode.NOT_FOUND
    assert rpc_error(c.cancel, "r000000000000").code == grpc.StatusCode.NOT_FOUND
    assert rpc_error(c.cancel, "r000000000000\n").field == "run_id"
    assert rpc_error(c.cancel, run_id, reason="x" * 1001).field == "reason"
    both = gateway.stub().WatchRuns(pb.WatchRunsRequest(snapshot=True, since_seq=0),
                                    metadata=gateway.auth, timeout=10)
    with pytest.raises(grpc.RpcError) as mixed:
        next(both)
    assert TrainerError.from_rpc(mixed.value).field == "since_seq"
    assert mixed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_id = rpc_error(next, c.watch(run_ids=[run_id, "r1"], resume=False))
    assert (bad_id.code, bad_id.field) == (grpc.StatusCode.INVALID_ARGUMENT, "run_ids")
    ahead = rpc_error(next, c.watch(since_seq=1000, resume=False))
    assert (ahead.code, ahead.field) == (grpc.StatusCode.OUT_OF_RANGE, "since_seq")
    assert "beyond" in ahead.message and not ahead.retryable


def test_oversized_requests_are_resource_exhausted(gateway: Gateway) -> None:
    c = gateway.client()
    big = rpc_error(c.submit, {**CONFIG, "hyperparameters": {"blob": "x" * 70_000}})
    assert big.code == grpc.StatusCode.RESOURCE_EXHAUSTED and big.field == "config"
    assert "65536" in big.message
    huge = rpc_error(c.submit, {**CONFIG, "hyperparameters": {"blob": "x" * 2_000_000}})
    assert huge.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert c.list().total_size == 0


def test_registry_down_is_unavailable_and_deadlines_hold(gateway: Gateway, stack: Stack) -> None:
    c = gateway.client()
    run_id = c.submit(CONFIG).run.run_id
    stack.registry.kill9()
    down = rpc_error(c.get, run_id)
    assert down.code == grpc.StatusCode.UNAVAILABLE and down.retryable
    # A deadline shorter than the gateway's registry wait (2 x 0.5 s): the gateway
    # itself gives up before the deadline and says so (trainer-code and the registry
    # method come from the server; the client's own timer would give neither).
    quick = Client(gateway.addr, gateway.token, timeout=0.6)
    gateway.clients.append(quick)
    for call in (lambda: quick.get(run_id), lambda: quick.submit({**CONFIG, "seed": 2})):
        late = rpc_error(call)
        assert late.code == grpc.StatusCode.DEADLINE_EXCEEDED, late
        assert late.trainer_code == "deadline_exceeded" and "registry" in late.message
    assert rpc_error(c.submit, {**CONFIG, "seed": 3}).code == grpc.StatusCode.UNAVAILABLE
    stack.start_registry()
    assert c.get(run_id).run_id == run_id
    # The submits the callers were told failed were never queued for the new registry.
    assert [r.run_id for r in c.list().runs] == [run_id]


# --- security and standard services -------------------------------------------------

def test_calls_without_the_token_are_refused(gateway: Gateway) -> None:
    for token in ("", "wrong"):
        c = gateway.client(token=token)
        assert rpc_error(c.list).code == grpc.StatusCode.UNAUTHENTICATED
        watch = c.watch(resume=False)
        assert rpc_error(next, watch).code == grpc.StatusCode.UNAUTHENTICATED
    assert oct(os.stat(os.path.join(gateway.stack.settings.home, "gateway.token")).st_mode
               & 0o777) == "0o600"
    # four refusals, one log line: a client polling without its token floods nothing
    assert gateway.log().count('"rpc.unauthenticated"') == 1


def test_standard_health_and_reflection(gateway: Gateway) -> None:
    health = health_pb2_grpc.HealthStub(gateway.channel())
    for service in ("", "trainer.v1.TrainerService"):
        got = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert got.status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase)
    channel = grpc.intercept_channel(gateway.channel(), _AddToken(gateway.token))
    db = ProtoReflectionDescriptorDatabase(channel)
    assert "trainer.v1.TrainerService" in db.get_services()
    methods = {m.name for m in db.FindFileContainingSymbol(
        "trainer.v1.TrainerService").service[0].method}
    assert {"SubmitRun", "WatchRuns", "StreamLogs", "GetHealth"} <= methods


def test_get_health_reports_services_and_the_log(gateway: Gateway) -> None:
    c = gateway.client()
    c.submit(CONFIG)
    # alive can come from the registry's ping before its first status message (which
    # carries the versions) has reached the gateway: wait for both.
    got = wait_until(lambda: (h := c.health()).gateway_seq == 1 and
                     all(s.alive for s in h.services if s.name != "dispatcher") and
                     all(s.versions for s in h.services if s.name in ("bus", "registry"))
                     and h, 10, message="health with every service alive and its versions")
    by_name = {s.name: s for s in got.services}
    assert set(by_name) == {"bus", "registry", "dispatcher", "gateway"}
    assert not by_name["dispatcher"].alive and by_name["dispatcher"].error
    assert by_name["registry"].pid == gateway.stack.registry.pid
    assert by_name["registry"].versions["grpcio"] == grpc.__version__
    assert got.last_seq == 1 and got.db_bytes > 0


def test_non_loopback_address_without_a_token_refuses_to_start(
        service_env: dict[str, str], settings: Settings) -> None:
    env = {**service_env, "TRAINER_GATEWAY_ADDR": f"0.0.0.0:{free_port()}"}
    proc = ServiceProcess("services.gateway", env, os.path.join(settings.home, "gw.log"))
    proc.start()
    assert proc.proc is not None and proc.proc.wait(timeout=30) == 5
    assert "without a provisioned token" in proc.log()
    assert not os.path.exists(os.path.join(settings.home, "gateway.token"))


def test_tls_when_a_certificate_is_configured(stack: Stack, tmp_path: Any) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    gw = Gateway(stack, {"TRAINER_GATEWAY_TLS_CERT": cert, "TRAINER_GATEWAY_TLS_KEY": key})
    try:
        gw.start(tls_ca=cert)
        secure = gw.client(tls_ca=cert)
        assert secure.submit(CONFIG).created
        plain = gw.client(tls_ca="")
        assert rpc_error(plain.list).code == grpc.StatusCode.UNAVAILABLE
    finally:
        gw.close()
