"""What a run ran, through the real services (bus, registry, dispatcher, gateway):
a worker installed "editable" from a git checkout the test makes (its dist-info, with
PEP 610's direct_url.json, on the services' PYTHONPATH, as pip's editable install puts
it on sys.path). The identity is recorded at submit and at the attempt's start; the
same config with the same code is the same run; an uncommitted edit, then a commit,
each make a new run, and submit says which run had the config and what changed; code
edited between submit and start is what the attempt records, and `show` says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Iterator

import pytest
import zmq

from core.settings import Settings
from tests.helpers import wait_until
from tests.system.gateway import Gateway
from tests.system.stack import Stack
from trainer.client import Client
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(120)

WORKER = '''from worker.sdk import Run


def main():
    with Run.from_env() as run:
        run.log_metrics(1, answer=ANSWER)
    return 0
'''
CONFIG = {"worker": "test-codeid", "env": "CartPole-v1", "seed": 7}


def git(repo: str, *args: str) -> str:
    return subprocess.run(["git", "-C", repo, *args], check=True, capture_output=True,
                          text=True, env={**os.environ, "GIT_AUTHOR_NAME": "t",
                                          "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@t"}).stdout.strip()


def write_worker(repo: str, answer: int) -> None:
    with open(os.path.join(repo, "codeid_worker.py"), "w", encoding="utf-8") as fh:
        fh.write(WORKER.replace("ANSWER", str(answer)))


@pytest.fixture
def checkout(tmp_path) -> tuple[str, str]:
    """(the agent's git checkout, the folder holding its editable install's dist-info)."""
    repo, site = str(tmp_path / "agent"), str(tmp_path / "site")
    os.makedirs(repo)
    info = os.path.join(site, "codeid_agent-0.3.dist-info")
    os.makedirs(info)
    git(repo, "init", "-q")
    write_worker(repo, 1)
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    files = {"METADATA": "Metadata-Version: 2.1\nName: codeid-agent\nVersion: 0.3\n"
                         "Requires-Dist: numpy\n",
             "entry_points.txt": "[trainer.test_workers]\ntest-codeid = codeid_worker:main\n",
             "direct_url.json": json.dumps({"url": f"file://{repo}",
                                            "dir_info": {"editable": True}}),
             "RECORD": "", "INSTALLER": "pip\n"}
    for name, text in files.items():
        with open(os.path.join(info, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    return repo, site


@pytest.fixture
def services(service_env: dict[str, str], ctx: zmq.Context,
             checkout: tuple[str, str]) -> Iterator[tuple[Stack, Gateway]]:
    """bus + registry + gateway (the dispatcher is started by the test)."""
    repo, site = checkout
    path = os.pathsep.join(p for p in (site, repo, service_env.get("PYTHONPATH")) if p)
    env = {**service_env, "PYTHONPATH": path, "TRAINER_STATUS_INTERVAL": "0.5"}
    s = Stack(env, Settings.from_env(env), ctx)
    # (a registry answer may take more than the fixtures' 0.5 s on a loaded machine)
    gw = Gateway(s, extra_env={"TRAINER_GATEWAY_REGISTRY_TIMEOUT": "5"})
    try:
        s.start_bus()
        s.start_registry()
        gw.start()
        yield s, gw
    finally:
        gw.close()
        s.close()


def code_of(record: pb.RunRecord) -> tuple[dict, dict]:
    return (json.loads(record.code_json or "{}"), json.loads(record.attempt_code_json or "{}"))


def saved(path: str) -> None:
    wait_until(lambda: os.path.exists(path), 10, message=f"{path} to be written")


def completed(c: Client, run_id: str) -> pb.RunRecord:
    return wait_until(lambda: (r := c.get(run_id)).status == pb.RUN_STATUS_COMPLETED
                      and r.attempt_code_json and r, 60, message=f"{run_id} completed")


def test_the_same_config_after_a_code_change_is_a_new_run(
        services: tuple[Stack, Gateway], checkout: tuple[str, str]) -> None:
    stack, gw = services
    repo, _ = checkout
    first_commit = git(repo, "rev-parse", "HEAD")
    with gw.client() as c:
        # Submitted before a dispatcher runs: it waits, PENDING.
        first = c.submit(CONFIG)
        assert first.created and not first.same_config_run_id
        submitted, _ = code_of(first.run)
        assert submitted["worker"] == "test-codeid"
        assert submitted["distribution"] == "codeid-agent" and submitted["version"] == "0.3"
        assert submitted["git"]["commit"] == first_commit
        assert submitted["git"]["diff_sha256"] == "" and "numpy" in submitted["packages"]
        assert submitted["python"] == ".".join(map(str, sys.version_info[:3]))
        assert len(first.run.code_digest) == 64
        folder = os.path.join(stack.settings.runs_dir, first.run.run_id)
        # a clean checkout: no diff to save (the identity is in the log)
        assert not os.path.exists(os.path.join(folder, "code", "submit.diff"))

        again = c.submit(CONFIG)  # the same config, the same code: the same run
        assert not again.created and again.run.run_id == first.run.run_id

        # Edited (not committed) before the run starts: a new run of the same config...
        write_worker(repo, 2)
        edited = c.submit(CONFIG)
        assert edited.created and edited.run.run_id != first.run.run_id
        assert edited.same_config_run_id == first.run.run_id
        assert list(edited.code_changes) == ["uncommitted diff added"]
        edit_diff = os.path.join(stack.settings.runs_dir, edited.run.run_id, "code",
                                 "submit.diff")
        saved(edit_diff)
        with open(edit_diff, encoding="utf-8") as fh:
            assert "+        run.log_metrics(1, answer=2)" in fh.read()

        # ... and the first run, started now, runs the edited code: its attempt says so.
        stack.start_dispatcher()
        done = completed(c, first.run.run_id)
        at_submit, at_start = code_of(done)
        assert at_submit == submitted
        assert at_start["attempt"] == 1 and at_start["git"]["commit"] == first_commit
        assert at_start["git"]["diff_sha256"] == code_of(edited.run)[0]["git"]["diff_sha256"]
        arts = {a.path: a for a in c.artifacts(done.run_id)}
        assert arts["code/attempt-1.json"].kind == "code"
        assert os.path.isfile(os.path.join(folder, "code", "attempt-1.diff"))
        show = subprocess.run([sys.executable, "-m", "trainer.cli.main", "show",
                               done.run_id], env=gw.env, capture_output=True, text=True,
                              timeout=30)
        assert show.returncode == 0, show.stderr
        assert "code at submit" in show.stdout and "uncommitted diff added" in show.stdout
        assert f"git {first_commit[:12]}" in show.stdout

        # Committed: a new run again, and what changed is the commit (the diff is gone).
        git(repo, "commit", "-q", "-am", "answer 2")
        config_file = os.path.join(stack.settings.home, "config.json")
        with open(config_file, "w", encoding="utf-8") as fh:
            json.dump(CONFIG, fh)
        cli = subprocess.run([sys.executable, "-m", "trainer.cli.main", "submit", config_file],
                             env=gw.env, capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        second_commit = git(repo, "rev-parse", "HEAD")
        assert "submitted" in cli.stdout and "has the same config" in cli.stdout
        assert f"commit {first_commit[:12]} -> {second_commit[:12]}" in cli.stdout
        assert "uncommitted diff gone" in cli.stdout
        newest = cli.stdout.split()[0]
        assert completed(c, newest).status == pb.RUN_STATUS_COMPLETED
        assert code_of(c.get(newest))[1]["git"]["diff_sha256"] == ""
        # the user's checkout is as it was: nothing staged, nothing written
        assert git(repo, "status", "--porcelain") == ""
