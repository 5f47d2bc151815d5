"""How a run ended, from its exit record and what the dispatcher did to it; and the
artifacts its worker left on disk that the registry does not know yet."""

from __future__ import annotations

import json
import os
import signal as signals
import functools
from typing import Any, Callable

from runtime.logs import ServiceLogger
from bus.rpc import Unavailable
from core import runresult
from core.errors import NotApplied, OrchestratorError, ValidationError
from core.rundir import MANIFEST_FILE, RESULT_FILE
from services.dispatcher.active import ActiveRun
from services.dispatcher.logfollow import tail_lines

MAX_RESULT_BYTES = 1024 * 1024   # a larger result.json is not read


def run_result(run: ActiveRun, log: ServiceLogger) -> dict[str, Any]:
    """The bounded result the run's terminal event records (core.runresult): its
    final steps (the larger of result.json's and the last heartbeat's), its budget
    and result.json's numeric metrics. A missing, huge or malformed result.json is
    logged (once: a run ends once) and left out; it never keeps the run from ending."""
    metrics: Any = {}
    path = os.path.join(run.run_dir, RESULT_FILE)
    problem = ""
    try:
        size = os.path.getsize(path)
        if size > MAX_RESULT_BYTES:
            problem = f"result.json has {size} bytes (more than {MAX_RESULT_BYTES})"
        else:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            metrics = data.get("metrics") if isinstance(data, dict) else None
            if not isinstance(metrics, dict):
                problem, metrics = "result.json has no metrics map", {}
    except FileNotFoundError:
        problem = "the worker wrote no result.json"
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or text
        problem = f"result.json cannot be read: {exc}"
    budget = run.config.get("steps")
    result, dropped = runresult.summarize(metrics, run.last_step,
                                          budget if isinstance(budget, int) else None)
    if problem:
        log.info("run.result_missing", run_id=run.run_id, reason=problem,
                 hint="its recorded result has only what the dispatcher heard")
    if dropped:
        log.info("run.result_trimmed", run_id=run.run_id, left_out=dropped,
                 hint=f"a recorded result keeps at most {runresult.MAX_KEYS} numeric "
                      f"metrics, with names of at most {runresult.MAX_KEY_CHARS} characters")
    return result


def outcome_of(record: dict[str, Any], run: ActiveRun) -> dict[str, Any]:
    code, sig = record.get("exit_code"), record.get("signal")
    base = {"exit_code": code, "signal": sig}
    plan = run.watch.kill if run.watch is not None else None
    if plan is not None:
        if plan.outcome == "cancelled":
            by, reason = run.cancel or ("", "")
            return {**base, "outcome": "cancelled", "requested_by": by, "reason": reason}
        return {**base, "outcome": "failed", "cause": plan.cause, "message": plan.message}
    if record.get("spawn_error"):
        return {**base, "outcome": "failed", "cause": "spawn_error",
                "message": str(record["spawn_error"])}
    if code == 0:
        return {"outcome": "completed", "exit_code": 0}
    tail = tail_lines(run.run_dir)
    if sig is not None:
        name = signals.Signals(sig).name if sig in signals.Signals._value2member_map_ else sig
        return {**base, "outcome": "failed", "cause": "signal",
                "message": f"killed by {name}\n{tail}".strip()}
    return {**base, "outcome": "failed", "cause": "exit_code",
            "message": f"exit code {code}\n{tail}".strip()}


def registered_artifacts(call: Callable[..., Any], run_id: str) -> list[dict[str, Any]]:
    """Every artifact the registry recorded for ``run_id``, page by page."""
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        got = call("list_artifacts", {"run_id": run_id, "after_seq": after})
        out += got["artifacts"]
        if not got.get("more") or not got["artifacts"]:
            return out
        after = int(got["artifacts"][-1]["seq"])


def outside_run_dir(run_dir: str, path: Any) -> str:
    """Why a worker's artifact ``path`` may not be registered: "" when it may. The
    path, every symlink in it resolved, must name something inside the run folder
    (``etclink/passwd`` with ``etclink -> /etc`` does not). The registry checks the
    rest (relative, length, control characters) without the filesystem."""
    if not isinstance(path, str) or not path or "\0" in path:
        return "must be a non-empty path"
    root = os.path.realpath(run_dir)
    full = os.path.realpath(os.path.join(root, path))
    if full == root or os.path.commonpath([full, root]) != root:
        return "must lie inside the run directory (symlinks resolved)"
    return ""


def artifacts_to_register(run_dir: str, known: Callable[[], list[dict[str, Any]]],
                          refused: Callable[[dict[str, Any], str], None] = lambda a, why: None
                          ) -> list[dict[str, Any]]:
    """Entries of the run's manifest whose registration the registry has not seen.
    ``known`` (the registered artifacts) is asked only when the manifest has lines.
    An entry whose path leads outside the run folder goes to ``refused`` (with why)."""
    try:
        with open(os.path.join(run_dir, MANIFEST_FILE), encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return []
    if not lines:
        return []
    seen = {a["path"] for a in known()}
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line of a killed worker
        path = entry.get("path")
        if not isinstance(path, str) or path in seen or not os.path.exists(
                os.path.join(run_dir, path)):
            continue
        seen.add(path)
        art = {"kind": str(entry.get("kind", "file")), "path": path,
               "size": int(entry.get("size", 0)), "meta": entry.get("meta") or {}}
        why = outside_run_dir(run_dir, path)
        if why:
            refused(art, why)
        else:
            out.append(art)
    return out


def register_artifacts(call: Callable[..., Any], run: ActiveRun,
                       refused: Callable[[str, dict[str, Any], OrchestratorError], None]
                       ) -> bool:
    """Register what the run's manifest lists and the registry lacks; False when one
    registration was not applied (a failed batch, a full disk: try again later)."""
    known = functools.partial(registered_artifacts, call, run.run_id)
    def outside(art: dict[str, Any], why: str) -> None:
        refused("register_artifact", {"run_id": run.run_id, **art},
                ValidationError("path", why))
    done = True
    for art in artifacts_to_register(run.run_dir, known, outside):
        args = {"run_id": run.run_id, **art}
        try:
            call("register_artifact", args)
        except Unavailable:
            raise
        except OrchestratorError as exc:
            refused("register_artifact", args, exc)
            done = done and not isinstance(exc, NotApplied)
    return done


def retry_artifacts(call: Callable[..., Any], runs: list[ActiveRun],
                    refused: Callable[[str, dict[str, Any], OrchestratorError], None]) -> bool:
    """Register again what was refused for these ended runs; True while some are left
    (their ends wait: the registry records an end only after its artifacts)."""
    for run in runs:
        if run.artifacts_left:
            run.artifacts_left = not register_artifacts(call, run, refused)
    return any(run.artifacts_left for run in runs)
