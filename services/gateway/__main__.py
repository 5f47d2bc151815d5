"""``python -m services.gateway``: the public gRPC API (docs/API.md).

Reads the shared settings (core.settings) and its own TRAINER_GATEWAY_* variables
(services/gateway/config.py). Refuses to start on a non-loopback address unless a
token was provisioned (TRAINER_GATEWAY_TOKEN or $TRAINER_HOME/gateway.token).

The server and the generated trainer/v1 code are imported only in ``build``, after
runtime.bootstrap's version check: trainer_pb2 fails at import on an older protobuf, and
the check's "refusing to start" (exit code 3) must come first.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

import zmq

from runtime.bootstrap import EXIT_BAD_SETTINGS, run_service
from runtime.logs import ServiceLogger
from core.errors import ValidationError
from core.settings import Settings
from services.gateway.auth import TokenError, load_or_create, token_path, too_open
from services.gateway.config import GatewayConfig, is_loopback

if TYPE_CHECKING:
    from services.gateway.server import GatewayService

EXIT_NO_TOKEN = 5


def main() -> int:
    try:
        cfg = GatewayConfig.from_env(os.environ)
        settings = Settings.from_env(os.environ)
    except ValidationError as exc:
        print(f"gateway: bad setting {exc.message}", file=sys.stderr)
        return EXIT_BAD_SETTINGS
    loopback = is_loopback(cfg.addr)
    try:
        token, created = load_or_create(settings.home, cfg.token, create=loopback)
    except TokenError as exc:
        print(f"gateway: refusing to listen on {cfg.addr} (not a loopback address) "
              f"without a provisioned token: {exc}", file=sys.stderr)
        return EXIT_NO_TOKEN

    def build(settings: Settings, ctx: zmq.Context, log: ServiceLogger) -> GatewayService:
        from services.gateway.server import GatewayService  # after the version check
        if created:
            log.info("token.created", path=token_path(settings.home))
        if not cfg.token and too_open(settings.home):
            log.warning("token.file_too_open", path=token_path(settings.home),
                        fix=f"chmod 600 {token_path(settings.home)}")
        if not loopback and not cfg.tls:
            log.warning("gateway.plaintext", addr=cfg.addr,
                        hint="set TRAINER_GATEWAY_TLS_CERT and TRAINER_GATEWAY_TLS_KEY")
        return GatewayService(cfg, settings, ctx, token, log).start()

    # The event loop thread is busy while the pool threads wait on the registry: a
    # short switch interval lets a thread whose answer came back take the GIL soon
    # (the default 5 ms queues every registry call behind the loop's work).
    sys.setswitchinterval(cfg.switch_interval)
    return run_service("gateway", build)


if __name__ == "__main__":
    sys.exit(main())
