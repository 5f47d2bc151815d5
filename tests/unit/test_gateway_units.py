"""The gateway's pure parts: core <-> wire mapping (unknown enum values both ways),
the watcher inbox and hub fan-out, request checks, settings, the token file, and the
generated code matching the .proto. No sockets, no processes."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from runtime import logs
from bus.codec import Envelope
from core import events as ev
from core.digest import canonical_json
from core.errors import ValidationError
from core.projection import run_view
from core.runstate import RunStatus, apply
from services.gateway import auth, configcheck, servicer
from services.gateway.buslisten import Item, make_item
from services.gateway.config import GatewayConfig, is_loopback
from services.gateway.errors import CallError
from services.gateway.mapping import EnumMap, Mapper, StatusTracker
from services.gateway.watch import Watcher, WatchHub
from services.gateway.watchsession import encode
from trainer_api.v1 import trainer_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def log_lines() -> io.StringIO:
    stream = io.StringIO()
    logs.configure("INFO", stream)
    yield stream
    logging.getLogger("trainer").handlers[:] = []


# --- enums ---------------------------------------------------------------------------

def test_every_core_status_and_cause_has_a_wire_value() -> None:
    m = Mapper()
    for status in RunStatus:
        assert m.status.to_core(m.status.to_wire(status)) is status
        assert pb.RunStatus.Name(m.status.to_wire(status.value)) == f"RUN_STATUS_{status.name}"
    for cause in ev.TerminalCause:
        assert m.cause.to_core(m.cause.to_wire(cause.value)) is cause


def test_unknown_enum_values_map_to_unspecified_and_are_logged_once(
        log_lines: io.StringIO) -> None:
    m = Mapper(logs.service_logger("gateway"))
    assert m.status.to_wire("PAUSED") == pb.RUN_STATUS_UNSPECIFIED
    assert m.status.to_wire("PAUSED") == pb.RUN_STATUS_UNSPECIFIED
    assert m.cause.to_wire("oom_killed") == pb.TERMINAL_CAUSE_UNSPECIFIED
    assert m.cause.to_wire(["not", "hashable"]) == 0
    assert m.status.to_core(99) is None and m.status.to_core(99) is None
    assert m.status.to_core(0) is None and m.cause.to_wire("") == 0
    lines = [json.loads(line) for line in log_lines.getvalue().splitlines()]
    unknown = [(x["enum"], x["direction"], x["value"]) for x in lines
               if x["event"] == "enum.unknown_value"]
    assert unknown == [("RunStatus", "to_wire", "'PAUSED'"),
                       ("TerminalCause", "to_wire", "'oom_killed'"),
                       ("TerminalCause", "to_wire", "['not', 'hashable']"),
                       ("RunStatus", "to_core", "99")]


def test_unknown_enum_values_logged_are_bounded(log_lines: io.StringIO) -> None:
    from services.gateway.mapping import MAX_LOGGED
    m = Mapper(logs.service_logger("gateway"))
    for i in range(MAX_LOGGED * 5):
        assert m.status.to_wire(f"NEW_{i}") == 0 and m.status.to_core(1000 + i) is None
    assert len(m.status._logged) == MAX_LOGGED and m.status.unlogged == 9 * MAX_LOGGED
    events = [json.loads(line)["event"] for line in log_lines.getvalue().splitlines()]
    assert events.count("enum.unknown_value") == MAX_LOGGED
    assert events.count("enum.unknown_values_not_logged") == 1


def test_run_ids_are_exact() -> None:
    from core.ids import is_run_id
    from services.gateway.runfiles import check_run_id
    assert is_run_id("r0123456789ab") and check_run_id("r0123456789ab") == "r0123456789ab"
    for bad in ("r0123456789ab\n", "r0123456789ab\n\n", "\nr0123456789ab", "r0123456789AB",
                "r0123456789abc", " r0123456789ab", None, 12):
        assert not is_run_id(bad), repr(bad)
    with pytest.raises(CallError) as err:
        check_run_id("r0123456789ab\n")
    assert err.value.field == "run_id" and err.value.code.name == "INVALID_ARGUMENT"


def test_a_record_from_a_newer_server_reads_unknown_numbers_safely() -> None:
    raw = pb.RunRecord(run_id="r0123456789ab", status=42, cause=77).SerializeToString()
    rec = pb.RunRecord.FromString(raw)
    assert rec.status == 42 and Mapper().status.to_core(rec.status) is None


# --- records and events ----------------------------------------------------------------

def _state() -> object:
    s = apply(None, ev.RunSubmitted("r0123456789ab", "d" * 64, {"name": "n", "tags": ["a"]},
                                    3, "me"), 1, 100.5)
    s = apply(s, ev.GpusClaimed("r0123456789ab", ("GPU-1",), "disp"), 2, 101.0)
    s = apply(s, ev.RunStarted("r0123456789ab", 77, 1.0, "host"), 3, 102.0)
    return apply(s, ev.RunFailed("r0123456789ab", "signal", None, 9, "killed"), 4, 103.25)


def test_run_record_carries_every_field() -> None:
    view = run_view(_state())
    hb = pb.Heartbeat(step=5)
    rec = Mapper().run_record(view, hb)
    assert (rec.run_id, rec.status, rec.cause) == ("r0123456789ab", pb.RUN_STATUS_FAILED,
                                                   pb.TERMINAL_CAUSE_SIGNAL)
    assert rec.signal == 9 and not rec.HasField("exit_code") and rec.pid == 77
    assert list(rec.gpus) == ["GPU-1"] and rec.gpus_held and rec.host == "host"
    assert rec.submitted_at.ToNanoseconds() == 100_500_000_000
    assert rec.finished_at.ToNanoseconds() == 103_250_000_000
    assert (rec.last_seq, rec.priority, rec.name, list(rec.tags)) == (4, 3, "n", ["a"])
    assert json.loads(rec.config_json) == {"name": "n", "tags": ["a"]}
    assert rec.message == "killed" and rec.last_heartbeat.step == 5


def test_event_items_concatenate_into_one_message() -> None:
    m, tracker = Mapper(), StatusTracker()
    envs = [Envelope(type="RunSubmitted", source="registry", ts=10.0 + i, seq=i + 1,
                     stream=f"run-r00000000000{i}", stream_version=1, schema=2,
                     payload={"config": {"seed": i}, "priority": 0})
            for i in range(3)]
    items = [make_item(m, e, tracker) for e in envs]
    msg = pb.WatchRunsResponse.FromString(encode(items, 3))
    assert msg.seq == 3 and [e.seq for e in msg.events] == [1, 2, 3]
    assert msg.events[2].payload["config"]["seed"] == 2
    assert msg.events[0].status == pb.RUN_STATUS_PENDING
    assert msg.events[1].recorded_at.seconds == 11


def test_status_tracker_knows_self_loops_of_runs_it_has_seen() -> None:
    t = StatusTracker(capacity=2)
    assert t.after("a", "CancelRequested") is None            # never seen: unknown
    assert t.after("a", "RunSubmitted") == "PENDING"
    assert t.after("a", "CancelRequested") == "PENDING"
    assert t.after("a", "RunCancelled") == "CANCELLED"
    assert t.after("a", "GpusReleased") == "CANCELLED"
    t.after("b", "RunSubmitted")
    t.after("c", "RunSubmitted")                               # evicts "a"
    assert t.after("a", "ArtifactRegistered") is None


# --- the hub ---------------------------------------------------------------------------

def _items(first: int, n: int, run: str = "r000000000001", size: int = 10) -> list[Item]:
    return [Item(s, run, "RunWaiting", "PENDING", data=b"x" * size)
            for s in range(first, first + n)]


def test_watcher_inbox_batches_filters_and_tracks_its_position() -> None:
    w = Watcher("peer", frozenset({"r000000000002"}), 0, limit=10)
    w.live = True
    assert w.offer(_items(1, 3), 3)                            # none match: position only
    assert w.offer(_items(4, 2, "r000000000002"), 5)
    assert w.offer(_items(6, 2), 7)
    items, upto = w.take()
    assert [i.seq for i in items] == [4, 5] and upto == 7
    assert w.offer(_items(3, 5), 7)                            # already offered: ignored
    assert not w.inbox


def test_take_splits_large_batches_by_bytes() -> None:
    w = Watcher("peer", frozenset(), 0, limit=100)
    w.offer(_items(1, 5, size=400_000), 5)
    first, upto = w.take()
    assert [i.seq for i in first] == [1, 2] and upto == 2
    rest, upto = w.take()
    assert [i.seq for i in rest] == [3, 4] and upto == 4
    last, upto = w.take()
    assert [i.seq for i in last] == [5] and upto == 5 and w.queued == 0 == w.queued_bytes


def test_a_full_inbox_switches_only_that_watcher_to_catch_up(log_lines: io.StringIO) -> None:
    async def scenario() -> None:
        hub = WatchHub(logs.service_logger("gateway"))
        hub.deliver([], 0)
        slow, fast = Watcher("slow-peer", frozenset(), 0, 4), Watcher("fast", frozenset(), 0, 4)
        assert hub.try_live(slow) and hub.try_live(fast)
        hub.deliver(_items(1, 3), 3)
        fast.take()
        hub.deliver(_items(4, 3), 6)                           # slow would hold 6 > 4
        assert not slow.live and slow.lagging and hub.live == {fast}
        # Nothing is kept for it (a stalled client must not hold memory): 1..6 come
        # from the registry, after its position, when it reads again.
        assert not slow.inbox and slow.queued == slow.queued_bytes == 0
        assert slow.position == 0
        slow.position = 3
        assert not hub.try_live(slow)                          # behind the hub: catch up
        slow.position = 6
        assert hub.try_live(slow) and slow.offered == 6
        hub.deliver(_items(7, 1), 7)
        assert [i.seq for i in slow.take()[0]] == [7]
    asyncio.run(scenario())
    line = next(json.loads(x) for x in log_lines.getvalue().splitlines() if "lagging" in x)
    assert line["peer"] == "slow-peer" and line["behind"] == 6 and line["level"] == "WARNING"


# --- request checks, settings, token ----------------------------------------------------

def test_config_checks() -> None:
    req = pb.SubmitRunRequest()
    req.config.update({"seed": 3, "hyperparameters": {"lr": 0.5, "layers": [64.0, 64]}})
    assert configcheck.config_of(req) == {"seed": 3, "hyperparameters": {"lr": 0.5,
                                                                    "layers": [64, 64]}}
    with pytest.raises(CallError) as missing:
        configcheck.config_of(pb.SubmitRunRequest())
    assert missing.value.field == "config"
    big = pb.SubmitRunRequest(config_json=json.dumps({"name": "x" * 70_000}))
    with pytest.raises(CallError) as too_big:
        configcheck.config_of(big)
    assert too_big.value.code.name == "RESOURCE_EXHAUSTED"
    assert len(canonical_json({"name": "x" * 65_000}).encode()) > 65_000
    nan = pb.SubmitRunRequest()
    nan.config.update({"hyperparameters": {"a": [{"b": float("nan")}]}})
    for bad, field in ((nan, "hyperparameters.a[0].b"),
                       (pb.SubmitRunRequest(config_json='{"seed": 18446744073709551616}'),
                        "seed"),
                       (pb.SubmitRunRequest(config_json='{"x": [-Infinity]}'), "x[0]")):
        with pytest.raises(CallError) as refused:
            configcheck.config_of(bad)
        assert (refused.value.code.name, refused.value.field) == ("INVALID_ARGUMENT", field)
    assert servicer._decode_token(servicer._encode_token(42)) == 42
    for bad in ("x", servicer._encode_token(0), "djI6NQ"):
        with pytest.raises(CallError):
            servicer._decode_token(bad)


def test_gateway_settings() -> None:
    cfg = GatewayConfig.from_env({})
    assert cfg.addr == "127.0.0.1:50055" and not cfg.tls and cfg.watch_buffer == 10_000
    assert GatewayConfig.from_env({"TRAINER_GATEWAY_WORKERS": "4"}).workers == 4
    for env in ({"TRAINER_GATEWAY_WORKERS": "0"}, {"TRAINER_GATEWAY_ADDR": "nohost"},
                {"TRAINER_GATEWAY_TLS_CERT": "/c.pem"}):
        with pytest.raises(ValidationError):
            GatewayConfig.from_env(env)
    assert is_loopback("127.0.0.1:1") and is_loopback("localhost:1") and is_loopback("[::1]:1")
    assert not is_loopback("0.0.0.0:1") and not is_loopback("[::]:1")
    assert not is_loopback("myhost:1") and not is_loopback("10.0.0.1:1")


def test_every_gateway_setting_is_documented_with_its_default() -> None:
    from services.gateway.config import GATEWAY_SETTINGS
    text = (ROOT / "docs/API.md").read_text(encoding="utf-8")
    missing = [env for _, env, default, _, _ in GATEWAY_SETTINGS
               if not any(line.startswith(f"| `{env}` |") and
                          (not default or f"`{default}`" in line)
                          for line in text.splitlines())]
    assert not missing, f"docs/API.md, section Settings: {missing}"
    rpcs = pb.DESCRIPTOR.services_by_name["TrainerService"].methods
    assert all(f"### {m.name}" in text for m in rpcs)
    assert all(f"trainer.v1.TrainerService/{m.name}" in text for m in rpcs)


def test_token_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    token, created = auth.load_or_create(home)
    assert created and len(token) >= 40
    assert stat.S_IMODE(os.stat(auth.token_path(home)).st_mode) == 0o600
    assert auth.load_or_create(home) == (token, False)
    assert auth.load_or_create(home, env_token=" given ") == ("given", False)
    with pytest.raises(auth.TokenError):
        auth.load_or_create(str(tmp_path / "other"), create=False)
    assert auth.bearer_ok([("authorization", f"Bearer {token}")], token)
    assert not auth.bearer_ok([("authorization", "Bearer nope")], token)
    assert not auth.bearer_ok([], token)
    os.chmod(auth.token_path(home), 0o644)
    assert auth.too_open(home)


def test_generated_code_matches_the_proto(tmp_path: Path) -> None:
    """The committed trainer_api/v1 code was generated from the committed .proto (compared
    as descriptors, so another protoc version does not matter)."""
    import importlib.resources

    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    out = tmp_path / "set.pb"
    rc = protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{include}",
                      f"--descriptor_set_out={out}", str(ROOT / "proto/trainer/v1/trainer.proto")])
    assert rc == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    messages = list(fresh.message_type)
    while messages:                      # protoc adds json_name; the gencode leaves it out
        m = messages.pop()
        messages.extend(m.nested_type)
        for f in m.field:
            f.ClearField("json_name")
    committed = descriptor_pb2.FileDescriptorProto.FromString(pb.DESCRIPTOR.serialized_pb)
    assert fresh == committed, "trainer_api/v1/trainer_pb2.py is stale: python scripts/gen_proto.py"
    from trainer_api.v1 import trainer_pb2_grpc
    stub_methods = {name for name in dir(trainer_pb2_grpc.TrainerServiceServicer)
                    if not name.startswith("_")}
    assert stub_methods == {m.name for m in fresh.service[0].method}


def test_every_enum_starts_with_unspecified_zero() -> None:
    for enum in pb.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED")
    assert EnumMap  # the mapper is generic over any such pair


def test_a_dispatcher_s_launcher_problem_is_its_health_note() -> None:
    import time

    from services.gateway.health import Health
    health = Health.__new__(Health)
    now = time.time()
    problem = "SLURM: squeue failing for 12s (3 times): squeue did not answer"
    row = health._service("dispatcher", ({"interval": 2.0, "counters": {
        "launcher_problem": problem}}, now), now, None, "")
    assert row.alive and row.error == problem
    fine = health._service("dispatcher", ({"interval": 2.0, "counters": {
        "launcher_problem": ""}}, now), now, None, "")
    assert fine.alive and fine.error == ""
