"""What the blocking and the asyncio client share: the gateway's address and token,
the channel's options and TLS credentials, TrainerError, and the request builders."""

from __future__ import annotations

import json
import os
from typing import Any, Mapping, Optional

import grpc

from trainer_api.v1 import trainer_pb2 as pb

DEFAULT_ADDR = "127.0.0.1:50055"
# A channel whose server went away retries its connection after grpc's reconnect
# backoff (default 1 s, then x1.6 up to 120 s), failing calls at once meanwhile: a
# restarted gateway would be reached seconds after it is back (docs/API.md,
# "Reconnecting"). The watch loop's own retry backoff is capped at WATCH_MAX_BACKOFF.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500))
WATCH_MAX_BACKOFF = 0.5
LOGS_MAX_BACKOFF = 0.5              # Client.logs' retry backoff at most
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
MAX_PAGE_SIZE = 1000                  # ListRuns page_size at most
PIN_TIMEOUT_S = 5.0                   # GetHealth that pins a live watch's start
STREAMS = {"stdout": pb.LOG_STREAM_STDOUT, "stderr": pb.LOG_STREAM_STDERR}


class TrainerError(Exception):
    """A failed call: ``code`` (grpc.StatusCode), ``message``, and for bad input the
    ``field`` and ``reason``; ``retryable`` for UNAVAILABLE and ABORTED."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "",
                 reason: str = "", trainer_code: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.field = code, message, field
        self.reason, self.trainer_code = reason, trainer_code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @staticmethod
    def from_rpc(err: grpc.RpcError) -> "TrainerError":
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        meta = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
        details = err.details() if hasattr(err, "details") else str(err)
        return TrainerError(code, details or "", str(meta.get("trainer-field", "")),
                            str(meta.get("trainer-reason", "")), str(meta.get("trainer-code", "")))


def default_address(env: Optional[Mapping[str, str]] = None) -> str:
    e = os.environ if env is None else env
    return e.get("TRAINER_GATEWAY_ADDR") or DEFAULT_ADDR


def default_token(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """TRAINER_GATEWAY_TOKEN, else the text of $TRAINER_HOME/gateway.token."""
    e = os.environ if env is None else env
    if e.get("TRAINER_GATEWAY_TOKEN", "").strip():
        return e["TRAINER_GATEWAY_TOKEN"].strip()
    home = e.get("TRAINER_HOME") or os.path.join(e.get("HOME", "/tmp"), ".local/share/trainer")
    try:
        with open(os.path.join(home, "gateway.token"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def channel_credentials(tls_ca: Optional[str]) -> Optional[grpc.ChannelCredentials]:
    """TLS trusting ``tls_ca``; by default TRAINER_GATEWAY_TLS_CA, else the gateway's own
    certificate TRAINER_GATEWAY_TLS_CERT (a self-signed one, on the gateway's machine);
    none of them: no TLS. "" turns TLS off."""
    ca = tls_ca if tls_ca is not None else (os.environ.get("TRAINER_GATEWAY_TLS_CA", "")
                                            or os.environ.get("TRAINER_GATEWAY_TLS_CERT", ""))
    if not ca:
        return None
    with open(ca, "rb") as fh:
        return grpc.ssl_channel_credentials(root_certificates=fh.read())


def submit_request(config: Any, submitted_by: str, request_id: str) -> pb.SubmitRunRequest:
    req = pb.SubmitRunRequest(submitted_by=submitted_by, request_id=request_id)
    req.config_json = config if isinstance(config, str) else json.dumps(config)
    return req


def experiment_request(spec: Any, submitted_by: str) -> pb.CreateExperimentRequest:
    """``spec``: a map or JSON text (docs/EXPERIMENTS.md)."""
    req = pb.CreateExperimentRequest(submitted_by=submitted_by)
    req.spec_json = spec if isinstance(spec, str) else json.dumps(spec)
    return req


def results_request(name: str, metric: str, curves: bool,
                    grid_points: int) -> pb.GetExperimentResultsRequest:
    return pb.GetExperimentResultsRequest(name=name, metric=metric, curves=curves,
                                          grid_points=grid_points)


def log_stream(name: Any) -> int:
    return STREAMS[name] if isinstance(name, str) else int(name)
