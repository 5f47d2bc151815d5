"""``trainer tail [PREFIX ...]``: every bus message as one JSON line (for jq)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click
import zmq
from zmq.utils.monitor import recv_monitor_message

from bus import curvekeys
from bus.codec import FrameError, decode_message
from core.errors import ValidationError
from trainer.cli import errors

CONNECT_WAIT_S = 3.0  # how long tail waits for the bus to accept its connection


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def connect_within(sock: zmq.Socket, endpoint: str, timeout_s: float,
                   keys: curvekeys.ClientKeys | None = None) -> bool:
    """Connect ``sock`` to ``endpoint``; True once the broker has accepted the
    connection, False if it has not within ``timeout_s`` (ZeroMQ itself would
    retry silently for ever)."""
    monitor = sock.get_monitor_socket(zmq.EVENT_CONNECTED)
    try:
        curvekeys.connect(sock, endpoint, keys)
        if monitor.poll(int(timeout_s * 1000)):
            recv_monitor_message(monitor)
            return True
        return False
    finally:
        sock.disable_monitor()
        monitor.close(linger=0)


@click.command("tail")
@click.argument("prefixes", nargs=-1, metavar="[PREFIX ...]")
@click.option("--count", type=int, default=0, help="Stop after this many messages (0: never).")
def tail(prefixes: tuple[str, ...], count: int) -> None:
    """Subscribe to the bus and print every message as one JSON line:
    {"topic", "type", "source", "ts", "seq", "payload", ...}. PREFIXES select topics
    (for example `event.` or `hb.r0123456789ab`); none means everything."""
    settings = errors.load_settings()
    endpoint = settings.bus_sub
    ctx = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    seen = 0
    try:
        try:
            # On another host: the files of `trainer keys create` and server.key that
            # TRAINER_BUS_CURVE_KEY / _SERVER name; here, the services' key.
            keys = curvekeys.keys_from_env(os.environ) or curvekeys.service_keys(
                settings.home, settings.bus_curve)
            connected = connect_within(sock, endpoint, CONNECT_WAIT_S, keys)
        except ValidationError as exc:   # a key file of TRAINER_HOME/keys
            raise errors.CliError(exc.message) from None
        except zmq.ZMQError as exc:
            raise errors.bad_setting("TRAINER_BUS_SUB", f"{endpoint!r}: {exc}") from None
        if not connected:
            raise errors.CliError(f"the bus is not reachable at {endpoint}: "
                                  f"{errors.START_HINT}")
        for prefix in prefixes or ("",):
            sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
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
