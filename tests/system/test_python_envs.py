"""A worker in its own Python environment, through the public API (bus, registry,
dispatcher with 2 fake GPUs, the gateway process, and the `trainer` command): a second
venv (the ``second_env`` fixture: only the SDK, pyzmq, msgpack and the worker
env-probe) is registered with `trainer env add`; a run naming it runs with that
interpreter, sees its env_vars, and completes; what is refused is refused naming the
field (an unknown environment, a worker not in it, a TRAINER_* variable, a path that
is no Python, an interpreter without the SDK, a name taken), removing the environment
is refused while a run that has not ended names it; and the log with its env events
still verifies (trainer replay --verify)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from tests.helpers import REPO, wait_until
from tests.system.gateway import Gateway, rpc_error
from tests.system.stack import Stack
from trainer.client import Client
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(120)

TERMINAL = {pb.RUN_STATUS_COMPLETED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_CANCELLED}


def trainer(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", *args], env=gw.env,
                          cwd=REPO, capture_output=True, text=True, timeout=60)


def probe_run(seed: int, **config: object) -> dict:
    return {"worker": "env-probe", "python_env": "second", "seed": seed,
            "heartbeat_interval_s": 0.2, "heartbeat_timeout_s": 10.0, **config}


def ended(c: Client, run_id: str) -> pb.RunRecord:
    return wait_until(lambda: (r := c.get(run_id)).status in TERMINAL and r, 60,
                      message=f"{run_id} to end")


def refused_field(fn, *args, **kw) -> str:
    err = rpc_error(fn, *args, **kw)
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT, err
    return err.field


def test_a_run_in_a_second_environment(dstack: Stack, second_env: str, tmp_path: Path) -> None:
    gw = Gateway(dstack).start()
    try:
        c = gw.client()
        added = trainer(gw, "env", "add", "second", second_env)
        assert added.returncode == 0, added.stdout + added.stderr
        assert f"second added: {second_env}" in added.stdout and "env-probe" in added.stdout
        [env] = c.envs()
        assert (env.name, env.python, env.sdk_version) == ("second", second_env, "0.1.0")
        assert env.prefix == str(Path(second_env).parent.parent)
        assert list(env.workers) == ["env-probe"]   # only its own: no cartpole there
        assert any(p.startswith(env.prefix) for p in env.sys_path)
        again = c.add_env("second", second_env)
        assert not again.created                     # the same again: nothing new
        listed = trainer(gw, "env", "ls")
        assert listed.returncode == 0 and "second" in listed.stdout and second_env in listed.stdout

        # What cannot be added is refused naming the field.
        assert refused_field(c.add_env, "second", "python3") == "python"   # not absolute
        not_python = tmp_path / "not-python"
        not_python.write_text("#!/bin/sh\nexit 0\n")
        not_python.chmod(0o755)
        assert refused_field(c.add_env, "other", str(not_python)) == "python"
        assert refused_field(c.add_env, "other", str(tmp_path / "nowhere")) == "python"
        assert refused_field(c.add_env, "bad.name", second_env) == "name"
        bare = tmp_path / "bare"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True,
                       timeout=60)
        err = rpc_error(c.add_env, "bare", str(bare / "bin" / "python"))
        assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.field == "python", err
        assert "SDK is not installed" in err.message and "pip install" in err.message
        taken = rpc_error(c.add_env, "second", sys.executable)
        assert taken.code == grpc.StatusCode.ALREADY_EXISTS, taken
        assert "trainer env rm second" in taken.message

        # The run: that interpreter, its env_vars, completed.
        run = c.submit(probe_run(1, env_vars={"MY_FLAG": "on", "PYTHONPATH": ""},
                                 hyperparameters={"vars": ["MY_FLAG", "TRAINER_ATTEMPT"]})).run
        done = ended(c, run.run_id)
        assert done.status == pb.RUN_STATUS_COMPLETED, (done, gw.log())
        folder = Path(dstack.settings.runs_dir) / run.run_id
        seen = json.loads((folder / "env_seen.json").read_text())
        assert seen["prefix"] == env.prefix and seen["executable"].startswith(env.prefix)
        assert seen["vars"] == {"MY_FLAG": "on", "TRAINER_ATTEMPT": "1"}
        assert not seen["grpc"] and not seen["services"]   # none of the orchestrator's
        assert '"in_env"' in (folder / "metrics.jsonl").read_text()   # through the SDK
        # its code identity: read from that environment's packages, at submit (by the
        # gateway, over the recorded sys.path) and at the start (by its own runner)
        at_submit, at_start = json.loads(done.code_json), json.loads(done.attempt_code_json)
        assert at_submit["distribution"] == "trainer-env-worker"
        assert at_submit["python"] == env.python_version
        assert "trainer-sdk" in at_submit["packages"] and "grpcio" not in at_submit["packages"]
        assert {k: v for k, v in at_start.items() if k != "attempt"} == at_submit

        # Refused at submit, naming the field.
        assert refused_field(c.submit, probe_run(2, python_env="nope")) == "python_env"
        assert refused_field(c.submit, probe_run(3, worker="cartpole")) == "worker"
        assert refused_field(c.submit, {"worker": "env-probe", "seed": 4}) == "worker"
        assert refused_field(c.submit, probe_run(5, env_vars={"TRAINER_X": "1"})) == \
            "env_vars.TRAINER_X"

        # Removal: refused while a run that has not ended names the environment.
        long = c.submit(probe_run(6, hyperparameters={"seconds": 60})).run
        wait_until(lambda: c.get(long.run_id).status == pb.RUN_STATUS_RUNNING, 30,
                   message="the long run running")
        busy = rpc_error(c.remove_env, "second")
        assert busy.code == grpc.StatusCode.FAILED_PRECONDITION and long.run_id in busy.message
        refused = trainer(gw, "env", "rm", "second")
        assert refused.returncode == 1 and long.run_id in refused.stderr, refused.stderr
        c.cancel(long.run_id)
        assert ended(c, long.run_id).status == pb.RUN_STATUS_CANCELLED
        removed = trainer(gw, "env", "rm", "second", "--reason", "done")
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert c.envs() == [] and [e.removed for e in c.envs(include_removed=True)] == [True]
        assert refused_field(c.submit, probe_run(7)) == "python_env"
        assert refused_field(c.rerun, run.run_id, force=True) == "python_env"
    finally:
        gw.close()
    audit = subprocess.run([sys.executable, "-m", "trainer.cli.main", "replay", "--verify",
                            "--no-anchor-ok", "--until-seq", "1000000"],
                           env={**os.environ, "TRAINER_HOME": dstack.settings.home}, cwd=REPO,
                           capture_output=True, text=True, timeout=60)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "projections match a rebuild" in audit.stdout
    assert "second -> " + second_env + " (removed)" in audit.stdout
