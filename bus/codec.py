"""The envelope codec: the only module that imports msgpack.

Wire format of every bus message (docs/BUS.md has the full reference):

    frame 0   topic, UTF-8, dot-separated (see bus.topics)
    frame 1   msgpack map, the envelope:
                v       int    format version (FORMAT_VERSION)
                type    str    message type (MESSAGE_TYPES)
                source  str    who sent it, e.g. "registry", "worker:r0123456789ab"
                ts      float  unix time at the sender
                payload map    the message's fields
              and, on committed domain events only:
                seq     int    global sequence number in the event log
                stream  str    the event's stream (run-<run_id>)
                stream_version int  position in that stream
                schema  int    schema version of the payload
              and, on requests and replies only:
                id      str    request id (a retry reuses it)

Decoding is strict: every failure raises a FrameError subclass, never anything else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Optional

import msgpack

from core.errors import OrchestratorError, ValidationError
from core.events import EVENT_TYPES, DomainEvent
from core.upcasting import load_event

FORMAT_VERSION = 1
MAX_FRAME_BYTES = 16 * 1024 * 1024
MAX_TOPIC_BYTES = 256


class MessageType(str, enum.Enum):
    """Message types that are not domain events (those are named by EVENT_TYPES)."""

    HEARTBEAT = "Heartbeat"
    METRICS = "Metrics"
    LOG_LINES = "LogLines"
    ARTIFACT_REPORTED = "ArtifactReported"
    SERVICE_STATUS = "ServiceStatus"
    REQUEST = "Request"
    REPLY = "Reply"


MESSAGE_TYPES: frozenset[str] = frozenset({m.value for m in MessageType} | set(EVENT_TYPES))


class FrameError(OrchestratorError):
    """A frame that cannot be accepted; subclasses say why."""

    code = "bad_frame"


class FrameTooLarge(FrameError):
    pass


class FrameMalformed(FrameError):
    pass


class UnknownMessageType(FrameError):
    pass


class UnsupportedFormat(FrameError):
    pass


@dataclass(frozen=True, slots=True)
class Envelope:
    type: str
    source: str
    ts: float
    payload: dict[str, Any] = field(default_factory=dict)
    seq: Optional[int] = None
    stream: Optional[str] = None
    stream_version: Optional[int] = None
    schema: Optional[int] = None
    id: Optional[str] = None

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": FORMAT_VERSION, "type": self.type, "source": self.source,
                               "ts": self.ts, "payload": self.payload}
        for key in ("seq", "stream", "stream_version", "schema", "id"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


_INFINITE = (float("inf"), float("-inf"))
_OPTIONAL_KEYS: dict[str, type] = {"seq": int, "stream": str, "stream_version": int,
                                   "schema": int, "id": str}


def pack(obj: Any) -> bytes:
    """msgpack-encode plain data (maps, lists, str, bytes, numbers, None, bool)."""
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """Strictly decode one msgpack object; only FrameError escapes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise FrameMalformed(f"a frame must be bytes, not {type(data).__name__}")
    if len(data) > max_bytes:
        raise FrameTooLarge(f"frame of {len(data)} bytes is over the {max_bytes}-byte limit",
                            size=len(data))
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, timestamp=1,
                               ext_hook=_reject_ext)
    except FrameError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError,
            msgpack.UnpackException) as exc:
        raise FrameMalformed(f"not a valid msgpack frame: {type(exc).__name__}: {exc}") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise FrameMalformed(f"msgpack extension type {code} is not allowed")


def encode(env: Envelope) -> bytes:
    return pack(env.to_map())


def decode(data: bytes, max_bytes: int = MAX_FRAME_BYTES) -> Envelope:
    """Envelope from bytes. Raises FrameTooLarge, FrameMalformed, UnsupportedFormat or
    UnknownMessageType, and nothing else."""
    obj = unpack(data, max_bytes)
    return envelope_from_map(obj)


def envelope_from_map(obj: Any) -> Envelope:
    if type(obj) is not dict:
        raise FrameMalformed("the envelope must be a map")
    v = obj.get("v")
    if type(v) is not int:
        raise FrameMalformed("envelope field v (format version) is missing or not an integer")
    if v != FORMAT_VERSION:
        raise UnsupportedFormat(f"envelope format v{v} is not supported "
                                f"(this side speaks v{FORMAT_VERSION})")
    mtype, source, ts, payload = obj.get("type"), obj.get("source"), obj.get("ts"), \
        obj.get("payload")
    if type(mtype) is not str:
        raise FrameMalformed("envelope field type is missing or not a string")
    if mtype not in MESSAGE_TYPES:
        raise UnknownMessageType(f"unknown message type {mtype[:64]!r}", type=mtype[:64])
    if type(source) is not str:
        raise FrameMalformed("envelope field source is missing or not a string")
    if type(ts) is not float and type(ts) is not int or ts != ts or ts in _INFINITE:
        raise FrameMalformed("envelope field ts is missing or not a finite number")
    if type(payload) is not dict:
        raise FrameMalformed("envelope field payload is missing or not a map")
    if len(obj) == 5:  # no optional keys: the common case of telemetry
        return Envelope(mtype, source, float(ts), payload)
    extra: dict[str, Any] = {}
    for key, kind in _OPTIONAL_KEYS.items():
        value = obj.get(key)
        if value is None:
            continue
        if type(value) is not kind:
            raise FrameMalformed(f"envelope field {key} must be {kind.__name__}")
        extra[key] = value
    return Envelope(type=mtype, source=source, ts=float(ts), payload=payload, **extra)


def decode_message(frames: list[bytes], max_bytes: int = MAX_FRAME_BYTES) -> tuple[str, Envelope]:
    """(topic, envelope) from the two frames of a bus message."""
    if len(frames) != 2:
        raise FrameMalformed(f"a bus message has 2 frames, not {len(frames)}")
    raw_topic = bytes(frames[0])
    if len(raw_topic) > MAX_TOPIC_BYTES:
        raise FrameTooLarge(f"topic of {len(raw_topic)} bytes is over {MAX_TOPIC_BYTES}")
    try:
        topic = raw_topic.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameMalformed("the topic frame is not UTF-8") from None
    return topic, decode(frames[1], max_bytes)


# --- domain events on the bus -------------------------------------------------------

def event_envelope(event: DomainEvent, *, seq: int, stream: str, stream_version: int,
                   source: str, ts: float) -> Envelope:
    return Envelope(type=event.TYPE, source=source, ts=ts, payload=event.to_payload(),
                    seq=seq, stream=stream, stream_version=stream_version,
                    schema=event.SCHEMA_VERSION)


def event_from_envelope(env: Envelope) -> DomainEvent:
    """The domain event an envelope carries (upcast to the current schema)."""
    if env.type not in EVENT_TYPES:
        raise UnknownMessageType(f"{env.type} is not a domain event", type=env.type)
    try:
        schema = env.schema if env.schema is not None else EVENT_TYPES[env.type].SCHEMA_VERSION
        return load_event(env.type, schema, env.payload)
    except ValidationError as exc:
        raise FrameMalformed(f"bad {env.type} payload: {exc.message}", **exc.details) from None
