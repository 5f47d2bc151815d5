"""A run's folder, and the processes of its run, read into a decide.inputs.FolderRead.

The order is the contract (spawner.py): the exit record is read; if there is none,
whether a shim holds the run is read, and then the exit record again (a shim writes
it before it lets go of the run): "no shim, no exit record" read in that order is
final. What costs a scan of /proc (the run's processes, its group) is read only when
the decision needs it: a run whose shim is at work costs two opens and a flock.
"""

from __future__ import annotations

import json
import os
import shutil
import signal as signals
from typing import Any, Mapping, Optional

from core import rundir
from core.rundir import EXIT_FILE, KILL_FILE, MANIFEST_FILE, RESULT_FILE, WORKER_FILE
from runtime.atomicfile import atomic_file
from services.dispatcher import procs, spawner
from services.dispatcher.decide.inputs import (ExitRecord, FolderRead, KillRecord,
                                               ManifestEntry, WorkerRecord)
from services.dispatcher.logfollow import tail_lines

MAX_RESULT_BYTES = 1024 * 1024   # a larger result.json is not read


def has_exit_record(run_dir: str) -> bool:
    """Has the run's end been recorded (the launchers' cheap ``exited``)?"""
    return os.path.exists(os.path.join(run_dir, EXIT_FILE))


def write_kill_record(run_dir: str, record: KillRecord) -> str:
    """The kill just begun, beside the run (every launcher's ``record_kill``): "" if
    stored, else why not."""
    data = rundir.KillRecord(record.outcome, record.cause, record.message,
                             record.term_at, record.grace_s).to_map()
    try:
        with atomic_file(os.path.join(run_dir, KILL_FILE), durable=False) as fh:
            json.dump(data, fh)
    except OSError as exc:
        return str(exc)
    return ""


def read_folder(run_id: str, run_dir: str, held: bool = False) -> FolderRead:
    """The run's folder and processes. ``held``: its back end still holds the run (a
    SLURM job still active, slurmlauncher.py): what would end it is not read (no scan
    of /proc for its processes, none of its end's files)."""
    exit_map = spawner.read_json(os.path.join(run_dir, EXIT_FILE))
    shim_alive = False
    if exit_map is None:
        shim_alive = spawner.shim_alive(run_dir)
        if not shim_alive:  # written just before its shim let go of the run
            exit_map = spawner.read_json(os.path.join(run_dir, EXIT_FILE))
    worker = worker_record(spawner.read_json(os.path.join(run_dir, WORKER_FILE)))
    record = exit_record(exit_map)
    pgid = worker.pgid if worker is not None else None
    worker_alive = worker is not None and worker.start_time is not None and \
        procs.process_start_time(worker.pid) == worker.start_time
    processes: frozenset[int] = frozenset()
    group_alive = False
    if held:
        pass
    elif record is None and not shim_alive:
        # No shim is left to end what the run started: found by its process group and
        # by the run id in their environment (setsid does not lose them).
        processes = frozenset(procs.run_processes(run_id, pgid))
    elif record is not None and pgid is not None:
        group_alive = procs.group_alive(pgid)
    may_end = not held and ((record is not None and not group_alive) or
                            (record is None and not shim_alive and not processes))
    fields: dict[str, Any] = {}
    if may_end:
        metrics, problem, failure = read_result(run_dir)
        fields = {"manifest": read_manifest(run_dir), "metrics": metrics,
                  "result_problem": problem, "disk_free": disk_free(run_dir),
                  "result_cause": failure[0], "result_reason": failure[1]}
        if record is not None and record.exit_code != 0:
            fields["stderr_tail"] = tail_lines(run_dir)
    return FolderRead(run_id, worker=worker, exit=record,
                      kill=kill_record(spawner.read_json(os.path.join(run_dir, KILL_FILE))),
                      shim_alive=shim_alive, worker_alive=worker_alive,
                      group_alive=group_alive, processes=processes, **fields)


def _number(value: Any) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _attempt(data: Mapping[str, Any]) -> Optional[int]:
    """The attempt a shim recorded: None without one (a shim from before attempts were
    recorded, or one not given TRAINER_ATTEMPT), which counts as the run's current
    attempt."""
    attempt = _int(data.get("attempt"))
    return attempt if attempt is not None and attempt >= 1 else None


def worker_record(data: Optional[Mapping[str, Any]]) -> Optional[WorkerRecord]:
    """worker.json, also as written by a shim from before the run lock; None when it is
    absent or names no process."""
    if data is None:
        return None
    pid, pgid = _int(data.get("pid")), _int(data.get("pgid"))
    if pid is None or pgid is None or pid <= 0 or pgid <= 0:
        return None
    cores = data.get("cores")
    pinned = tuple(c for c in cores if _int(c) is not None) if isinstance(cores, list) else ()
    return WorkerRecord(pid, pgid, _number(data.get("start_time")),
                        _number(data.get("started_at")), pinned, _attempt(data))


def exit_record(data: Optional[Mapping[str, Any]]) -> Optional[ExitRecord]:
    if data is None:
        return None
    sig = _int(data.get("signal"))
    name = ""
    if sig is not None:
        try:
            name = signals.Signals(sig).name
        except ValueError:
            name = str(sig)
    return ExitRecord(_int(data.get("exit_code")), sig, name,
                      str(data.get("spawn_error") or ""),
                      _int(data.get("leftovers_killed")) or 0,
                      data.get("memory_exceeded") is True,
                      _int(data.get("memory_limit_mb")) or 0,
                      _number(data.get("memory_peak_mb")),
                      str(data.get("memory_enforced_by") or ""), _attempt(data))


def kill_record(data: Optional[Mapping[str, Any]]) -> Optional[KillRecord]:
    """kill.json; None when absent or not ours (torn or edited: the kill starts again)."""
    if data is None:
        return None
    term_at, grace = _number(data.get("term_at")), _number(data.get("grace_s"))
    if term_at is None or grace is None:
        return None
    return KillRecord(str(data.get("outcome", "")), str(data.get("cause", "")),
                      str(data.get("message", "")), term_at, grace)


def read_manifest(run_dir: str) -> tuple[ManifestEntry, ...]:
    """The artifacts the run's manifest lists that exist on disk, each with why it may
    not be registered ("" if it may); a torn last line (a killed worker) is skipped."""
    try:
        with open(os.path.join(run_dir, MANIFEST_FILE), encoding="utf-8") as fh:
            lines = fh.readlines()
    except FileNotFoundError:
        return ()
    except (OSError, ValueError):
        return ()
    out: list[ManifestEntry] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        path = entry.get("path") if isinstance(entry, dict) else None
        if not isinstance(path, str) or not os.path.exists(os.path.join(run_dir, path)):
            continue
        size = _int(entry.get("size")) or 0
        meta = entry.get("meta") if isinstance(entry.get("meta"), dict) else {}
        out.append(ManifestEntry(str(entry.get("kind", "file")), path, size, meta,
                                 outside_run_dir(run_dir, path)))
    return tuple(out)


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


def read_result(run_dir: str) -> tuple[Mapping[str, Any], str, tuple[str, str]]:
    """result.json's metrics, why there are none ("" when there are), and the typed
    cause and reason of a failure it records (the SDK's ``cause``: "" when none): a
    missing, huge or malformed file never keeps the run from ending."""
    path = os.path.join(run_dir, RESULT_FILE)
    try:
        size = os.path.getsize(path)
        if size > MAX_RESULT_BYTES:
            return {}, f"result.json has {size} bytes (more than {MAX_RESULT_BYTES})", ("", "")
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}, "the worker wrote no result.json", ("", "")
    except (OSError, ValueError) as exc:  # ValueError: bad JSON or text
        return {}, f"result.json cannot be read: {exc}", ("", "")
    if not isinstance(data, dict):
        return {}, "result.json has no metrics map", ("", "")
    cause, reason = data.get("cause"), data.get("reason")
    failure = (cause if isinstance(cause, str) else "",
               reason[:4000] if isinstance(reason, str) else "")
    metrics = data.get("metrics")
    if not isinstance(metrics, dict):
        return {}, "result.json has no metrics map", failure
    return metrics, "", failure


def disk_free(run_dir: str) -> Optional[int]:
    try:
        return shutil.disk_usage(run_dir).free
    except OSError:
        return None
