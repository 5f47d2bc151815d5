"""The run config: one validated model shared by every service.

``RunConfig.from_map`` checks every field (unknown keys, wrong types, out-of-range
numbers) and applies defaults, so two configs that mean the same run have the same
canonical form and the same digest. Checks that need the outside world (is the
worker a registered entry point, does gymnasium know the env id) are passed in as
callables by the edge that validates (the registry), keeping this module pure.
Every field is documented in docs/CONFIG.md.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from core.errors import ValidationError
from core.digest import check_depth
from core import livenesspolicy
from core.livenesspolicy import LivenessPolicy
from core import slurmoptions
from core.slurmoptions import SlurmOptions
from core.streams import is_env_name

SCHEMA_VERSION = 1
DEFAULT_WORKER = "cartpole"


def control_character(text: str) -> Optional[str]:
    """The first character of ``text`` that would act on a terminal instead of being
    shown (C0 and C1 controls, DEL, the Unicode line and paragraph separators), as
    ``U+XXXX``; None when there is none. Names, tags and artifact paths refuse them."""
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or code in (0x2028, 0x2029):
            return f"U+{code:04X}"
    return None


def _printable(name: str, value: str) -> str:
    bad = control_character(value)
    if bad is not None:
        raise ValidationError(name, f"must not contain control characters (found {bad})")
    return value


@dataclass(frozen=True)
class Resources:
    gpus: int = 0                 # number of GPUs
    min_gpu_memory_mb: int = 0    # each GPU must have at least this much free
    cpu_slots: int = 1            # CPU slots (the dispatcher never oversubscribes them)
    memory_limit_mb: int = 0      # the run's processes together; 0 = no limit


# The causes a retry policy may name: the run's code is not to blame (docs/CONFIG.md),
# or a limit it hit (memory_limit: named only by a policy that asks for it, for a run
# whose resumed attempt starts smaller than it ended). The SLURM launcher adds its
# own (node_failure, preempted: a job's NODE_FAIL and PREEMPTED, docs/SLURM.md).
RETRYABLE_CAUSES = ("lost", "heartbeat_timeout", "signal", "time_limit", "memory_limit",
                    "not_learning", "node_failure", "preempted")
MAX_MEMORY_LIMIT_MB = 64 * 1024 * 1024   # MiB (64 TiB)
NEVER_RETRIED_EXIT_CODES = (0, 2, 3)   # success; a user error (bad config); ignored checkpoint
MAX_ATTEMPTS = 100


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts a run may have, and which ends start the next one."""

    max_attempts: int = 1
    on: tuple[str, ...] = ()          # causes (RETRYABLE_CAUSES)
    exit_codes: tuple[int, ...] = ()  # and these exit codes of the worker
    from_scratch: bool = False        # attempts start from nothing, not the last checkpoint

    @property
    def default(self) -> bool:
        return self == RetryPolicy()

    def retries(self, cause: str, exit_code: Optional[int]) -> bool:
        """Does an end with ``cause`` (and ``exit_code``) start another attempt?"""
        if cause == "exit_code":
            return exit_code in self.exit_codes
        return cause in self.on

    def to_map(self) -> dict[str, Any]:
        return {"max_attempts": self.max_attempts, "on": list(self.on),
                "exit_codes": list(self.exit_codes), "from_scratch": self.from_scratch}

    @staticmethod
    def from_map(data: Any) -> "RetryPolicy":
        if not isinstance(data, dict):
            raise ValidationError("retry", "must be a map")
        _no_unknown(data, RetryPolicy, "retry.")
        on = data.get("on", [])
        if not isinstance(on, (list, tuple)) or not all(isinstance(c, str) for c in on):
            raise ValidationError("retry.on", "must be a list of causes")
        for cause in on:
            if cause not in RETRYABLE_CAUSES:
                raise ValidationError("retry.on", f"{cause[:40]!r} is not a retryable cause "
                                      f"(one of {', '.join(RETRYABLE_CAUSES)}; exit codes "
                                      "go in retry.exit_codes)")
        codes = data.get("exit_codes", [])
        if not isinstance(codes, (list, tuple)) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in codes):
            raise ValidationError("retry.exit_codes", "must be a list of integers")
        for code in codes:
            if code in NEVER_RETRIED_EXIT_CODES or not 0 < code < 256:
                raise ValidationError("retry.exit_codes", f"{code} is never retried (1-255, "
                                      "not 2: a user error, not 3: an ignored checkpoint)")
        scratch = data.get("from_scratch", False)
        if not isinstance(scratch, bool):
            raise ValidationError("retry.from_scratch", "must be true or false")
        return RetryPolicy(_int(data, "max_attempts", 1, 1, MAX_ATTEMPTS, "retry."),
                           tuple(sorted(set(on))), tuple(sorted(set(codes))), scratch)


@dataclass(frozen=True)
class RunConfig:
    schema_version: int = SCHEMA_VERSION
    name: str = ""
    worker: str = DEFAULT_WORKER
    env: str = "CartPole-v1"
    seed: int = 0
    steps: int = 100_000                      # training budget in env steps
    hyperparameters: dict = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)
    priority: int = 0
    time_limit_s: float = 0.0                 # 0 = no wall-clock limit
    heartbeat_interval_s: float = 1.0
    heartbeat_timeout_s: float = 30.0
    startup_grace_s: float = 120.0            # extra silence allowed before the first beat
    cancel_grace_s: float = 30.0
    video_every: int = 0                      # record every Nth evaluation; 0 = never
    checkpoint_every: int = 0                 # checkpoint every N iterations; 0 = end only
    resume_from: str = ""                     # run_id/path of a checkpoint artifact
    tags: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    python_env: str = ""                      # a registered environment; "": the orchestrator's
    env_vars: dict = field(default_factory=dict)  # set for the worker (NAME -> value)
    liveness: LivenessPolicy = field(default_factory=LivenessPolicy)  # docs/SUPERVISION.md
    launcher: str = ""                        # local | slurm; "": TRAINER_LAUNCHER's
    slurm: SlurmOptions = field(default_factory=SlurmOptions)  # docs/SLURM.md

    def canonical_map(self) -> dict[str, Any]:
        """``to_map()``, computed once per config object (it is frozen)."""
        cached = self.__dict__.get("_map")
        if cached is None:
            cached = self.to_map()
            object.__setattr__(self, "_map", cached)
        return cached

    def to_map(self) -> dict[str, Any]:
        """Plain data, every field present (defaults applied): the canonical form."""
        out = {name: getattr(self, name) for name in _FIELDS}
        r = self.resources
        out["resources"] = {"gpus": r.gpus, "min_gpu_memory_mb": r.min_gpu_memory_mb,
                            "cpu_slots": r.cpu_slots}
        if r.memory_limit_mb:  # left out when 0: configs from before it keep their digest
            out["resources"]["memory_limit_mb"] = r.memory_limit_mb
        out["hyperparameters"] = dict(self.hyperparameters)
        out["tags"] = list(self.tags)
        if self.retry.default:  # left out: configs from before retries keep their digest
            del out["retry"]
        else:
            out["retry"] = self.retry.to_map()
        if self.liveness.default:  # likewise
            del out["liveness"]
        else:
            out["liveness"] = self.liveness.to_map()
        if self.slurm.default:  # likewise
            del out["slurm"]
        else:
            out["slurm"] = self.slurm.to_map()
        for name in ("python_env", "env_vars", "launcher"):  # likewise, when not given
            if not out[name]:
                del out[name]
        if self.env_vars:
            out["env_vars"] = dict(self.env_vars)
        return out

    @staticmethod
    def from_map(data: Any, *, known_worker: Optional[Callable[[str], bool]] = None,
                 known_env: Optional[Callable[[str], bool]] = None,
                 resumes: Optional[Callable[[str], bool]] = None,
                 python_envs: Optional[Callable[[str], Optional[WorkerChecks]]] = None,
                 ) -> "RunConfig":
        """``python_envs(name)``: the worker checks (known_worker, resumes) of the
        registered environment ``name``, None where there is none; a config naming one
        has its worker checked there instead of with ``known_worker``/``resumes``."""
        if not isinstance(data, dict):
            raise ValidationError("config", "must be a map")
        _no_unknown(data, RunConfig, "")
        res = data.get("resources", {})
        if not isinstance(res, dict):
            raise ValidationError("resources", "must be a map")
        _no_unknown(res, Resources, "resources.")
        resources = Resources(
            gpus=_int(res, "gpus", 0, 0, 64, "resources."),
            min_gpu_memory_mb=_int(res, "min_gpu_memory_mb", 0, 0, 10**7, "resources."),
            cpu_slots=_int(res, "cpu_slots", 1, 1, 1024, "resources."),
            memory_limit_mb=_memory_limit(res),
        )
        hyper = data.get("hyperparameters", {})
        if not isinstance(hyper, dict) or not all(isinstance(k, str) for k in hyper):
            raise ValidationError("hyperparameters", "must be a map with string keys")
        check_depth(hyper, "hyperparameters")
        tags = data.get("tags", [])
        if not isinstance(tags, (list, tuple)) or not all(isinstance(t, str) and t for t in tags):
            raise ValidationError("tags", "must be a list of non-empty strings")
        for tag in tags:
            _printable("tags", tag)
        cfg = RunConfig(
            schema_version=_int(data, "schema_version", SCHEMA_VERSION, 1, SCHEMA_VERSION),
            name=_str(data, "name", "", 200, allow_empty=True),
            worker=_str(data, "worker", DEFAULT_WORKER, 100),
            env=_str(data, "env", "CartPole-v1", 200),
            seed=_int(data, "seed", 0, 0, 2**32 - 1),
            steps=_int(data, "steps", 100_000, 1, 10**12),
            hyperparameters=hyper,
            resources=resources,
            priority=_int(data, "priority", 0, -1000, 1000),
            time_limit_s=_num(data, "time_limit_s", 0.0, 0.0, 30 * 86400.0),
            heartbeat_interval_s=_num(data, "heartbeat_interval_s", 1.0, 0.05, 600.0),
            heartbeat_timeout_s=_num(data, "heartbeat_timeout_s", 30.0, 0.1, 86400.0),
            startup_grace_s=_num(data, "startup_grace_s", 120.0, 0.0, 86400.0),
            cancel_grace_s=_num(data, "cancel_grace_s", 30.0, 0.0, 3600.0),
            video_every=_int(data, "video_every", 0, 0, 10**6),
            checkpoint_every=_int(data, "checkpoint_every", 0, 0, 10**9),
            resume_from=_str(data, "resume_from", "", 500, allow_empty=True),
            tags=tuple(sorted(set(tags))),
            retry=RetryPolicy.from_map(data.get("retry", {})),
            python_env=_python_env(data),
            env_vars=_env_vars(data.get("env_vars", {})),
            liveness=LivenessPolicy.from_map(data.get("liveness", {})),
            launcher=slurmoptions.launcher_name(data.get("launcher", "")),
            slurm=SlurmOptions.from_map(data.get("slurm", {})),
        )
        if cfg.heartbeat_timeout_s <= cfg.heartbeat_interval_s:
            raise ValidationError("heartbeat_timeout_s", "must be longer than "
                                  "heartbeat_interval_s")
        cfg.liveness.check_windows(cfg.heartbeat_interval_s)
        if cfg.python_env and python_envs is not None:
            checks = python_envs(cfg.python_env)
            if checks is None:
                raise ValidationError("python_env", _refusal(
                    python_envs, cfg.python_env, f"no environment {cfg.python_env!r} is "
                    "registered (trainer env ls)"))
            known_worker, resumes = checks
        if known_worker is not None and not known_worker(cfg.worker):
            raise ValidationError("worker", _refusal(
                known_worker, cfg.worker, f"{cfg.worker!r} is not a registered entry point "
                "in the group trainer.workers"))
        if resumes is not None and cfg.retry.max_attempts > 1 and not cfg.retry.from_scratch \
                and not resumes(cfg.worker):
            raise ValidationError("retry.from_scratch", (
                f"worker {cfg.worker!r} does not declare that it resumes from a checkpoint "
                "(an entry point in the group trainer.resumes): its retried attempts must "
                "start from scratch (retry.from_scratch: true), or make it resume "
                "(docs/WORKERS.md, Resuming)"))
        if known_env is not None and not known_env(cfg.env):
            raise ValidationError("env", _refusal(
                known_env, cfg.env, f"gymnasium does not register the env id {cfg.env!r}"))
        return cfg


MIN_MEMORY_LIMIT_MB = 16   # less than a Python interpreter needs to start


def _memory_limit(res: dict) -> int:
    value = _int(res, "memory_limit_mb", 0, 0, MAX_MEMORY_LIMIT_MB, "resources.")
    if 0 < value < MIN_MEMORY_LIMIT_MB:
        raise ValidationError("resources.memory_limit_mb", f"must be 0 (no limit) or at "
                              f"least {MIN_MEMORY_LIMIT_MB} (a worker needs more to start)")
    return value


# What a registered environment's workers are checked with: (known_worker, resumes).
WorkerChecks = tuple[Callable[[str], bool], Callable[[str], bool]]

ENV_VAR_MAX = 100            # variables in env_vars
ENV_VALUE_MAX = 4096         # characters of one value
# Set by the dispatcher for every worker: a run may not set them (docs/CONFIG.md).
RESERVED_ENV_VARS = ("CUDA_VISIBLE_DEVICES", "PYTHONUNBUFFERED")
RESERVED_ENV_PREFIX = "TRAINER_"


def _python_env(data: dict) -> str:
    name = _str(data, "python_env", "", 64, allow_empty=True)
    if name and not is_env_name(name):
        raise ValidationError("python_env", f"{name!r} is not an environment name "
                              "(letters, digits, '_' and '-', starting with a letter or digit)")
    return name


def _env_vars(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValidationError("env_vars", "must be a map of names to string values")
    if len(value) > ENV_VAR_MAX:
        raise ValidationError("env_vars", f"must have at most {ENV_VAR_MAX} variables")
    for name, text in value.items():
        if not isinstance(name, str) or not _ENV_VAR_NAME.fullmatch(name):
            raise ValidationError("env_vars", f"{str(name)[:60]!r} is not a variable name "
                                  "(letters, digits and '_', not starting with a digit)")
        where = f"env_vars.{name}"
        if name.startswith(RESERVED_ENV_PREFIX) or name in RESERVED_ENV_VARS:
            raise ValidationError(where, "is set by the dispatcher (TRAINER_*, "
                                  f"{', '.join(RESERVED_ENV_VARS)}): a run may not set it")
        if not isinstance(text, str):
            raise ValidationError(where, f"must be a string, not {type(text).__name__}")
        if len(text) > ENV_VALUE_MAX:
            raise ValidationError(where, f"must be at most {ENV_VALUE_MAX} characters")
        if "\0" in text:
            raise ValidationError(where, "must not contain a NUL character")
    return dict(value)


_ENV_VAR_NAME = re.compile(r"\A[A-Za-z_][A-Za-z0-9_]*\Z")


def _refusal(check: Callable[..., Any], value: str, default: str) -> str:
    """Why ``check`` refused ``value``: its own ``refusal(value)`` where it has one (the
    registry's catalogs: which names are installed, how to register an env)."""
    explain = getattr(check, "refusal", None)
    return explain(value) if callable(explain) else default


_FIELDS = tuple(f.name for f in dataclasses.fields(RunConfig))


def field_names() -> list[str]:
    """Every config key, nested ones as resources.<name> (for the docs test)."""
    out = [f.name for f in dataclasses.fields(RunConfig)]
    out += [f"resources.{f.name}" for f in dataclasses.fields(Resources)]
    out += [f"retry.{f.name}" for f in dataclasses.fields(RetryPolicy)]
    out += livenesspolicy.field_names()
    out += slurmoptions.field_names()
    return out


_KNOWN: dict[type, frozenset[str]] = {}


def _no_unknown(data: dict, cls: type, prefix: str) -> None:
    known = _KNOWN.get(cls)
    if known is None:
        known = _KNOWN[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    for key in data:
        if key not in known:
            raise ValidationError(f"{prefix}{key}", "is not a known config field")


def _int(data: dict, name: str, default: int, lo: int, hi: int, prefix: str = "") -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(prefix + name, f"must be an integer, not {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValidationError(prefix + name, f"must be between {lo} and {hi}")
    return value


def _num(data: dict, name: str, default: float, lo: float, hi: float) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(name, f"must be a number, not {type(value).__name__}")
    if not math.isfinite(value) or not lo <= value <= hi:
        raise ValidationError(name, f"must be between {lo:g} and {hi:g}")
    return float(value)


def _str(data: dict, name: str, default: str, max_len: int, allow_empty: bool = False) -> str:
    value = data.get(name, default)
    if not isinstance(value, str):
        raise ValidationError(name, f"must be a string, not {type(value).__name__}")
    if not value and not allow_empty:
        raise ValidationError(name, "must not be empty")
    if len(value) > max_len:
        raise ValidationError(name, f"must be at most {max_len} characters")
    return _printable(name, value)
