"""Schema versions of events.db, applied in order, each in its own transaction
together with its record in ``_migrations`` (as sqlite-utils' migrations do)."""

from __future__ import annotations

import sqlite3
import time
from typing import Callable

from eventstore.sqlitelib import sqlite_utils

from core.projection import RUN_COLUMNS
from eventstore.tables import create_projection_tables


def _m001_events(db: sqlite_utils.Database) -> None:
    db["events"].create({
        "seq": int, "stream": str, "version": int, "type": str, "schema_version": int,
        "payload": bytes, "caused_by": str, "correlation_id": str, "recorded_at": float,
        "hash": bytes,
    }, pk="seq", not_null=["stream", "version", "type", "schema_version", "payload",
                           "caused_by", "correlation_id", "recorded_at", "hash"])
    db["events"].create_index(["stream", "version"], unique=True,
                              index_name="events_stream_version")
    db.executescript("""
        CREATE TRIGGER events_no_update BEFORE UPDATE ON events
        BEGIN SELECT RAISE(ABORT, 'events is append-only: UPDATE is not allowed'); END;
        CREATE TRIGGER events_no_delete BEFORE DELETE ON events
        BEGIN SELECT RAISE(ABORT, 'events is append-only: DELETE is not allowed'); END;
        CREATE TRIGGER events_gapless BEFORE INSERT ON events
        WHEN NEW.seq IS NOT (SELECT IFNULL(MAX(seq), 0) + 1 FROM events)
        BEGIN SELECT RAISE(ABORT, 'events.seq must be the previous seq + 1'); END;
    """)


def _m002_projections(db: sqlite_utils.Database) -> None:
    create_projection_tables(db)


def _m003_requests(db: sqlite_utils.Database) -> None:
    # Replies to mutating commands by request id, so that a retry is not applied twice.
    db["requests"].create({"request_id": str, "method": str, "reply": bytes, "at": float},
                          pk="request_id", not_null=["method", "reply", "at"])
    db["requests"].create_index(["at"], index_name="requests_at")


def _m004_fewer_pages_per_commit(db: sqlite_utils.Database) -> None:
    # Every index a command touches is one more 4 KB page written to the WAL at COMMIT:
    # runs moves to submission order (rowid = submitted_seq, see create_projection_tables),
    # requests loses its `at` index (pruning walks the rowid, which grows with time) and
    # projection_state goes (the projections' position is MAX(runs.last_seq), since
    # every event rewrites its run's row in the same transaction).
    pk = [r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall() if r[5]]
    if pk != ["submitted_seq"]:
        db.execute("ALTER TABLE runs RENAME TO runs_v1")
        for index in ("runs_digest", "runs_status", "runs_submitted"):
            db.execute(f"DROP INDEX IF EXISTS {index}")
        create_projection_tables(db)
        old = {r[1] for r in db.execute("PRAGMA table_info(runs_v1)").fetchall()}
        cols = ", ".join(c for c in RUN_COLUMNS if c in old)  # (later columns: NULL)
        db.execute(f"INSERT INTO runs ({cols}) SELECT {cols} FROM runs_v1 "
                   "ORDER BY submitted_seq")
        db.execute("DROP TABLE runs_v1")
    db.execute("DROP INDEX IF EXISTS requests_at")
    db.execute("DROP TABLE IF EXISTS projection_state")


def _m005_digest_rule(db: sqlite_utils.Database) -> None:
    """Where whole floats in hyperparameters started to count as integers in the
    digest (core.digest): runs submitted up to ``before_seq`` may carry the older
    digest, so only a log that has such runs needs the second lookup."""
    db.execute("CREATE TABLE digest_rule (before_seq INTEGER NOT NULL)")
    db.execute("INSERT INTO digest_rule SELECT IFNULL(MAX(seq), 0) FROM events")


def _m006_run_result(db: sqlite_utils.Database) -> None:
    """runs.result: the recorded result of an ended run (canonical JSON, core.runresult),
    NULL when none was recorded (every run ended before it existed)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    if "result" not in cols:  # (a database made after this change has it already)
        db.execute("ALTER TABLE runs ADD COLUMN result TEXT")


def _m007_cancel_time(db: sqlite_utils.Database) -> None:
    """runs.cancel_requested_at: when a run's cancel was recorded (the CancelRequested
    event's time, filled in from the log for the runs cancelled before), so that a
    restarted dispatcher counts the cancel's grace from it."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    if "cancel_requested_at" not in cols:
        db.execute("ALTER TABLE runs ADD COLUMN cancel_requested_at REAL")
    db.execute("UPDATE runs SET cancel_requested_at = (SELECT recorded_at FROM events "
               "WHERE events.stream = 'run-' || runs.run_id AND events.type = 'CancelRequested' "
               "ORDER BY seq LIMIT 1) WHERE cancel_requested_at IS NULL")


def _m008_gpu_inventory(db: sqlite_utils.Database) -> None:
    """gpu_inventory: the GPUs that exist, as the dispatcher's last claim listed them
    (registry state, not a projection: the log does not hold it), so that a restarted
    registry refuses a claim naming another GPU before the dispatcher claims again."""
    db.execute("CREATE TABLE IF NOT EXISTS gpu_inventory (id INTEGER PRIMARY KEY "
               "CHECK (id = 1), gpu_uuids TEXT NOT NULL, recorded_at REAL NOT NULL)")


def _m009_attempts(db: sqlite_utils.Database) -> None:
    """runs.attempt, resume_from, latest_checkpoint, last_attempt_cause: a run's
    attempts (every run before had one) and its newest checkpoint artifact (filled in
    from the artifacts table), which a retried attempt resumes from."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    for name, sql in (("attempt", "INTEGER NOT NULL DEFAULT 1"),
                      ("resume_from", "TEXT NOT NULL DEFAULT ''"),
                      ("latest_checkpoint", "TEXT NOT NULL DEFAULT ''"),
                      ("last_attempt_cause", "TEXT NOT NULL DEFAULT ''")):
        if name not in cols:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql}")
    db.execute("UPDATE runs SET latest_checkpoint = IFNULL((SELECT path FROM artifacts "
               "WHERE artifacts.run_id = runs.run_id AND artifacts.kind = 'checkpoint' "
               "ORDER BY seq DESC LIMIT 1), '') WHERE latest_checkpoint IS NULL "
               "OR latest_checkpoint = ''")


def _m010_code_identity(db: sqlite_utils.Database) -> None:
    """runs.code_digest, code, attempt_code: the code identity a run was submitted with
    and the one its latest attempt started with (docs/CONFIG.md, "The same run"). A
    config no longer names one run: the unique index is on (digest, code_digest)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    for name, sql in (("code_digest", "TEXT NOT NULL DEFAULT ''"), ("code", "TEXT"),
                      ("attempt_code", "TEXT")):
        if name not in cols:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql}")
    db.execute("UPDATE runs SET code_digest = '' WHERE code_digest IS NULL")
    db.execute("DROP INDEX IF EXISTS runs_digest")
    create_projection_tables(db)


def _m011_envs(db: sqlite_utils.Database) -> None:
    """envs: the registered Python environments, one row per stream env-<name> (a
    removed one stays, marked removed). The log held none before: it starts empty."""
    create_projection_tables(db)


def _m012_experiments(db: sqlite_utils.Database) -> None:
    """experiments and experiment_cells: the experiments (one row per stream
    exp-<name>) and which runs are their cells; runs.experiment, the experiment a run
    was created as a cell of (none before)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    if "experiment" not in cols:
        db.execute("ALTER TABLE runs ADD COLUMN experiment TEXT NOT NULL DEFAULT ''")
    create_projection_tables(db)


def _m013_run_flags(db: sqlite_utils.Database) -> None:
    """runs.flags: a run's liveness flags, JSON (NULL: none; none before)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    if "flags" not in cols:
        db.execute("ALTER TABLE runs ADD COLUMN flags TEXT")


def _m014_run_launcher(db: sqlite_utils.Database) -> None:
    """runs.launcher, job_id, job_gpus: which launcher started the attempt's worker,
    its SLURM job and the GPUs SLURM gave it (RunStarted v3). Not recorded before:
    "", "" and [] (a rebuild of the old RunStarted events says the same)."""
    cols = {r[1] for r in db.execute("PRAGMA table_info(runs)").fetchall()}
    for name, sql in (("launcher", "TEXT NOT NULL DEFAULT ''"),
                      ("job_id", "TEXT NOT NULL DEFAULT ''"),
                      ("job_gpus", "TEXT NOT NULL DEFAULT '[]'")):
        if name not in cols:
            db.execute(f"ALTER TABLE runs ADD COLUMN {name} {sql}")


MIGRATIONS: list[tuple[str, Callable[[sqlite_utils.Database], None]]] = [
    ("001_events", _m001_events),
    ("002_projections", _m002_projections),
    ("003_requests", _m003_requests),
    ("004_fewer_pages_per_commit", _m004_fewer_pages_per_commit),
    ("005_digest_rule", _m005_digest_rule),
    ("006_run_result", _m006_run_result),
    ("007_cancel_time", _m007_cancel_time),
    ("008_gpu_inventory", _m008_gpu_inventory),
    ("009_attempts", _m009_attempts),
    ("010_code_identity", _m010_code_identity),
    ("011_envs", _m011_envs),
    ("012_experiments", _m012_experiments),
    ("013_run_flags", _m013_run_flags),
    ("014_run_launcher", _m014_run_launcher),
]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply the migrations not yet applied; return their names."""
    db = sqlite_utils.Database(conn)
    db["_migrations"].create({"name": str, "applied_at": float}, pk="name",
                             if_not_exists=True)
    done = {row["name"] for row in db["_migrations"].rows}
    applied = []
    for name, step in MIGRATIONS:
        if name in done:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            step(db)
            conn.execute("INSERT INTO _migrations(name, applied_at) VALUES (?, ?)",
                         (name, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        applied.append(name)
    return applied


def connect(path: str) -> sqlite3.Connection:
    """The registry's connection: autocommit mode (we issue BEGIN ourselves), WAL,
    synchronous=NORMAL, a busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=5000")
    # Hot pages (index roots, the last page of events and runs) are rewritten by every
    # commit: copy them back less often. The maintenance loop truncates the WAL anyway.
    conn.execute("PRAGMA wal_autocheckpoint=10000")
    return conn
