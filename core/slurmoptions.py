"""The run config's ``launcher`` and ``slurm`` section (docs/SLURM.md):

    "launcher": "slurm",            # "local" | "slurm" | "" (the installation's
                                    # TRAINER_LAUNCHER, "local" unless set)
    "slurm": {"partition": "gpu", "account": "rl", "qos": "normal",
              "constraint": "a100", "time_limit": "2:00:00",
              "checkpoint_before_s": 120,
              "extra": {"mem": "16G", "cpus-per-task": "4"}}

Every key is optional. A run with a retry policy (``retry.max_attempts`` > 1) asks
SLURM for SIGUSR2 ``checkpoint_before_s`` seconds before its job's time limit
(``--signal=B:USR2@N``; SLURM sends it up to 60 s early): the SDK checkpoints on it
and the next attempt resumes from that checkpoint (0: no signal). ``extra`` takes only
the sbatch options of ``EXTRA_OPTIONS`` (an option that would change how the
orchestrator reads or ends its job, such as ``--output``, ``--signal`` or ``--array``,
is refused). Values are checked to be plain tokens: they go on sbatch's command line.
The section is left out of the canonical config when it is the default, so configs
from before it keep their digest. Pure: standard library only.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import ValidationError

LOCAL = "local"
SLURM = "slurm"
LAUNCHERS = ("", LOCAL, SLURM)    # "": the installation's default (TRAINER_LAUNCHER)

# sbatch options a run may add (long names, without the dashes).
EXTRA_OPTIONS = frozenset({
    "cpus-per-task", "mem", "mem-per-cpu", "mem-per-gpu", "nodelist", "exclude",
    "reservation", "licenses", "nice", "begin", "gres-flags", "exclusive", "tmp",
    "cores-per-socket", "sockets-per-node", "threads-per-core", "hint", "wckey",
})
CHECKPOINT_BEFORE_S = 120      # SLURM's own resolution is about 60 s
MAX_SIGNAL_BEFORE_S = 65535    # sbatch's --signal@ bound
_TOKEN = re.compile(r"^[A-Za-z0-9_.:,=+@/\[\]-]{1,200}$")
# SLURM's time formats: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")


def _token(name: str, value: Any, allow_empty: bool = True) -> str:
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, not {type(value).__name__}")
    if value == "" and allow_empty:
        return value
    if not _TOKEN.match(value):
        raise ValidationError(name, "must be 1-200 characters of letters, digits and "
                              "_.:,=+@/[]- (it goes on sbatch's command line)")
    return value


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    account: str = ""
    qos: str = ""
    constraint: str = ""
    time_limit: str = ""           # SLURM's format ("90", "2:00:00", "1-12"); "": none
    checkpoint_before_s: int = CHECKPOINT_BEFORE_S   # SIGUSR2 this long before the limit
    extra: dict = field(default_factory=dict)   # allow-listed sbatch option -> value

    @property
    def default(self) -> bool:
        return self == SlurmOptions()

    def to_map(self) -> dict[str, Any]:
        """The fields not at their default (a section from before a field keeps its
        digest)."""
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                               if f.name != "extra" and getattr(self, f.name) != f.default}
        if self.extra:
            out["extra"] = dict(sorted(self.extra.items()))
        return out

    @staticmethod
    def from_map(data: Any) -> "SlurmOptions":
        if not isinstance(data, dict):
            raise ValidationError("slurm", "must be a map")
        known = {f.name for f in dataclasses.fields(SlurmOptions)}
        for key in data:
            if key not in known:
                raise ValidationError(f"slurm.{key}", "is not a known config field")
        values = {name: _token(f"slurm.{name}", data.get(name, ""))
                  for name in ("partition", "account", "qos", "constraint")}
        limit = _token("slurm.time_limit", data.get("time_limit", ""))
        if limit and not _TIME.match(limit):
            raise ValidationError("slurm.time_limit", "must be a SLURM time (minutes, "
                                  "MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS)")
        before = data.get("checkpoint_before_s", CHECKPOINT_BEFORE_S)
        if not isinstance(before, int) or isinstance(before, bool) \
                or not 0 <= before <= MAX_SIGNAL_BEFORE_S:
            raise ValidationError("slurm.checkpoint_before_s", "must be an integer of "
                                  f"seconds, 0-{MAX_SIGNAL_BEFORE_S} (0: no signal)")
        extra = data.get("extra", {})
        if not isinstance(extra, dict):
            raise ValidationError("slurm.extra", "must be a map of sbatch option -> value")
        for key, value in extra.items():
            if key not in EXTRA_OPTIONS:
                allowed = ", ".join(sorted(EXTRA_OPTIONS))
                raise ValidationError(f"slurm.extra.{str(key)[:40]}", "is not an allowed "
                                      f"sbatch option (allowed: {allowed})")
            _token(f"slurm.extra.{key}", value)
        return SlurmOptions(time_limit=limit, checkpoint_before_s=before, extra=dict(extra),
                            **values)


def launcher_name(value: Any) -> str:
    if not isinstance(value, str) or value not in LAUNCHERS:
        raise ValidationError("launcher", f"must be one of {', '.join(repr(v) for v in LAUNCHERS)}")
    return value


def field_names() -> list[str]:
    """The section's keys, as slurm.<name> (for the docs test)."""
    return [f"slurm.{f.name}" for f in dataclasses.fields(SlurmOptions)]
