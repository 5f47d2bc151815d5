"""The broker's side of CURVE: its sockets made CURVE servers, the ZAP handler that lets
in the keys of TRAINER_HOME/keys/authorized/ (pyzmq's ``zmq.auth.ThreadAuthenticator``),
and one log line per refused client.

A client is refused at one of two stages, and logged once for each (peer, reason):

- its key is not authorised (unknown, revoked): the ZAP handler sees its address and
  its public key; ``bus.client_refused`` names both;
- it has no CURVE key at all, or the wrong server key: its handshake fails before ZAP
  (ZeroMQ does not tell the peer's address then); the socket monitor of each side
  reports it, logged once per side and reason.

The folder of authorised keys is read again whenever it changed (its mtime), checked
at each new connection's handshake: ``trainer keys revoke`` takes effect for the next
connection without a restart. A connection already made stays up (ZeroMQ
authenticates once, at the handshake) until it breaks or the broker restarts.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
from typing import Any, Protocol

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import recv_monitor_message

from bus.curvekeys import KeyStore, check_private

MAX_NOTED = 4096   # distinct (peer, reason) pairs remembered; past it, counted only
# A key ZAP refused is logged by the authenticator (with the key). A client without a
# CURVE key may see the mismatch first and hang up: the broker then sees its handshake
# broken off (EVENT_HANDSHAKE_FAILED_NO_DETAIL, an errno) rather than the mismatch.
HANDSHAKE_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
_PROTOCOL_REASONS: dict[int, str] = {
    zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: "no CURVE key (the client's security "
                                               "mechanism is not CURVE)",
    zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: "the handshake does not decrypt (the client "
                                           "uses another server key?)",
}


class Log(Protocol):
    def warning(self, event: str, **fields: Any) -> None: ...


class Refusals:
    """Counts refused clients and logs each (peer, reason) once."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.noted: set[tuple[str, ...]] = set()
        self.count = 0
        self._lock = threading.Lock()   # the ZAP thread and the broker's loop both call

    def refused(self, reason: str, **fields: str) -> None:
        key = (reason, *sorted(f"{k}={v}" for k, v in fields.items()))
        with self._lock:
            self.count += 1
            if key in self.noted or len(self.noted) >= MAX_NOTED:
                return
            self.noted.add(key)
        self.log.warning("bus.client_refused", reason=reason, **fields,
                         hint="a client needs a key of `trainer keys create` and the "
                              "broker's keys/server.key (docs/BUS.md, tcp endpoints and CURVE)")


class BusAuthenticator(ThreadAuthenticator):
    """The ZAP handler: the authorised keys, read again when their folder changed."""

    def __init__(self, ctx: zmq.Context, store: KeyStore, refusals: Refusals) -> None:
        super().__init__(ctx, log=logging.getLogger("bus.zap"))
        self.store = store
        self.refusals = refusals
        self._stamp: int | None = None
        self._peer = ""

    def start(self) -> None:
        self._reload()
        super().start()

    def _reload(self) -> None:
        check_private(self.store.authorized, folder=True)
        stamp = os.stat(self.store.authorized).st_mtime_ns
        if stamp != self._stamp:
            self.configure_curve(domain="*", location=self.store.authorized)
            self._stamp = stamp

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        self._peer = msg[3].decode("utf-8", "replace") if len(msg) > 3 else ""
        await super().handle_zap_message(msg)

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        try:
            self._reload()
        except (OSError, ValueError) as exc:   # the folder went wrong: let nobody in
            self.refusals.refused(f"the authorised keys cannot be read: {exc}",
                                  peer=self._peer)
            return False, b"authorised keys unreadable"
        allowed, reason = await super()._authenticate_curve(domain, client_key)
        if not allowed:
            self.refusals.refused(f"key not authorised ({reason.decode('ascii', 'replace')})",
                                  peer=self._peer, key=z85.encode(client_key).decode("ascii"))
        return allowed, reason


class CurveGuard:
    """Owns the authenticator and the monitors of the broker's CURVE sockets."""

    def __init__(self, ctx: zmq.Context, store: KeyStore, log: Log) -> None:
        self.store = store
        self.refusals = Refusals(log)
        store.prepare()
        self.public, self.secret = store.server_pair()
        self.auth = BusAuthenticator(ctx, store, self.refusals)
        self.auth.start()
        self.monitors: dict[zmq.Socket, tuple[zmq.Socket, str]] = {}

    def serve(self, sock: zmq.Socket, side: str) -> zmq.Socket:
        """Make ``sock`` a CURVE server (before its bind) and return its monitor socket,
        to be polled by the owner and handed to ``on_monitor``."""
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        monitor = sock.get_monitor_socket(HANDSHAKE_EVENTS)
        self.monitors[monitor] = (sock, side)
        return monitor

    def on_monitor(self, monitor: zmq.Socket) -> None:
        _, side = self.monitors[monitor]
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            if event["event"] == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
                reason = _PROTOCOL_REASONS.get(
                    event["value"], f"handshake refused (ZMTP error {event['value']:#x})")
            elif event["event"] == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
                reason = ("the client broke off the handshake (no CURVE key, or the "
                          f"network: {errno.errorcode.get(event['value'], event['value'])})")
            else:
                continue   # MONITOR_STOPPED at close
            self.refusals.refused(reason, side=side)

    def counters(self) -> dict[str, int]:
        return {"curve_refused": self.refusals.count}

    def close(self) -> None:
        for monitor in self.monitors:   # their sockets are the proxy's: left to it
            monitor.close(linger=0)
        self.auth.stop()
