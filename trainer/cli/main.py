"""``trainer``: start and stop the services, submit and follow runs, audit the log."""

from __future__ import annotations

import sys

import click

from trainer.cli.pyenvs import env
from trainer.cli.gui import gui
from trainer.cli.keys import keys
from trainer.cli.replay import replay
from trainer.cli.runs import cancel, logs, ls, rerun, show, submit, watch
from trainer.cli.stack import down, health, up
from trainer.cli.sweeps import sweep
from trainer.cli.tail import tail
from trainer.cli.workers import workers


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """The trainer orchestrator: long-running RL training jobs that never get lost."""


for command in (up, down, health, submit, ls, show, watch, logs, cancel, rerun, replay, tail,
                gui, workers, env, sweep, keys):
    cli.add_command(command)


def main() -> int:
    try:
        cli.main(standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
