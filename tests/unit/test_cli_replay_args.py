"""`trainer replay` without an event log at the path is a usage error (exit 2), told
apart from a failed check (exit 1), as `python -m eventstore.audit` does."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trainer.cli.replay import replay

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("flag", ["--verify", "--export=out.jsonl", "--until-seq=1", "--until-time=1796620916"])
def test_no_event_log_is_exit_2_naming_the_path(tmp_path: Path, flag: str) -> None:
    missing = tmp_path / "nowhere.db"
    got = CliRunner().invoke(replay, ["--db", str(missing), flag])
    assert got.exit_code == 2 and "no event log at" in got.output and str(missing) in got.output
    assert not missing.exists()  # nothing created on the way
