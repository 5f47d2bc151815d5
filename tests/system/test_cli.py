"""Every `trainer` command against a real system under supervisord."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
import subprocess
import sys

import pytest

from tests.helpers import REPO, wait_until
from tests.system.supervised import System

pytestmark = pytest.mark.timeout(180)


def test_the_cli_from_up_to_down(system: System) -> None:
    health = system.ok("health")
    for name in ("bus", "registry", "dispatcher", "gateway"):
        assert f"{name} " in health and "DOWN" not in health
    out = system.ok("submit", "--worker", "test-sleep", "--env", "CartPole-v1", "--seed", "5",
                    "--wait")
    run_id = out.split()[0]
    assert "submitted" in out and f"{run_id} COMPLETED" in out
    again = system.ok("submit", "--worker", "test-sleep", "--env", "CartPole-v1",
                      "--seed", "5")
    assert again.startswith(run_id) and "already exists" in again
    listing = system.ok("ls")
    assert run_id in listing and "COMPLETED" in listing and "test-sleep" in listing
    shown = system.ok("show", run_id)
    for expected in ("COMPLETED", "ckpt.bin", "RunSubmitted", "RunStarted", "RunCompleted",
                     "GpusReleased"):
        assert expected in shown, shown
    assert "done" in system.ok("logs", run_id)
    refused = system.trainer("cancel", run_id, "--reason", "too late")
    assert refused.returncode != 0 and "failed_precondition" in refused.stderr
    bad = system.trainer("submit", "--env", "NoSuchEnv-v0")
    assert bad.returncode != 0 and "field env" in bad.stderr
    failing = system.trainer("submit", "--worker", "test-exit", "--env", "CartPole-v1",
                             "--wait")
    assert failing.returncode == 1 and "exit_code" in failing.stderr
    # the cause, the exit code and the worker's last stderr lines, as `show` prints them
    assert "FAILED: exit_code (exit code 3)" in failing.stderr, failing.stderr
    assert "failing on purpose" in failing.stderr, failing.stderr
    evil = system.trainer("submit", "--worker", "test-sleep", "--name",
                          "EVIL\nr000000000000  fake-row  COMPLETED")
    assert evil.returncode == 1 and "(field name)" in evil.stderr, evil.stderr
    assert "control characters" in evil.stderr and "\n" not in evil.stderr.strip()
    for tags, seed in ((["a", "b"], 11), (["b"], 12)):
        with open(os.path.join(system.home, f"t{seed}.json"), "w", encoding="utf-8") as fh:
            json.dump({"worker": "test-sleep", "seed": seed, "tags": tags}, fh)
        system.ok("submit", os.path.join(system.home, f"t{seed}.json"))
    both = [line.split()[0] for line in system.ok("ls", "--tag", "b", "--tag", "a")
            .splitlines()[1:] if line.startswith("r")]
    assert len(both) == 1 and "a, b" in system.ok("show", both[0])

    # the audit tool, on the live database
    assert "chain intact" in system.ok("replay", "--verify")
    history = system.ok("replay", "--run", run_id)
    # ... with the ArtifactRegistered of its attempt's code identity
    assert history.count("\n") == 7 and "RunCompleted" in history
    state = system.ok("replay", "--until-seq", "1")
    assert run_id in state and "PENDING" in state
    export = os.path.join(system.home, "log.jsonl")
    system.ok("replay", "--export", export)
    with open(export, encoding="utf-8") as fh:
        lines = [json.loads(line) for line in fh]
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    # `watch` redraws until interrupted: let it draw, then stop it
    watcher = subprocess.Popen([sys.executable, "-m", "trainer.cli.main", "watch", "--interval",
                                "0.2"], env=system.env, cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        seen = watcher.stdout.readline() if watcher.stdout else ""
        lines = [seen]
        while run_id not in "".join(lines) and len(lines) < 500:
            lines.append(watcher.stdout.readline() if watcher.stdout else "")
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
        if watcher.stdout:
            watcher.stdout.close()
    assert run_id in "".join(lines) and "COMPLETED" in "".join(lines), "".join(lines)
    tailed = system.ok("tail", "status.", "--count", "3", timeout=30)
    assert all(json.loads(line)["type"] == "ServiceStatus" for line in tailed.splitlines())


def test_up_waits_for_a_gateway_that_speaks_tls_with_a_token(trainer_home: str) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = os.path.join(trainer_home, "cert.pem"), os.path.join(trainer_home, "key.pem")
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    system = System(trainer_home)
    system.env.update({"TRAINER_GATEWAY_TLS_CERT": cert, "TRAINER_GATEWAY_TLS_KEY": key,
                       "TRAINER_GATEWAY_TOKEN": "s3cret-token"})
    try:
        up = system.trainer("up", "--timeout", "60", timeout=90)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "gateway " in up.stdout and "DOWN" not in up.stdout
        assert "RUN" in system.ok("ls")  # every command: TLS with the gateway's certificate
        system.env["TRAINER_GATEWAY_TOKEN"] = "wrong"
        refused = system.trainer("health")
        assert refused.returncode == 1 and "unauthenticated" in refused.stderr, refused.stderr
    finally:
        system.env["TRAINER_GATEWAY_TOKEN"] = "s3cret-token"
        system.trainer("down", timeout=90)


def test_replay_verify_on_thousands_of_events_then_names_a_tampered_one(system: System) -> None:
    for seed in range(3):
        system.ok("submit", "--worker", "test-sleep", "--env", "CartPole-v1", "--seed",
                  str(seed), "--wait")
    # Thousands more events through the real services: runs that ask for a GPU this
    # machine does not have are failed at once by the dispatcher (2 events each).
    from trainer.client import Client, default_token
    with Client(system.env["TRAINER_GATEWAY_ADDR"], default_token(system.env)) as c:
        def submit(i: int) -> str:
            return c.submit({"worker": "test-sleep", "env": "CartPole-v1", "seed": 1000 + i,
                             "resources": {"gpus": 1}}).run.run_id
        with ThreadPoolExecutor(8) as pool:  # (submits together share a code reading)
            ids = list(pool.map(submit, range(1500)))
        wait_until(lambda: c.health().last_seq >= 3 * 7 + 2 * len(ids), 60,
                   interval=0.5, message="every unschedulable run to be failed")
    assert "3021 events, chain intact" in system.ok("replay", "--verify", timeout=120)
    system.ok("down", timeout=90)
    db = sqlite3.connect(os.path.join(system.home, "events.db"))
    db.execute("DROP TRIGGER events_no_update")
    db.execute("UPDATE events SET caused_by = 'mallory' WHERE seq = 1234")
    db.commit()
    db.close()
    result = system.trainer("replay", "--verify", timeout=120)
    assert result.returncode == 1 and "seq 1234" in result.stderr, result.stderr


def test_make_demo_path_with_a_small_budget(trainer_home: str) -> None:
    env = {**os.environ, "TRAINER_HOME": trainer_home, "TRAINER_DEMO_STEPS": "20000"}
    env.pop("TRAINER_GATEWAY_ADDR", None)
    result = subprocess.run([sys.executable, os.path.join(REPO, "scripts", "demo.py")],
                            env=env, cwd=REPO, capture_output=True, text=True, timeout=150,
                            check=False)
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    for expected in ("trainer up", "COMPLETED", "eval-final.mp4", "checkpoint", "stdout.log",
                     "sweep-cartpole revision 1: 2 points x 3 seeds, 6 new runs",
                     "6 cells: 6 COMPLETED", "population=8", "sweep-cartpole.png",
                     "chain intact", "stopped"):
        assert expected in out, f"{expected!r} missing from the demo's output:\n{out}"


def test_restarting_each_service_in_turn_loses_no_run(system: System) -> None:
    config = os.path.join(system.home, "slow.json")
    with open(config, "w", encoding="utf-8") as fh:
        json.dump({"worker": "test-sleep", "env": "CartPole-v1",
                   "hyperparameters": {"seconds": 6}}, fh)
    ids = [system.ok("submit", config, "--seed", str(100 + i)).split()[0] for i in range(3)]
    wait_until(lambda: system.trainer("ls").stdout.count("RUNNING") == 2, 30,
               message="two runs running (2 CPU slots)")
    for name in ("bus", "registry", "dispatcher", "gateway"):
        result = system.supervisorctl("restart", name)
        assert result.returncode == 0, result.stdout + result.stderr
    def all_done() -> bool:
        rows = system.trainer("ls").stdout.splitlines()
        return all(any(r.startswith(i) and " COMPLETED" in r for r in rows) for i in ids)
    wait_until(all_done, 60, interval=0.5, message="every run to complete")
    assert "chain intact" in system.ok("replay", "--verify")
    for run_id in ids:
        shown = system.ok("show", run_id)
        assert "RunCompleted" in shown and "GpusReleased" in shown
