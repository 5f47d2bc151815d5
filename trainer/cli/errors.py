"""How the `trainer` command says what went wrong: one line on stderr (click's
``Error: ...``), no traceback, and a non-zero exit status: 2 for a bad setting (as the
services), 1 otherwise."""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import click
import grpc

from core.errors import ValidationError
from core.settings import Settings
from trainer.cli.format import clean
from trainer.client import Client, TrainerError, default_address

EXIT_BAD_SETTING = 2
START_HINT = "start the services with `trainer up`"


class CliError(click.ClickException):
    """A failure for the user: its message on one line (control characters escaped)."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(clean(message))
        self.exit_code = exit_code


def bad_setting(var: str, reason: str) -> CliError:
    return CliError(f"bad setting {var}: {reason}", EXIT_BAD_SETTING)


def load_settings(env: Optional[Mapping[str, str]] = None) -> Settings:
    """The shared settings (core.settings), or exit 2 naming the bad one."""
    try:
        return Settings.from_env(os.environ if env is None else env)
    except ValidationError as exc:
        raise CliError(f"bad setting {exc.message}", EXIT_BAD_SETTING) from None


def gateway_address(env: Optional[Mapping[str, str]] = None) -> str:
    """TRAINER_GATEWAY_ADDR (or the default), checked to be ``host:port``."""
    addr = default_address(env)
    host, sep, port = addr.rpartition(":")
    if not sep or not host.strip("[]") or not port.isdigit() or not 0 < int(port) < 65536:
        raise bad_setting("TRAINER_GATEWAY_ADDR", f"{addr!r} is not host:port")
    return addr


def open_client(**kwargs: Any) -> Client:
    """A client of the gateway at TRAINER_GATEWAY_ADDR; a bad address or an unreadable
    TLS file is a bad setting (exit 2)."""
    addr = kwargs.pop("address", None) or gateway_address()
    try:
        return Client(addr, **kwargs)
    except OSError as exc:  # the TLS CA (or certificate) file
        var = "TRAINER_GATEWAY_TLS_CA" if os.environ.get("TRAINER_GATEWAY_TLS_CA") \
            else "TRAINER_GATEWAY_TLS_CERT"
        raise bad_setting(var, f"cannot read {exc.filename}: {exc.strerror}") from None


def unreachable(err: TrainerError) -> bool:
    """The gateway did not answer at all (nothing listens, a TLS mismatch): gRPC's own
    UNAVAILABLE, without the ``trainer-code`` the gateway puts on its failures."""
    return err.code == grpc.StatusCode.UNAVAILABLE and not err.trainer_code


def not_reachable(address: str) -> str:
    return (f"the gateway is not reachable at {address}: {START_HINT} (or check "
            "TRAINER_GATEWAY_ADDR and the TLS settings)")


def fail(err: TrainerError, address: str) -> CliError:
    """A failed call as one line: an unreachable gateway named with its address."""
    if unreachable(err):
        return CliError(not_reachable(address))
    where = f" (field {err.field})" if err.field else ""
    return CliError(f"{err.code.name.lower()}: {err.message}{where}")
