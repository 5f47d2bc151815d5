"""The environment RPCs (AddEnvironment, ListEnvironments, RemoveEnvironment): the
request checked field by field, the interpreter probed here (runtime.pyenv, in a pool
thread: it runs that Python once), the registry deciding (core.envcommands)."""

from __future__ import annotations

import os
from typing import Any, Mapping

import grpc

from core.envcommands import AddEnv, RemoveEnv, check_env_name
from core.errors import ValidationError
from core.protocol import ListEnvs
from runtime.pyenv import ProbeError, probe
from services.gateway.calls import RegistryAccess
from services.gateway.errors import CallError, invalid
from services.gateway.mapping import timestamp
from trainer_api.v1 import trainer_pb2 as pb

MAX_TEXT = 1000


def environment(view: Mapping[str, Any]) -> pb.Environment:
    """The registry's view of an environment (core.envstate.env_view) as a message."""
    msg = pb.Environment(name=view["name"], python=view["python"],
                         python_version=view["python_version"],
                         sys_path=list(view["sys_path"]), prefix=view["prefix"],
                         sdk_version=view["sdk_version"], added_by=view["added_by"],
                         removed=bool(view["removed"]),
                         workers=list(view.get("workers") or []))
    msg.added_at.CopyFrom(timestamp(float(view["added_at"])))
    return msg


def _name(value: str) -> str:
    try:
        return check_env_name(value)
    except ValidationError as exc:
        raise invalid("name", exc.details["reason"]) from None


def _text(value: str, field: str, limit: int = 200) -> str:
    if len(value) > limit:
        raise invalid(field, f"must be at most {limit} characters")
    return value


async def add(registry: RegistryAccess, request: pb.AddEnvironmentRequest,
              context: grpc.aio.ServicerContext) -> pb.AddEnvironmentResponse:
    name = _name(request.name)
    python = request.python
    if not python or not os.path.isabs(python):
        raise invalid("python", "must be the absolute path of a Python interpreter")
    python = os.path.normpath(python)   # (a symlink is kept: a venv's python is one)
    added_by = _text(request.added_by or "grpc", "added_by")
    try:
        found = await registry.run(probe, python)
    except ProbeError as exc:
        raise invalid("python", str(exc)) from None
    cmd = AddEnv(name, python, found.python_version, found.sys_path, found.prefix,
                 found.sdk_version, added_by)
    try:
        got = await registry.call(cmd, context)
    except CallError as exc:
        if exc.trainer_code == "conflict":   # the name is another interpreter's
            raise CallError(grpc.StatusCode.ALREADY_EXISTS, exc.message, exc.trainer_code,
                            details=exc.details) from None
        raise
    return pb.AddEnvironmentResponse(environment=environment(got["env"]),
                                     created=bool(got["created"]))


async def listing(registry: RegistryAccess, request: pb.ListEnvironmentsRequest,
                  context: grpc.aio.ServicerContext) -> pb.ListEnvironmentsResponse:
    got = await registry.call(ListEnvs(request.include_removed), context)
    return pb.ListEnvironmentsResponse(environments=[environment(v) for v in got["envs"]])


async def remove(registry: RegistryAccess, request: pb.RemoveEnvironmentRequest,
                 context: grpc.aio.ServicerContext) -> pb.RemoveEnvironmentResponse:
    cmd = RemoveEnv(_name(request.name), _text(request.removed_by or "grpc", "removed_by"),
                    _text(request.reason, "reason", MAX_TEXT))
    got = await registry.call(cmd, context)
    return pb.RemoveEnvironmentResponse(environment=environment(got["env"]))
