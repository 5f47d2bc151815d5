"""The commands on registered Python environments (streams ``env-<name>``) and their
pure decisions: AddEnv and RemoveEnv. A run names one in its config's ``python_env``;
the dispatcher starts that interpreter (docs/WORKERS.md, "Your own environment").

The interpreter is probed by the caller (the gateway runs it once: runtime.pyenv) and
what it said is the command's content; the decision checks it and refuses an
interpreter without the SDK, a name taken by another interpreter, and (RemoveEnv) an
environment that runs not ended still name.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Optional, Sequence

from core import events as ev
from core.envstate import EnvState
from core.errors import Conflict, NotFound, ResourceBusy, ValidationError
from core.streams import ENV_NAME_RE, is_env_name
from core.runconfig import control_character

MAX_PATH = 4096          # characters of the interpreter's path, and of each sys.path entry
MAX_SYS_PATH = 1000      # entries of sys.path
SDK_INSTALL = ("install the SDK there: `{python} -m pip install <the orchestrator's "
               "checkout>/sdk` (docs/WORKERS.md, \"Your own environment\")")


@dataclass(frozen=True, slots=True)
class AddEnv:
    """Register the interpreter ``python`` as the environment ``name``, with what it
    said when it was probed (its version, sys.path, sys.prefix, the SDK's version:
    "" where ``worker.runner`` cannot be imported there)."""

    name: str
    python: str
    python_version: str
    sys_path: tuple[str, ...]
    prefix: str
    sdk_version: str
    added_by: str = "anonymous"


@dataclass(frozen=True, slots=True)
class RemoveEnv:
    name: str
    removed_by: str = "anonymous"
    reason: str = ""


def check_env_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not is_env_name(name):
        raise ValidationError(field, f"{str(name)[:80]!r} is not an environment name "
                              f"(letters, digits, '_' and '-', starting with a letter or "
                              f"digit, at most 64: {ENV_NAME_RE.pattern[2:-2]})")
    return name


def _path(field: str, value: str) -> None:
    if not value:
        raise ValidationError(field, "must not be empty")
    if len(value) > MAX_PATH:
        raise ValidationError(field, f"must be at most {MAX_PATH} characters")
    bad = control_character(value)
    if bad is not None:
        raise ValidationError(field, f"must not contain control characters (found {bad})")


def decide_add_env(state: Optional[EnvState], cmd: AddEnv) -> list[ev.DomainEvent]:
    """EnvAdded; nothing when the same interpreter is registered under the name and
    says the same again. Adding another interpreter under a taken name is refused
    (remove the environment first)."""
    check_env_name(cmd.name)
    _path("python", cmd.python)
    if not posixpath.isabs(cmd.python):
        raise ValidationError("python", "must be an absolute path")
    if not cmd.python_version:
        raise ValidationError("python", f"{cmd.python} did not say which Python it is")
    if len(cmd.sys_path) > MAX_SYS_PATH:
        raise ValidationError("sys_path", f"has more than {MAX_SYS_PATH} entries")
    for entry in cmd.sys_path:
        if entry:
            _path("sys_path", entry)
    if not cmd.sdk_version:
        raise ValidationError("python", f"the trainer SDK is not installed in {cmd.python} "
                              f"(worker.runner cannot be imported there): "
                              + SDK_INSTALL.format(python=cmd.python))
    if state is not None and not state.removed:
        if state.python != cmd.python:
            raise Conflict(f"environment {cmd.name!r} is already registered with "
                           f"{state.python}: remove it first (trainer env rm {cmd.name})",
                           name=cmd.name, python=state.python)
        if (state.python_version, state.sys_path, state.prefix, state.sdk_version) == \
                (cmd.python_version, tuple(cmd.sys_path), cmd.prefix, cmd.sdk_version):
            return []  # the same again: nothing new
    return [ev.EnvAdded(name=cmd.name, python=cmd.python, python_version=cmd.python_version,
                        sys_path=tuple(cmd.sys_path), prefix=cmd.prefix,
                        sdk_version=cmd.sdk_version, added_by=cmd.added_by or "anonymous")]


def decide_remove_env(state: Optional[EnvState], cmd: RemoveEnv,
                      used_by: Sequence[str] = ()) -> list[ev.DomainEvent]:
    """EnvRemoved. ``used_by``: the runs not ended (PENDING, DISPATCHING, RUNNING) whose
    config names the environment: while there is one, the removal is refused (ended
    runs keep the name in their config; a rerun of one is refused once it is gone)."""
    check_env_name(cmd.name)
    if state is None or state.removed:
        raise NotFound(f"environment {cmd.name!r} is not registered", name=cmd.name)
    if used_by:
        shown = ", ".join(used_by[:10]) + (", ..." if len(used_by) > 10 else "")
        raise ResourceBusy(f"environment {cmd.name!r} is named by runs that have not "
                           f"ended: {shown} (cancel them or wait for them to end)",
                           name=cmd.name, runs=list(used_by))
    return [ev.EnvRemoved(name=cmd.name, removed_by=cmd.removed_by or "anonymous",
                          reason=cmd.reason)]
