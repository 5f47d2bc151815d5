"""An experiment's creation is one transaction, also when the registry is SIGKILLed in
the middle of it: a 5,000-cell submit_experiment, the registry killed once it has
spent CPU on the request (before it could commit), leaves no run and no experiment
behind; the same request id sent again after the restart creates all of it, once; a
retry after that gets the first answer back, and the log audits clean."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest
import zmq

from bus.codec import Envelope, MessageType, encode
from tests.helpers import REPO, wait_until
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(120)

POINTS, SEEDS = 50, 100
SPEC = {"name": "big", "template": {"worker": "cartpole", "steps": 1000},
        "axes": {"hyperparameters.noise_std": [0.01 * (i + 1) for i in range(POINTS)]},
        "seeds": SEEDS}


def cpu_s(pid: int) -> float:
    """The process's user + system CPU time so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts(db_path: str) -> tuple[int, int, int]:
    """(runs of the experiment, experiments, cells) as stored."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return (conn.execute("SELECT COUNT(*) FROM runs WHERE experiment = 'big'").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM experiments").fetchone()[0],
                conn.execute("SELECT COUNT(*) FROM experiment_cells").fetchone()[0])
    finally:
        conn.close()


def test_a_registry_killed_mid_experiment_commits_all_of_it_or_nothing(stack: Stack) -> None:
    db = stack.settings.db_path
    before = cpu_s(stack.registry.pid)
    dealer = stack.socket(zmq.DEALER)
    dealer.connect(stack.settings.registry)
    dealer.send(encode(Envelope(type=MessageType.REQUEST.value, source="test", ts=0.0,
                                id="exp-big-1", payload={"method": "submit_experiment",
                                                         "args": {"spec": SPEC}})))
    # Killed once it has worked on the request for a while: well before its commit
    # (5,000 checked configs and appended runs take it a few CPU seconds here).
    wait_until(lambda: cpu_s(stack.registry.pid) - before >= 0.3, 30,
               message="the registry to work on the experiment")
    stack.registry.kill9()
    assert not dealer.poll(0), "the registry answered before it was killed"
    assert counts(db) == (0, 0, 0)    # nothing of the transaction survived

    stack.start_registry()
    c = stack.client(timeout_s=60, retries=0)
    first = c.call("submit_experiment", {"spec": SPEC}, request_id="exp-big-1")
    assert first["created"] == POINTS * SEEDS
    assert counts(db) == (POINTS * SEEDS, 1, POINTS * SEEDS)
    again = c.call("submit_experiment", {"spec": SPEC}, request_id="exp-big-1")
    assert again["created"] == first["created"]       # the first answer, not applied twice
    assert c.call("submit_experiment", {"spec": SPEC})["created"] == 0   # the same spec
    assert counts(db) == (POINTS * SEEDS, 1, POINTS * SEEDS)
    assert stack.registry.stop() == 0
    audit = subprocess.run([sys.executable, "-m", "eventstore.audit", "--db", db], cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
