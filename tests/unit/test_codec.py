"""The envelope codec: round trips of every event type, strict decoding, fuzzing."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bus import codec
from core.events import EVENT_TYPES
from tests.unit.test_envs import ENV_SAMPLES
from tests.unit.test_registry_experiments import EXPERIMENT_SAMPLES
from tests.unit.test_runstate import SAMPLES as RUN_SAMPLES

SAMPLES = {**RUN_SAMPLES, **ENV_SAMPLES, **EXPERIMENT_SAMPLES}


@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_type_round_trips(type_name: str) -> None:
    event = SAMPLES[type_name]
    env = codec.event_envelope(event, seq=9, stream="run-r1", stream_version=3,
                               source="registry", ts=12.5)
    decoded = codec.decode(codec.encode(env))
    assert decoded == env
    assert codec.event_from_envelope(decoded) == event


def test_message_round_trip_with_topic() -> None:
    env = codec.Envelope(type="ServiceStatus", source="bus", ts=1.0, payload={"x": [1, 2]})
    topic, back = codec.decode_message([b"status.bus", codec.encode(env)])
    assert topic == "status.bus" and back == env


@pytest.mark.parametrize(("frame", "error"), [
    (b"", codec.FrameMalformed),
    (b"\xc1", codec.FrameMalformed),
    (msgpack.packb([1, 2]), codec.FrameMalformed),
    (msgpack.packb({"v": 1, "type": "Nope", "source": "x", "ts": 1.0, "payload": {}}),
     codec.UnknownMessageType),
    (msgpack.packb({"v": 2, "type": "Heartbeat", "source": "x", "ts": 1.0, "payload": {}}),
     codec.UnsupportedFormat),
    (msgpack.packb({"v": 1, "type": "Heartbeat", "source": "x", "ts": "soon", "payload": {}}),
     codec.FrameMalformed),
    (msgpack.packb({"v": 1, "type": "Heartbeat", "source": "x", "ts": 1.0, "payload": {},
                    "seq": "7"}), codec.FrameMalformed),
    *[(msgpack.packb({"v": 1, "type": "Heartbeat", "source": "x", "ts": ts, "payload": {}}),
       codec.FrameMalformed) for ts in (float("nan"), float("inf"), float("-inf"))],
    (msgpack.packb({"v": 1, "type": "Heartbeat", "source": "x", "ts": 1.0,
                    "payload": msgpack.ExtType(5, b"xx")}), codec.FrameMalformed),
    (codec.encode(codec.Envelope("Heartbeat", "x", 1.0))[:-3], codec.FrameMalformed),
    (codec.encode(codec.Envelope("Heartbeat", "x", 1.0)) + b"\x00", codec.FrameMalformed),
])
def test_bad_frames_raise_typed_errors(frame: bytes, error: type) -> None:
    with pytest.raises(error):
        codec.decode(frame)


def test_oversized_frame_is_refused_before_decoding() -> None:
    with pytest.raises(codec.FrameTooLarge):
        codec.decode(b"\x00" * 101, max_bytes=100)


def test_bad_event_payload_names_the_field() -> None:
    env = codec.Envelope(type="RunStarted", source="x", ts=1.0,
                         payload={"run_id": "r1", "pid": "12", "pid_start_time": 1.0,
                                  "host": "h"}, seq=1, schema=1)
    with pytest.raises(codec.FrameMalformed) as err:
        codec.event_from_envelope(env)
    assert err.value.details["field"] == "pid"


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_only_ever_raise_frame_errors(data: bytes) -> None:
    try:
        env = codec.decode(data)
    except codec.FrameError:
        return
    assert env.type in codec.MESSAGE_TYPES


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.sampled_from(["v", "type", "source", "ts", "payload", "seq", "id",
                                        "stream", "schema", "stream_version", "junk"]),
                       _values | st.sampled_from(["RunStarted", "Heartbeat", 1]), max_size=9))
def test_random_envelope_maps_only_ever_raise_frame_errors(obj: dict) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    try:
        env = codec.decode(data)
    except codec.FrameError:
        return
    if env.type in EVENT_TYPES:
        try:
            codec.event_from_envelope(env)
        except codec.FrameError:
            pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=4))
def test_random_multipart_messages_only_ever_raise_frame_errors(frames: list[bytes]) -> None:
    try:
        codec.decode_message(frames)
    except codec.FrameError:
        pass
