"""``trainer workers`` lists the workers installed here (importlib.metadata), the test
suite's only with TRAINER_TEST_WORKERS=1."""

from __future__ import annotations

from click.testing import CliRunner

from trainer.cli.main import cli


def _lines(env: dict[str, str]) -> dict[str, list[str]]:
    result = CliRunner().invoke(cli, ["workers"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "ENTRY", "POINT", "DISTRIBUTION", "VERSION"]
    return {line.split()[0]: line.split() for line in lines[1:]}


def test_workers_lists_the_installed_entry_points_with_their_distribution() -> None:
    from importlib import metadata
    listed = _lines({"TRAINER_TEST_WORKERS": "0"})
    version = metadata.version("trainer-orchestrator")
    assert listed["cartpole"] == ["cartpole", "worker.cartpole:main", "trainer-orchestrator",
                                  version]
    assert listed["qlearning"][1] == "worker.qlearning:main"
    assert not [name for name in listed if name.startswith("test-")]


def test_workers_lists_the_test_workers_only_with_the_setting() -> None:
    listed = _lines({"TRAINER_TEST_WORKERS": "1"})
    assert listed["test-mark"][1:3] == ["trainer_test_workers:mark", "trainer-test-workers"]
    assert "cartpole" in listed


def test_a_bad_setting_is_a_clear_error() -> None:
    result = CliRunner().invoke(cli, ["workers"], env={"TRAINER_TEST_WORKERS": "yes"})
    assert result.exit_code == 1 and "TRAINER_TEST_WORKERS" in result.output, result.output
