"""``python -m services.registry``: the registry process (the event log's only writer)."""

from __future__ import annotations

import os
import sys

import zmq

from bus import curvekeys, endpoints
from runtime.bootstrap import run_service
from runtime.logs import ServiceLogger
from bus.pubsub import Publisher
from bus.rpc import RpcServer
from core.clock import SystemClock
from core.settings import Settings
from runtime.workers import WorkerCatalog
from services.registry.catalog import EnvCatalog
from services.registry.handlers import RequestHandler
from eventstore.anchor import anchor_path
from services.registry.maintenance import Checkpointer
from services.registry.migrations import connect, migrate
from services.registry.projection_catchup import catch_up_projection
from services.registry.reserve import NAME as RESERVE_NAME
from services.registry.reserve import Reserve
from services.registry.service import SOURCE, RegistryService


def build(settings: Settings, ctx: zmq.Context, log: ServiceLogger) -> RegistryService:
    clock = SystemClock()
    conn = connect(settings.db_path)
    applied = migrate(conn)
    if applied:
        log.info("db.migrated", migrations=applied, path=settings.db_path)
    replayed = catch_up_projection(conn)
    if replayed:
        log.warning("projection.caught_up", events=replayed)
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # count replies to vanished clients
    if not endpoints.bind(router, settings.registry, settings.home):
        log.warning("endpoint.not_private", endpoint=settings.registry,
                    hint="its folder lets other users in; use one inside TRAINER_HOME")
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.SNDHWM, 100_000)
    curvekeys.connect(pub, settings.bus_pub,
                      curvekeys.service_keys(settings.home, settings.bus_curve))
    registry = RequestHandler(conn, clock, settings.db_path,
                        known_worker=WorkerCatalog(test_workers=settings.test_workers),
                        known_env=EnvCatalog(), test_workers=settings.test_workers)
    log.info("registry.listening", endpoint=settings.registry, head_seq=registry.log.head_seq)
    reserve = Reserve(os.path.join(os.path.dirname(settings.db_path), RESERVE_NAME), log)
    if not reserve.ensure():
        log.warning("storage.low", path=settings.db_path,
                    hint="no room to keep space back for the event log")
    checkpointer = Checkpointer(conn, settings.checkpoint_interval,
                                settings.checkpoint_busy_warn, clock, log,
                                anchor=(anchor_path(settings.db_path), registry.log.mark),
                                reserve=reserve)
    return RegistryService(RpcServer(router, SOURCE, clock), Publisher(pub, SOURCE, clock),
                           registry, checkpointer, settings.status_interval,
                           settings.max_batch, log, spin_s=settings.registry_spin_us / 1e6)


def main() -> int:
    return run_service("registry", build)


if __name__ == "__main__":
    sys.exit(main())
