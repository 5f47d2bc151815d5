"""``trainer tail [PREFIX ...]``: every bus message as one JSON line (for jq)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import zmq

from bus.codec import FrameError, decode_message
from core.settings import Settings


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@click.command("tail")
@click.argument("prefixes", nargs=-1, metavar="[PREFIX ...]")
@click.option("--count", type=int, default=0, help="Stop after this many messages (0: never).")
def tail(prefixes: tuple[str, ...], count: int) -> None:
    """Subscribe to the bus and print every message as one JSON line:
    {"topic", "type", "source", "ts", "seq", "payload", ...}. PREFIXES select topics
    (for example `event.` or `hb.r0123456789ab`); none means everything."""
    settings = Settings.from_env(os.environ)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    sock.connect(settings.bus_sub)
    for prefix in prefixes or ("",):
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    seen = 0
    try:
        while not count or seen < count:
            frames = sock.recv_multipart()
            try:
                topic, env = decode_message(frames)
            except FrameError as exc:
                click.echo(json.dumps({"error": exc.message}), err=True)
                continue
            click.echo(json.dumps({"topic": topic, **_plain(env.to_map())}, sort_keys=True,
                                  default=str))
            sys.stdout.flush()
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
