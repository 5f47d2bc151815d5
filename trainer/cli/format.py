"""Plain-text rendering of runs for the CLI (no network, no I/O)."""

from __future__ import annotations

import json
import re
import time
from typing import Any, Iterable, Sequence

from google.protobuf import json_format

from trainer_api.v1 import trainer_pb2 as pb


# What a terminal acts on instead of showing: C0 and C1 controls, DEL, the Unicode line
# and paragraph separators, and the bidirectional overrides (text shown reversed).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_UNSAFE_IN_BLOCK = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
                              "\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: "re.Match[str]") -> str:
    ch = match.group()
    return _NAMED.get(ch) or (f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")


def clean(value: Any) -> str:
    """``value`` as one line of text safe for a terminal: every control character
    (newline, ESC, BEL, NUL, ...) shown escaped (``\\n``, ``\\x1b``, ``\\x07``)."""
    return _UNSAFE.sub(_escape, str(value))


def clean_block(text: str) -> str:
    """Lines of text (a message, log lines) safe for a terminal: newlines and tabs kept,
    a carriage return ending a line as a newline, every other control escaped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _UNSAFE_IN_BLOCK.sub(_escape, text)


def plain(struct: Any) -> Any:
    """A protobuf Struct as plain data, whole numbers shown as integers."""
    def fix(value: Any) -> Any:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value
    return fix(json_format.MessageToDict(struct))


def status_name(value: int) -> str:
    return pb.RunStatus.Name(value).removeprefix("RUN_STATUS_") if value in \
        pb.RunStatus.values() else "UNSPECIFIED"


def cause_name(value: int) -> str:
    name = pb.TerminalCause.Name(value) if value in pb.TerminalCause.values() else ""
    return name.removeprefix("TERMINAL_CAUSE_").lower() if value else ""


def config_of(run: pb.RunRecord) -> dict[str, Any]:
    try:
        return json.loads(run.config_json) if run.config_json else {}
    except ValueError:
        return {}


def age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def when(ts: Any) -> str:
    if not ts.seconds and not ts.nanos:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts.seconds))


def progress(run: pb.RunRecord) -> tuple[int, int, float, str]:
    """(step, budget, steps/s, return text) from the last heartbeat."""
    budget = int(config_of(run).get("steps", 0) or 0)
    if not run.HasField("last_heartbeat"):
        return 0, budget, 0.0, "-"
    hb = run.last_heartbeat
    ret = hb.mean_return if hb.HasField("mean_return") else (
        hb.last_return if hb.HasField("last_return") else None)
    return int(hb.step), budget, hb.steps_per_s, "-" if ret is None else f"{ret:.1f}"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Aligned columns; each cell on one line, its control characters escaped."""
    rows = [[clean(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


RUN_HEADERS = ("RUN", "NAME", "STATUS", "WORKER", "ENV", "PROGRESS", "RETURN", "GPUS", "AGE")
NAME_WIDTH = 24


def short(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, an ellipsis marking the cut."""
    return text if len(text) <= width else text[:width - 1] + "…"


def gpu_tail(uuid: str) -> str:
    """The last 8 characters of a GPU UUID (what tells GPUs apart), marked as cut."""
    return uuid if len(uuid) <= 8 else "…" + uuid[-8:]


def run_row(run: pb.RunRecord, now: float) -> list[str]:
    cfg = config_of(run)
    step, budget, _, ret = progress(run)
    status = status_name(run.status)
    if run.cause and status in ("FAILED", "CANCELLED"):
        status += f" ({cause_name(run.cause)})"
    status += "".join(f" {FLAG_MARK}{rule}" for rule in standing_flags(run))
    prog = f"{100 * step / budget:.0f}%" if budget and step else "-"
    if status == "COMPLETED":
        prog = "100%"
    return [run.run_id, short(clean(cfg.get("name") or "-"), NAME_WIDTH), status,
            cfg.get("worker", "-"), cfg.get("env", "-"), prog, ret,
            gpus_text(run), age(now - run.submitted_at.seconds)]


def gpus_text(run: pb.RunRecord) -> str:
    """`ls`'s GPUs: the tails of the claimed UUIDs, or the GPUs SLURM gave the run's
    job, as SLURM numbers them on its node (``slurm:0,1``)."""
    if run.gpus:
        return ",".join(gpu_tail(g) for g in run.gpus)
    return "slurm:" + ",".join(clean(g) for g in run.job_gpus) if run.job_gpus else "-"


def launcher_text(run: pb.RunRecord) -> str:
    """`show`'s launcher line: ``local``, ``slurm job 12, GPUs 0,1`` (SLURM's numbers,
    on the run's host); ``-`` before its worker started (or not recorded)."""
    if run.launcher != "slurm":
        return run.launcher or "-"
    gpus = ",".join(run.job_gpus) or "none"
    return f"slurm job {run.job_id or '?'}, GPUs {gpus}"


FLAG_MARK = "⚑"   # a standing liveness flag, in `ls` (docs/SUPERVISION.md)


def standing_flags(run: pb.RunRecord) -> list[str]:
    """The rules whose flag stands on the run's attempt under way (or its last one)."""
    attempt = run.attempt or 1
    return sorted({f.rule for f in run.flags
                   if not f.HasField("cleared_at") and (f.attempt or 1) == attempt})


def flag_lines(run: pb.RunRecord) -> list[str]:
    """`show`'s flag history, oldest first: rule, action, when flagged and cleared (or
    "stands"), the attempt, and the evidence of each."""
    out = []
    for f in run.flags:
        cleared = (f"cleared {when(f.cleared_at)} {json.dumps(plain(f.cleared_evidence))}"
                   if f.HasField("cleared_at") else "stands")
        out.append(f"  {FLAG_MARK} {clean(f.rule):<9} {clean(f.action):<10} flagged "
                   f"{when(f.flagged_at)} (attempt {f.attempt or 1}) "
                   f"{json.dumps(plain(f.evidence))}; {clean(cleared)}")
    return out


def attempt_text(run: pb.RunRecord) -> str:
    """The run's attempt out of its retry policy's ``max_attempts`` ("2/3"); an attempt
    past them (a rerun of a run whose retries were spent) as its number alone."""
    attempt, most = run.attempt or 1, run.max_attempts or 1
    return f"{attempt}/{most}" if attempt <= most else str(attempt)


def has_attempts(runs: Iterable[pb.RunRecord]) -> bool:
    """Whether any of the runs may have, or has had, more than one attempt."""
    return any(r.max_attempts > 1 or r.attempt > 1 for r in runs)


def runs_table(runs: Sequence[pb.RunRecord], now: float) -> str:
    """The table of `trainer ls` and `watch`: RUN_HEADERS, and an ATTEMPT column after
    STATUS only when some listed run has a retry policy or was retried or rerun (the
    table of single-attempt runs stays as it was)."""
    rows = [run_row(r, now) for r in runs]
    if not has_attempts(runs):
        return table(RUN_HEADERS, rows)
    at = RUN_HEADERS.index("STATUS") + 1
    headers = (*RUN_HEADERS[:at], "ATTEMPT", *RUN_HEADERS[at:])
    return table(headers, [[*row[:at], attempt_text(r), *row[at:]]
                           for row, r in zip(rows, runs)])


def bar(step: int, budget: int, width: int = 30) -> str:
    frac = min(1.0, step / budget) if budget else 0.0
    filled = int(frac * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {100 * frac:5.1f}%"


def resources_text(config: dict) -> str:
    """``2 GPUs, 4 CPU slots, memory limit 8,192 MiB`` from a config's ``resources``."""
    res = config.get("resources") or {}
    gpus, slots = int(res.get("gpus") or 0), int(res.get("cpu_slots") or 1)
    limit = int(res.get("memory_limit_mb") or 0)
    return (f"{gpus} GPU{'s' if gpus != 1 else ''}, {slots} CPU slot{'s' if slots != 1 else ''}"
            f", memory limit {f'{limit:,} MiB' if limit else 'none'}")
