"""GetHealth: every service as the bus last heard it (status.<service>), the registry
also by a ping, the GPU inventory from the dispatcher's status counters with the
holder of each GPU from the registry, and the event log's size and last seq."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from typing import Any, Callable, Optional

import grpc

from core.protocol import GpuSlots, Ping
from runtime.status import PACKAGE_VERSION
from runtime.versions import installed_versions
from services.gateway.buslisten import Telemetry
from services.gateway.calls import RegistryAccess
from services.gateway.errors import CallError
from services.gateway.mapping import struct, timestamp
from trainer_api.v1 import trainer_pb2 as pb

SERVICES = ("bus", "registry", "dispatcher", "gateway")
PING_TIMEOUT_S = 1.0


class Health:
    def __init__(self, registry: RegistryAccess, telemetry: Telemetry,
                 counters: Callable[[], dict[str, Any]], gateway_seq: Callable[[], int]) -> None:
        self.registry = registry
        self.telemetry = telemetry
        self.counters = counters
        self.gateway_seq = gateway_seq
        self.started_at = time.time()
        self.versions = installed_versions()

    async def _registry_facts(self, context: grpc.aio.ServicerContext
                              ) -> tuple[Optional[dict], dict, str]:
        """(ping result or None, gpu holder by uuid, error): both asked at once from
        the loop, not through the thread pool, which catch-ups of watchers may fill
        while the registry is away."""
        wait = min(PING_TIMEOUT_S, self.registry.timeout_s)
        ping, slots = await asyncio.gather(
            self.registry.call(Ping(), context, retries=0, timeout_s=wait),
            self.registry.call(GpuSlots(), context, retries=0, timeout_s=wait),
            return_exceptions=True)
        for got in (ping, slots):
            if isinstance(got, CallError):
                return None, {}, got.message
            if isinstance(got, BaseException):
                raise got
        return ping, {s["gpu_uuid"]: s["run_id"] for s in slots["slots"]}, ""

    async def report(self, context: grpc.aio.ServicerContext) -> pb.GetHealthResponse:
        ping, holders, error = await self._registry_facts(context)
        now = time.time()
        statuses = self.telemetry.statuses()
        out = pb.GetHealthResponse(gateway_seq=self.gateway_seq(),
                                   watchers=int(self.counters().get("watchers", 0)))
        out.now.CopyFrom(timestamp(now))
        for name in SERVICES:
            out.services.append(self._service(name, statuses.get(name), now, ping, error))
        if ping is not None:
            out.db_bytes = int(ping.get("db_bytes") or 0)
            out.last_seq = int(ping.get("head_seq") or 0)
        dispatcher = statuses.get("dispatcher")
        if dispatcher is not None:
            counters = dispatcher[0].get("counters") or {}
            out.gpu_source = str(counters.get("gpu_source") or "")
            for gpu in counters.get("gpus") or ():
                out.gpus.append(_gpu(gpu, holders))
        return out

    def _service(self, name: str, seen: Optional[tuple[dict[str, Any], float]], now: float,
                 ping: Optional[dict], error: str) -> pb.ServiceHealth:
        s = pb.ServiceHealth(name=name)
        if seen is not None:
            payload, at = seen
            interval = float(payload.get("interval") or 2.0)
            s.alive = now - at <= 3 * interval + 1.0
            s.last_seen.CopyFrom(timestamp(at))
            s.age_s = max(0.0, now - at)
            s.pid = int(payload.get("pid") or 0)
            s.host = str(payload.get("host") or "")
            s.version = str(payload.get("version") or "")
            s.versions.update({str(k): str(v) for k, v in (payload.get("versions") or {}).items()})
            if isinstance(payload.get("started_at"), (int, float)):
                s.started_at.CopyFrom(timestamp(payload["started_at"]))
            s.counters.CopyFrom(struct(payload.get("counters") or {}))
            if not s.alive:
                s.error = f"no status message for {s.age_s:.1f}s"
            elif name == "dispatcher" and (payload.get("counters") or {}).get(
                    "launcher_problem"):   # SLURM's tools failing (docs/SLURM.md)
                s.error = str(payload["counters"]["launcher_problem"])[:500]
        else:
            s.error = "no status message heard on the bus"
        if name == "registry":
            s.alive = ping is not None
            s.error = "" if ping is not None else f"ping: {error}"
            counters = (seen[0].get("counters") or {}) if seen is not None else {}
            if s.alive and counters.get("disk_full"):
                free = int(counters.get("disk_free_bytes") or 0)
                s.error = (f"disk full ({max(free, 0) // 1024} KiB free): commands are "
                           f"refused ({counters.get('storage_full', 0)} so far); free space "
                           f"on the disk of TRAINER_HOME")
            if ping is not None:
                s.pid = int(ping.get("pid") or s.pid)
                s.started_at.CopyFrom(timestamp(float(ping.get("started_at") or 0.0)))
        elif name == "gateway":
            s.alive, s.error = True, ""
            s.pid, s.host, s.version = os.getpid(), socket.gethostname(), PACKAGE_VERSION
            s.versions.update(self.versions)
            s.started_at.CopyFrom(timestamp(self.started_at))
            s.counters.CopyFrom(struct(self.counters()))
            if seen is None:
                s.last_seen.CopyFrom(timestamp(now))
        return s


def _gpu(gpu: dict[str, Any], holders: dict[str, str]) -> pb.Gpu:
    uuid = str(gpu.get("uuid") or "")
    return pb.Gpu(index=int(gpu.get("index") or 0), uuid=uuid, name=str(gpu.get("name") or ""),
                  memory_total=int(gpu.get("memory_total") or 0),
                  memory_free=int(gpu.get("memory_free") or 0),
                  foreign_pids=[int(p) for p in gpu.get("foreign_pids") or ()],
                  run_id=holders.get(uuid, ""))
