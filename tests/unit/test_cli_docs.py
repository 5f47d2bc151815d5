"""Every `trainer` command and option has help text and is documented in docs/CLI.md."""

from __future__ import annotations

import os

import click
import pytest

from tests.helpers import REPO
from trainer.cli.main import cli

with open(os.path.join(REPO, "docs", "CLI.md"), encoding="utf-8") as _fh:
    DOC = _fh.read()


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_command_has_help_and_is_documented(name: str) -> None:
    command = cli.commands[name]
    assert command.help and len(command.help) > 20, f"{name} has no help text"
    assert f"`trainer {name}" in DOC, f"docs/CLI.md does not document `trainer {name}`"
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{name} {param.opts} has no help text"
            assert any(opt in DOC for opt in param.opts), \
                f"docs/CLI.md does not mention {name} {param.opts}"
        else:
            assert (param.metavar or param.name.upper()) in DOC, \
                f"docs/CLI.md does not mention {name}'s argument {param.name}"
