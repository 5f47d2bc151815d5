"""The gateway process's parts, wired: a grpc.aio server on its own event loop in a
background thread, the bus listener thread, and the object runtime.bootstrap drives
(``step`` watches that both threads are alive, ``close`` stops them in order)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Optional

import grpc
import zmq
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from runtime.logs import ServiceLogger
from runtime.throttle import LogThrottle
from core.clock import Clock, SystemClock
from core.settings import Settings
from services.gateway.submitcode import SubmitIdentity
from services.gateway import reflection
from services.gateway.auth import TokenInterceptor
from services.gateway.buslisten import BusListener, Item, Telemetry
from services.gateway.calls import RegistryAccess
from services.gateway.config import GatewayConfig
from services.gateway.decoding import DecodeInterceptor
from services.gateway.health import Health
from services.gateway.runfiles import LogFiles
from services.gateway.mapping import Mapper
from services.gateway.servicer import Servicer
from services.gateway.watch import WatchHub
from trainer_api.v1 import trainer_pb2 as pb

SERVICE = "trainer.v1.TrainerService"
GRACE_S = 1.0
REFUSED_LOG_S = 10.0  # at most one rpc.unauthenticated line this often


def _serialize(message: Any) -> bytes:
    """Watch messages may come pre-encoded (fanned out as bytes); others are messages."""
    return message if isinstance(message, bytes) else message.SerializeToString()


def add_servicer(servicer: Servicer, server: grpc.aio.Server) -> None:
    """Like the generated add_TrainerServiceServicer_to_server, but WatchRuns answers
    may be bytes (every watcher shares one encoding of each event)."""
    methods = pb.DESCRIPTOR.services_by_name["TrainerService"].methods
    handlers = {}
    for m in methods:
        req = getattr(pb, m.input_type.name)
        resp = getattr(pb, m.output_type.name)
        kind = grpc.unary_stream_rpc_method_handler if m.server_streaming else \
            grpc.unary_unary_rpc_method_handler
        handlers[m.name] = kind(getattr(servicer, m.name), request_deserializer=req.FromString,
                                response_serializer=_serialize if m.server_streaming
                                else resp.SerializeToString)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)


class GatewayService:
    def __init__(self, cfg: GatewayConfig, settings: Settings, ctx: zmq.Context,
                 token: str, log: ServiceLogger, clock: Clock = SystemClock()) -> None:
        self.cfg = cfg
        self.settings = settings
        self.ctx = ctx
        self.token = token
        self.log = log
        self.port = 0
        self.refused = 0
        self._refused_log = LogThrottle(REFUSED_LOG_S, clock)
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._stop: Optional[asyncio.Event] = None
        self._thread = threading.Thread(target=self._run, name="gw-grpc", daemon=True)
        self._wake = zmq.Poller()  # the main thread sleeps here (bootstrap's wake_on)
        self.telemetry = Telemetry(cfg.heartbeat_cache)
        self.mapper = Mapper(log)
        self.registry = RegistryAccess(ctx, settings.registry, cfg.workers, cfg.registry_timeout,
                                 cfg.registry_retries)
        self.hub: Optional[WatchHub] = None
        self.servicer: Optional[Servicer] = None
        self.listener = BusListener(settings, ctx, self.mapper, self.telemetry, self._post,
                                    self.counters, log, wanted=self._watched,
                                    batch_s=cfg.watch_batch)

    # --- lifecycle (called from the main thread) ------------------------------------
    def start(self, timeout: float = 30.0) -> "GatewayService":
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("the gRPC server did not start in time")
        if self._error is not None:
            raise RuntimeError(f"the gRPC server did not start: {self._error}")
        self.listener.start()
        return self

    def wake_on(self, fd: int) -> None:
        self._wake.register(fd, zmq.POLLIN)

    def step(self, timeout_s: float) -> None:
        """Wait (a signal wakes it); fail (the process exits and is restarted) if a
        thread has died."""
        self._wake.poll(int(timeout_s * 1000))
        if not self._thread.is_alive():
            raise RuntimeError(f"the gRPC server thread ended: {self._error}")
        if not self.listener.alive():
            raise RuntimeError("the bus listener thread ended (see bus.thread_failed)")

    def close(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout=GRACE_S + 10)
        self.listener.stop()
        self.registry.close()

    def counters(self) -> dict[str, Any]:
        hub, svc = self.hub, self.servicer
        return {"watchers": hub.open if hub else 0, "live_watchers": len(hub.live) if hub else 0,
                "lagged": hub.lagged if hub else 0,
                "hub_delay_p50_ms": hub.delay_ms(0.5) if hub else 0.0,
                "hub_delay_p99_ms": hub.delay_ms(0.99) if hub else 0.0,
                "streams": svc.streams if svc else 0,
                "calls": dict(svc.calls) if svc else {}, "refused": self.refused,
                "registry_calls": self.registry.calls,
                "registry_unavailable": self.registry.unavailable,
                "heartbeats_cached": self.telemetry.heartbeat_count(),
                "seq": self.listener.head or 0, "fetched": self.listener.fetched,
                "port": self.port}

    def _watched(self) -> int:
        hub = self.hub
        return len(hub.live) if hub is not None else 0

    def _post(self, items: list[Item], head: int) -> None:
        """From the bus thread: hand a batch to the hub on the loop, in order."""
        loop, hub = self._loop, self.hub
        if loop is None or hub is None:
            return
        try:
            loop.call_soon_threadsafe(hub.deliver, items, head)
        except RuntimeError:  # the loop is closing
            pass

    # --- the server thread ---------------------------------------------------------
    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._error = exc
            self.log.exception("grpc.server_failed")
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.hub = WatchHub(self.log)
        logs = LogFiles(self.settings.runs_dir, self.hub, self.registry, self.cfg.log_poll)
        health = Health(self.registry, self.telemetry, self.counters,
                        lambda: self.listener.head or 0)
        self.servicer = Servicer(self.cfg, self.registry, self.hub, self.telemetry,
                                 self.mapper, logs, health, self.log,
                                 SubmitIdentity(self.settings.runs_dir,
                                                self.settings.test_workers, self.log))
        server = grpc.aio.server(
            interceptors=[TokenInterceptor(self.token, self._on_refused), DecodeInterceptor()],
            options=[("grpc.max_receive_message_length", self.cfg.max_message),
                     ("grpc.max_send_message_length", 16 * 1024 * 1024),
                     ("grpc.so_reuseport", 0),
                     ("grpc.keepalive_time_ms", 60_000),
                     ("grpc.http2.max_pings_without_data", 0)])
        add_servicer(self.servicer, server)
        ticker = asyncio.create_task(self.hub.keepalive(self.cfg.watch_keepalive))
        health_servicer = health_aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable((SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name),
                          server)
        if self.cfg.tls:
            creds = grpc.ssl_server_credentials([(_read(self.cfg.tls_key),
                                                  _read(self.cfg.tls_cert))])
            self.port = server.add_secure_port(self.cfg.addr, creds)
        else:
            self.port = server.add_insecure_port(self.cfg.addr)
        await server.start()
        for name in ("", SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.log.info("gateway.listening", addr=self.cfg.addr, port=self.port, tls=self.cfg.tls)
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            ticker.cancel()
            await health_servicer.enter_graceful_shutdown()
            await self.servicer.end_streams()
            await server.stop(GRACE_S)
            self.registry.close_loop_client()  # on the loop that owns its socket

    def _on_refused(self, method: str) -> None:
        """Counted always (status counter ``refused``), logged at most every
        REFUSED_LOG_S: a client polling without its token must not flood the log."""
        self.refused += 1
        held = self._refused_log.admit()
        if held is not None:  # refusals since the last line, this one included
            self.log.warning("rpc.unauthenticated", method=method, since_last_line=held + 1)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()
