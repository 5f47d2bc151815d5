"""The gateway's own settings: one documented table of TRAINER_GATEWAY_* variables
(docs/API.md lists each), parsed from a mapping that ``__main__`` passes in.

The shared settings (TRAINER_HOME, the bus and registry endpoints, ...) stay in
core.settings; these are the ones only the gateway reads.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable, Mapping

from core.errors import ValidationError

DEFAULT_ADDR = "127.0.0.1:50055"
MAX_CONFIG_BYTES = 64 * 1024


def _pos_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise ValueError("must be positive")
    return value


def _nonneg_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise ValueError("must not be negative")
    return value


def _pos_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError("must be positive")
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


# (field, env, default, parse, help)
GATEWAY_SETTINGS: tuple[tuple[str, str, str, Callable[[str], object], str], ...] = (
    ("addr", "TRAINER_GATEWAY_ADDR", DEFAULT_ADDR, str,
     "host:port the gRPC server listens on (loopback unless a token is provisioned)."),
    ("token", "TRAINER_GATEWAY_TOKEN", "", str,
     "The bearer token; default: read or create $TRAINER_HOME/gateway.token (mode 0600)."),
    ("tls_cert", "TRAINER_GATEWAY_TLS_CERT", "", str,
     "PEM certificate chain; with TRAINER_GATEWAY_TLS_KEY the server speaks TLS."),
    ("tls_key", "TRAINER_GATEWAY_TLS_KEY", "", str, "PEM private key for TLS."),
    ("max_message", "TRAINER_GATEWAY_MAX_MESSAGE", str(1024 * 1024), _pos_int,
     "Largest request message in bytes (larger: RESOURCE_EXHAUSTED)."),
    ("workers", "TRAINER_GATEWAY_WORKERS", "16", _pos_int,
     "Threads for blocking work (file reads, long event fetches, health probes), one "
     "registry client each; the RPCs' registry calls run on the event loop."),
    ("registry_timeout", "TRAINER_GATEWAY_REGISTRY_TIMEOUT", "2", _pos_float,
     "Seconds the gateway waits for one registry answer (per attempt)."),
    ("registry_retries", "TRAINER_GATEWAY_REGISTRY_RETRIES", "1", _nonneg_int,
     "Retries of a registry request (same request id) before UNAVAILABLE."),
    ("watch_buffer", "TRAINER_GATEWAY_WATCH_BUFFER", "10000", _pos_int,
     "Events queued per watcher before it is switched to catch-up from the registry."),
    ("watch_buffer_bytes", "TRAINER_GATEWAY_WATCH_BUFFER_BYTES", str(16 * 1024 * 1024), _pos_int,
     "Bytes of events queued per watcher before it is switched to catch-up."),
    ("watch_batch", "TRAINER_GATEWAY_WATCH_BATCH", "0.002", _nonneg_float,
     "Least seconds between two hand-overs of live events to the watchers (batching; "
     "grows by 0.1 ms per live watcher, up to 25 ms)."),
    ("watch_keepalive", "TRAINER_GATEWAY_WATCH_KEEPALIVE", "5", _pos_float,
     "Seconds between position-only messages on a quiet WatchRuns stream."),
    ("max_watchers", "TRAINER_GATEWAY_MAX_WATCHERS", "1000", _pos_int,
     "Open WatchRuns plus StreamLogs streams at most (more: RESOURCE_EXHAUSTED)."),
    ("heartbeat_cache", "TRAINER_GATEWAY_HEARTBEAT_CACHE", "10000", _pos_int,
     "Runs whose latest heartbeat the gateway keeps (least recently heard dropped)."),
    ("log_poll", "TRAINER_GATEWAY_LOG_POLL", "0.1", _pos_float,
     "Seconds between checks of a followed log file that had no new bytes."),
    ("switch_interval", "TRAINER_GATEWAY_SWITCH_INTERVAL", "0.0005", _pos_float,
     "Python's thread switch interval in the gateway (sys.setswitchinterval)."),
)


@dataclass(frozen=True)
class GatewayConfig:
    addr: str = DEFAULT_ADDR
    token: str = ""
    tls_cert: str = ""
    tls_key: str = ""
    max_message: int = 1024 * 1024
    workers: int = 16
    registry_timeout: float = 2.0
    registry_retries: int = 1
    watch_buffer: int = 10_000
    watch_buffer_bytes: int = 16 * 1024 * 1024
    watch_batch: float = 0.002
    watch_keepalive: float = 5.0
    max_watchers: int = 1000
    heartbeat_cache: int = 10_000
    log_poll: float = 0.1
    switch_interval: float = 0.0005

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert and self.tls_key)

    @staticmethod
    def from_env(env: Mapping[str, str]) -> "GatewayConfig":
        values: dict[str, object] = {}
        for name, var, default, parse, _help in GATEWAY_SETTINGS:
            raw = env.get(var) or default
            try:
                values[name] = parse(raw)
            except ValueError as exc:
                raise ValidationError(var, f"{raw!r} is not valid: {exc}") from None
        cfg = GatewayConfig(**values)  # type: ignore[arg-type]
        split_addr(cfg.addr)
        if bool(cfg.tls_cert) != bool(cfg.tls_key):
            raise ValidationError("TRAINER_GATEWAY_TLS_CERT",
                                  "set both TRAINER_GATEWAY_TLS_CERT and _KEY, or neither")
        return cfg


def split_addr(addr: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` or ``[v6]:port``; ValidationError otherwise."""
    host, sep, port = addr.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError("TRAINER_GATEWAY_ADDR", f"{addr!r} is not host:port")
    return host.strip("[]"), int(port)


def is_loopback(addr: str) -> bool:
    host, _ = split_addr(addr)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may resolve anywhere
