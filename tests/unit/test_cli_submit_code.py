"""`trainer submit` on a fake client: --python-env and --env-var become the config's
python_env and env_vars (a malformed NAME=VALUE is refused naming the flag), and a new
run of a config an earlier run has, with other code, says which run and what changed;
`show` prints the code at submit, at the attempt's start, and what differs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from trainer.cli import runs as cli_runs
from trainer_api.v1 import trainer_pb2 as pb

CODE = {"worker": "ppo", "distribution": "agent", "version": "0.3", "python": "3.11.7",
        "packages": {}, "git": {"commit": "a" * 40, "diff_sha256": ""}}


class FakeClient:
    address = "127.0.0.1:1"

    def __init__(self, reply: pb.SubmitRunResponse, run: pb.RunRecord | None = None) -> None:
        self.reply, self.run, self.configs = reply, run, []

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def submit(self, config: dict, submitted_by: str = "") -> pb.SubmitRunResponse:
        self.configs.append(config)
        return self.reply

    def get(self, run_id: str) -> pb.RunRecord:
        assert self.run is not None
        return self.run

    def artifacts(self, run_id: str) -> list:
        return []

    def watch(self, *a: Any, **kw: Any) -> Any:
        return iter(())


def invoke(monkeypatch: pytest.MonkeyPatch, fake: FakeClient, command: Any, *args: str) -> Any:
    monkeypatch.setattr(cli_runs, "client", lambda: fake)
    return CliRunner().invoke(command, list(args))


def test_python_env_and_env_vars_flags_go_into_the_config(monkeypatch) -> None:
    fake = FakeClient(pb.SubmitRunResponse(run=pb.RunRecord(run_id="r1"), created=True))
    got = invoke(monkeypatch, fake, cli_runs.submit, "--worker", "ppo", "--python-env", "torch",
                 "--env-var", "WANDB_MODE=offline", "--env-var", "EMPTY=")
    assert got.exit_code == 0, got.output
    assert fake.configs == [{"worker": "ppo", "python_env": "torch",
                             "env_vars": {"WANDB_MODE": "offline", "EMPTY": ""}}]
    bad = invoke(monkeypatch, fake, cli_runs.submit, "--env-var", "NOEQUALS")
    assert bad.exit_code == 2 and "--env-var" in bad.output and "NAME=VALUE" in bad.output


def test_a_new_run_of_a_known_config_says_which_run_and_what_changed(monkeypatch) -> None:
    reply = pb.SubmitRunResponse(run=pb.RunRecord(run_id="r2"), created=True,
                                 same_config_run_id="r1",
                                 code_changes=["commit aaaa -> bbbb", "uncommitted diff gone"])
    got = invoke(monkeypatch, FakeClient(reply), cli_runs.submit, "--seed", "1")
    assert got.exit_code == 0, got.output
    assert got.output == ("r2 submitted [UNSPECIFIED]  (a new run: r1 has the same config, "
                          "with other code: commit aaaa -> bbbb, uncommitted diff gone)\n")
    same = pb.SubmitRunResponse(run=pb.RunRecord(run_id="r1"), created=False)
    got = invoke(monkeypatch, FakeClient(same), cli_runs.submit, "--seed", "1")
    assert got.output == "r1 already exists (same config, same code) [UNSPECIFIED]\n"


def test_show_prints_both_identities_and_what_differs(monkeypatch) -> None:
    started = {**CODE, "git": {"commit": "b" * 40, "diff_sha256": "c" * 64}, "attempt": 2}
    run = pb.RunRecord(run_id="r1", config_json="{}", attempt=2, max_attempts=3,
                       code_digest="d" * 64, code_json=json.dumps(CODE),
                       attempt_code_json=json.dumps(started))
    got = invoke(monkeypatch, FakeClient(pb.SubmitRunResponse(), run), cli_runs.show, "r1")
    assert got.exit_code == 0, got.output
    lines = [line.strip() for line in got.output.splitlines()]
    assert f"code at submit  agent 0.3, git {'a' * 12}, python 3.11.7" in lines
    assert (f"at attempt 2  agent 0.3, git {'b' * 12} + uncommitted diff cccccccc, "
            "python 3.11.7") in lines
    assert (f"code differs  commit {'a' * 12} -> {'b' * 12}; uncommitted diff added") in lines
    assert "python env  - (the orchestrator's own)" in lines
    assert "resources  0 GPUs, 1 CPU slot, memory limit none" in lines


def test_show_prints_the_python_env_and_the_resources(monkeypatch) -> None:
    config = {"python_env": "torch", "resources": {"gpus": 1, "cpu_slots": 2,
                                                   "memory_limit_mb": 4096}}
    run = pb.RunRecord(run_id="r1", config_json=json.dumps(config))
    got = invoke(monkeypatch, FakeClient(pb.SubmitRunResponse(), run), cli_runs.show, "r1")
    lines = [line.strip() for line in got.output.splitlines()]
    assert "python env  torch" in lines
    assert "resources  1 GPU, 2 CPU slots, memory limit 4,096 MiB" in lines
