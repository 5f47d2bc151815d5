"""``python -m services.dispatcher``: schedule, start and supervise workers."""

from __future__ import annotations

import os
import sys

import zmq

from bus.badframes import BadFrameLog
from bus.bootstrap import run_service
from bus.catchup import EventFollower, registry_fetch
from bus.logs import ServiceLogger
from bus.pubsub import Publisher, Subscriber
from bus.rpc import RpcClient
from core.clock import SystemClock
from core.settings import Settings
from services.dispatcher.forkserver import ForkServer
from services.dispatcher.inventory import read_inventory
from services.dispatcher.recovery import recover
from services.dispatcher.service import SOURCE, DispatcherService


def build(settings: Settings, ctx: zmq.Context, log: ServiceLogger) -> DispatcherService:
    clock = SystemClock()
    inventory = read_inventory(settings.fake_gpus)
    if inventory.gpus:
        log.info("gpus.found", source=inventory.source, count=len(inventory.gpus),
                 gpus=[g.to_map() for g in inventory.gpus])
    else:
        log.info("gpus.none", reason=inventory.error or "no GPU found")
    bad = BadFrameLog(log)
    events_sock = ctx.socket(zmq.SUB)
    events_sock.setsockopt(zmq.LINGER, 0)
    events_sock.connect(settings.bus_sub)
    telemetry_sock = ctx.socket(zmq.SUB)
    telemetry_sock.setsockopt(zmq.LINGER, 0)
    telemetry_sock.setsockopt(zmq.RCVHWM, 100_000)
    telemetry_sock.connect(settings.bus_sub)
    pub = ctx.socket(zmq.PUB)
    pub.connect(settings.bus_pub)
    client = RpcClient(ctx, settings.registry, SOURCE, timeout_s=3.0, retries=5)
    follower = EventFollower(Subscriber(events_sock, bad), registry_fetch(client))
    cpu_slots = settings.cpu_slots or os.cpu_count() or 1
    svc = DispatcherService(settings, client, follower, Subscriber(telemetry_sock, bad),
                            Publisher(pub, SOURCE, clock), inventory, cpu_slots, clock, log,
                            forks=ForkServer(), resync=recover)
    recover(svc)
    return svc


def main() -> int:
    return run_service("dispatcher", build)


if __name__ == "__main__":
    sys.exit(main())
