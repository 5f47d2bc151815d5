"""Garbage on every socket, with real processes: malformed, truncated, oversized and
unknown frames on the registry's ROUTER and the broker's PUB side; the services stay
up, log each kind of bad frame once, and the good traffic around it goes through.
(The other fault tests: test_faults.py.)"""

from __future__ import annotations

import json
import socket
from typing import Any

import msgpack
import pytest
import zmq

from bus.codec import MAX_FRAME_BYTES, Envelope, MessageType, decode, encode
from bus.endpoints import MAX_MESSAGE_BYTES, ipc_path
from tests.system.stack import Stack
from tests.helpers import wait_until
from tests.system.faults import CONFIG

# --- 6. malformed frames ------------------------------------------------------------

def _env_map(**fields: Any) -> bytes:
    base: dict[str, Any] = {"v": 1, "type": "Request", "source": "x", "ts": 1.0,
                            "payload": {"method": "ping", "args": {}}}
    base.update(fields)
    return msgpack.packb({k: v for k, v in base.items() if v is not None}, use_bin_type=True)


# (frames, the FrameError class the registry names)
REGISTRY_GARBAGE: list[tuple[list[bytes], str]] = [
    ([b"\xc1" + bytes(range(256))], "FrameMalformed"),                    # not msgpack
    ([b""], "FrameMalformed"),                                            # empty frame
    ([b"a", b"b"], "FrameMalformed"),                                     # two frames
    ([b"\x91" * 200_000 + b"\xc0"], "FrameMalformed"),                    # nested too deep
    ([msgpack.packb([1, 2, 3])], "FrameMalformed"),                       # not a map
    ([msgpack.packb({"hello": "world"})], "FrameMalformed"),              # not an envelope
    ([msgpack.packb(msgpack.ExtType(5, b"x"))], "FrameMalformed"),        # ext type
    ([_env_map(type="LaunchMissiles", id="x1")], "UnknownMessageType"),
    ([_env_map(v=99, id="x2")], "UnsupportedFormat"),
    ([_env_map()], "FrameMalformed"),                                     # Request, no id
    ([_env_map(id="x3", payload={"args": {}})], "FrameMalformed"),        # no method
    ([_env_map(type="Reply", id="x4", payload={"ok": True})], "FrameMalformed"),
    ([b"\x00" * (MAX_FRAME_BYTES + 1)], "FrameTooLarge"),
]


def _rpc(sock: zmq.Socket, rid: str, method: str = "ping") -> tuple[Envelope, list[Envelope]]:
    """The reply to a request sent on ``sock``, and the other replies read before it."""
    sock.send(encode(Envelope(type=MessageType.REQUEST.value, source="t", ts=1.0,
                              payload={"method": method, "args": {}}, id=rid)))
    others = []
    while True:
        assert sock.poll(10_000), "no reply"
        reply = decode(sock.recv())
        if reply.id == rid:
            return reply, others
        others.append(reply)


def _raw_garbage(endpoint: str) -> None:
    """Bytes that are not even ZMTP, straight onto the ipc socket file."""
    path = ipc_path(endpoint)
    assert path is not None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as raw:
        raw.connect(path)
        raw.sendall(b"\xffGET / HTTP/1.1\r\n\r\n" + bytes(range(256)) * 4)


def _registry_status(sub: Any, predicate: Any) -> Any:
    def check() -> Any:
        msg = sub.recv(100)
        if msg is None or msg.topic != "status.registry":
            return None
        counters = msg.envelope.payload["counters"]
        return counters if predicate(counters) else None
    return wait_until(check, 10, message="a registry status message")


@pytest.mark.timeout(60)
def test_request_payloads_nil_args_is_absent_and_bad_fields_are_named(stack: Stack) -> None:
    """docs/BUS.md: ``args`` may be omitted (nil too); a bad ``method``/``args``/
    ``expires_at`` is answered invalid_argument naming the field, never bad_frame."""
    d = stack.socket(zmq.DEALER)
    d.connect(stack.settings.registry)
    cases = [({"method": "ping", "args": None}, None),
             ({"method": "ping"}, None),
             ({"args": {}}, "method"),
             ({"method": None, "args": {}}, "method"),
             ({"method": 5, "args": {}}, "method"),
             ({"method": "", "args": {}}, "method"),
             ({"method": "ping", "args": [1]}, "args"),
             ({"method": "ping", "args": {}, "expires_at": "soon"}, "expires_at")]
    for i, (payload, field) in enumerate(cases):
        d.send(msgpack.packb({"v": 1, "type": "Request", "source": "t", "ts": 1.0,
                              "id": f"p{i}", "payload": payload}, use_bin_type=True))
        assert d.poll(10_000), f"no reply to {payload}"
        reply = decode(d.recv())
        assert reply.id == f"p{i}"
        if field is None:
            assert reply.payload["ok"] is True and reply.payload["result"]["head_seq"] == 0
        else:
            err = reply.payload["error"]
            assert (err["code"], err["details"]["field"]) == ("invalid_argument", field), err
            assert err["message"].startswith(field + ":")
    assert stack.registry.alive()


@pytest.mark.timeout(60)
def test_registry_survives_malformed_requests_and_logs_each_kind_once(stack: Stack) -> None:
    c = stack.client()
    c.call("submit", {"config": CONFIG})
    sub = stack.subscriber("event.")
    identity = b"garbage-sender"
    d = stack.socket(zmq.DEALER)
    d.setsockopt(zmq.IDENTITY, identity)
    d.connect(stack.settings.registry)
    _raw_garbage(stack.settings.registry)
    sent = 0
    for frames, _ in REGISTRY_GARBAGE:
        d.send_multipart(frames)
        sent += 1
    for _ in range(50):
        for frames in ([b"\xc1garbage"], [_env_map(type="Nope", id="y")]):
            d.send_multipart(frames)
            sent += 1
    # Frames of one sender are taken in order: this reply means all of them were read.
    reply, others = _rpc(d, "after-garbage")
    assert reply.payload["ok"] is True
    # A bad request that carries an id is answered with the error (not left to time out).
    assert [(r.id, r.payload["ok"], r.payload["error"]["code"]) for r in others] == \
        [("x3", False, "invalid_argument")]
    assert reply.payload["result"]["head_seq"] == 1
    assert stack.registry.alive()

    counters = _registry_status(sub, lambda k: k["bad_frames"] >= sent)
    assert counters["bad_frames"] == sent and counters["head_seq"] == 1
    lines = [json.loads(line) for line in stack.registry.log().splitlines()
             if '"bus.bad_frame"' in line]
    mine = [x["error"] for x in lines if x.get("sender") == identity.hex()]
    kinds = {kind for _, kind in REGISTRY_GARBAGE}
    assert sorted(mine) == sorted(kinds), mine  # once per (sender, kind), not per frame

    # A message over the socket's limit: libzmq drops the sender's connection before
    # buffering it (a multi-GB frame never fills the registry's memory).
    huge = stack.socket(zmq.DEALER)
    huge.setsockopt(zmq.IDENTITY, b"huge-sender")
    monitor = huge.get_monitor_socket(zmq.EVENT_DISCONNECTED)
    huge.connect(stack.settings.registry)
    huge.send(b"\x00" * (MAX_MESSAGE_BYTES + 1))
    assert wait_until(lambda: monitor.poll(100) and monitor.recv_multipart(), 10,
                      message="the registry dropping the oversized sender")
    huge.disable_monitor()
    monitor.close(linger=0)

    # Still a working registry: a new event is committed and published.
    run_id = c.call("submit", {"config": {**CONFIG, "seed": 8}})["run"]["run_id"]
    (event,) = stack.events(sub, 1)
    assert event.seq == 2 and event.stream == f"run-{run_id}"
    assert c.call("ping")["head_seq"] == 2
    assert stack.registry.alive() and "huge-sender" not in stack.registry.log() \
        and b"huge-sender".hex() not in stack.registry.log()


@pytest.mark.timeout(60)
def test_broker_forwards_garbage_without_dying_and_subscribers_skip_it(stack: Stack) -> None:
    sub = stack.subscriber("")  # everything, garbage included
    pub = stack.socket(zmq.PUB)
    pub.connect(stack.settings.bus_pub)
    probe = encode(Envelope(type=MessageType.SERVICE_STATUS.value, source="t", ts=1.0,
                            payload={}))

    def pub_is_live() -> bool:
        pub.send_multipart([b"probe.live", probe])
        msg = sub.recv(50)
        while msg is not None and msg.topic != "probe.live":
            msg = sub.recv(0)
        return msg is not None
    wait_until(pub_is_live, 10, message="the test PUB to reach the subscriber")

    garbage = [
        [b"single-frame"],
        [b"event.x", probe, b"third"],
        [b"event.\xff\xfe", probe],                     # topic not UTF-8
        [b"event.x", b"\xc1\xc1"],                      # envelope not msgpack
        [b"event.x", msgpack.packb({"v": 1})],          # not a full envelope
        [b"event.x", b""],
        [b"t" * 300, probe],                            # topic too long
    ]
    before = sub.bad_frames.total
    for frames in garbage:
        pub.send_multipart(frames)
    pub.send_multipart([b"probe.end", probe])
    up = stack.socket(zmq.XSUB)  # and junk upstream, from the subscriber side
    up.connect(stack.settings.bus_sub)
    for frames in ([b""], [b"\x07junk"], [b"\x01", b"two"], [b"\x00nothing"]):
        up.send_multipart(frames)
    _raw_garbage(stack.settings.bus_pub)
    _raw_garbage(stack.settings.bus_sub)

    def end_seen() -> bool:
        msg = sub.recv(100)
        return msg is not None and msg.topic == "probe.end"
    wait_until(end_seen, 10, message="the message sent after the garbage")
    assert sub.bad_frames.total - before == len(garbage)
    assert stack.bus.alive() and stack.registry.alive()

    c = stack.client()
    c.call("submit", {"config": CONFIG})
    (event,) = stack.events(sub, 1)
    assert event.seq == 1 and event.type == "RunSubmitted"
    # The broker's counters (frames, not messages) count all of it, garbage included.
    sent_frames = sum(len(f) for f in garbage) + 2

    def counted() -> Any:
        m = sub.recv(100)
        if m is None or m.topic != "status.bus":
            return None
        counters = m.envelope.payload["counters"]
        return counters if counters["frames_in"] >= sent_frames else None
    counters = wait_until(counted, 10, message="bus counters that include the garbage")
    assert counters["frames_out"] >= sent_frames and counters["bytes_in"] > 0
    assert stack.bus.alive()
