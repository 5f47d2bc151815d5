"""``trainer replay``: the audit tool over the event log. Works on the live database
or a copy, read-only, without the services running."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import tempfile
from typing import Optional

import click

from bus.codec import unpack
from core.settings import Settings
from eventstore.audit import verify
from eventstore.reader import StoredEvent, UnreadableEvent, iter_events, stream_events
from eventstore.rebuild import rebuild


def _open(db: str) -> sqlite3.Connection:
    if not os.path.exists(db):
        raise click.ClickException(f"no event log at {db}")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def parse_time(text: str) -> float:
    """Unix seconds (``1796620916``, ``1796620916.5``) or ISO 8601
    (``2026-11-28T15:00``, local time unless it names a zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is neither unix seconds nor an ISO 8601 time",
                                 param_hint="--until-time") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


def _seq_at(conn: sqlite3.Connection, ts: float) -> int:
    """The last seq recorded at or before ``ts``."""
    row = conn.execute("SELECT MAX(seq) FROM events WHERE recorded_at <= ?", (ts,)).fetchone()
    return int(row[0] or 0)


def _refuse_until(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> None:
    if value is not None:  # a whole unix time read as a seq: the two are now apart
        raise click.UsageError(f"--until is gone (was {value!r} a seq or a time?): give "
                               "--until-seq N for a seq or --until-time T for a time "
                               "(unix seconds or ISO 8601)", ctx=ctx)


def _when(ts: Optional[float]) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).isoformat(sep=" ", timespec="milliseconds")


def describe(e: StoredEvent) -> str:
    """One line for one event: what happened and why, with the payload the projections
    see (upcast to the current schema, core/upcasting.py); raises UnreadableEvent."""
    p = e.current_payload()
    skip = {"run_id", "config", "digest"}
    detail = " ".join(f"{k}={v!r}" for k, v in p.items() if k not in skip and v not in ("", None))
    return (f"{e.seq:>8}  {_when(e.recorded_at)}  {e.type:<18} {detail}  "
            f"(by {e.caused_by or '?'})")


def print_state(conn: sqlite3.Connection, seq: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        dst = sqlite3.connect(os.path.join(scratch, "state.db"), isolation_level=None)
        try:
            try:
                n = rebuild(conn, dst, until_seq=seq)
            except UnreadableEvent as exc:
                raise click.ClickException(str(exc)) from None
            at = conn.execute("SELECT recorded_at FROM events WHERE seq = ?", (seq,)).fetchone()
            click.echo(f"state after seq {seq} ({n} events, {_when(at[0] if at else None)})")
            click.echo(f"{'RUN':<14} {'STATUS':<12} {'CAUSE':<18} {'GPUS':<30} LAST SEQ")
            for run_id, status, cause, gpus, last in dst.execute(
                    "SELECT run_id, status, cause, gpus, last_seq FROM runs ORDER BY "
                    "submitted_seq"):
                click.echo(f"{run_id:<14} {status:<12} {cause or '-':<18} "
                           f"{', '.join(json.loads(gpus)) or '-':<30} {last}")
            slots = dst.execute("SELECT gpu_uuid, run_id FROM gpu_slots ORDER BY gpu_uuid")
            rows = slots.fetchall()
            click.echo(f"GPU slots held: {len(rows)}")
            for uuid, run_id in rows:
                click.echo(f"  {uuid} -> {run_id}")
            envs = dst.execute("SELECT name, python, removed FROM envs ORDER BY name").fetchall()
            click.echo(f"environments: {sum(1 for e in envs if not e[2])}")
            for name, python, removed in envs:
                click.echo(f"  {name} -> {python}{' (removed)' if removed else ''}")
        finally:
            dst.close()


@click.command("replay")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="The event log to read (default: $TRAINER_HOME/events.db). A copy works.")
@click.option("--verify", "do_verify", is_flag=True,
              help="Rebuild every projection from seq 0 in a scratch database, compare it "
                   "table by table with the live one, check the hash chain, the seq and the "
                   "head in events.anchor; exit 1 naming the first difference.")
@click.option("--no-anchor-ok", is_flag=True,
              help="With --verify: accept a log without events.anchor (a truncated tail "
                   "then cannot be seen); without it, a missing anchor fails the check.")
@click.option("--until-seq", type=click.IntRange(min=0), metavar="N",
              help="Print the state of every run and every GPU slot after seq N.")
@click.option("--until-time", metavar="TIME",
              help="The same at a time: unix seconds or ISO 8601 (2026-11-28T15:00).")
@click.option("--until", hidden=True, expose_value=False, callback=_refuse_until,
              help="Removed: use --until-seq or --until-time.")
@click.option("--run", "run_id", metavar="RUN", help="Print one run's history, one line per "
              "event, with causes.")
@click.option("--export", "export", type=click.Path(dir_okay=False), metavar="FILE.jsonl",
              help="Write the whole log as JSON lines, one event per line.")
def replay(db: Optional[str], do_verify: bool, no_anchor_ok: bool, until_seq: Optional[int],
           until_time: Optional[str], run_id: Optional[str], export: Optional[str]) -> None:
    """Audit the event log: verify it, replay it to a moment, show a run's history or
    export it. Needs no running service."""
    path = db or Settings.from_env(os.environ).db_path
    until = until_seq is not None or until_time is not None
    if not (do_verify or until or run_id or export):
        raise click.UsageError("choose --verify, --until-seq, --until-time, --run or --export")
    if until_seq is not None and until_time is not None:
        raise click.UsageError("give --until-seq or --until-time, not both")
    at_time = parse_time(until_time) if until_time is not None else None
    if not os.path.exists(path):  # exit 2, as the audit module: not a failed check
        raise click.UsageError(f"no event log at {path} (give --db, or set TRAINER_HOME)")
    if do_verify:
        ok, message = verify(path, anchor_required=not no_anchor_ok)
        if not ok:
            raise click.ClickException(message)
        click.echo(message)
    conn = _open(path)
    try:
        if run_id:
            history = stream_events(conn, f"run-{run_id}")
            if not history:
                raise click.ClickException(f"run {run_id} has no events")
            for e in history:
                try:
                    click.echo(describe(e))
                except UnreadableEvent as exc:
                    raise click.ClickException(str(exc)) from None
        if until_seq is not None:
            print_state(conn, until_seq)
        elif at_time is not None:
            print_state(conn, _seq_at(conn, at_time))
        if export:
            n = 0
            with open(export, "w", encoding="utf-8") as fh:
                for e in iter_events(conn):
                    fh.write(json.dumps({
                        "seq": e.seq, "stream": e.stream, "version": e.version,
                        "type": e.type, "schema_version": e.schema_version,
                        "payload": unpack(e.payload), "caused_by": e.caused_by,
                        "correlation_id": e.correlation_id, "recorded_at": e.recorded_at,
                        "hash": e.hash.hex()}, sort_keys=True) + "\n")
                    n += 1
            click.echo(f"exported {n} events to {export}")
    finally:
        conn.close()
