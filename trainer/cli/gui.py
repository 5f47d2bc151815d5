"""``trainer gui``: the Qt GUI (trainer/gui, docs/GUI.md)."""

from __future__ import annotations

import sys
from typing import Optional

import click


@click.command("gui")
@click.option("--address", default=None, metavar="HOST:PORT",
              help="Gateway address (default: $TRAINER_GATEWAY_ADDR or 127.0.0.1:50055).")
@click.option("--token", default=None,
              help="Bearer token (default: $TRAINER_GATEWAY_TOKEN or "
                   "$TRAINER_HOME/gateway.token).")
def gui(address: Optional[str], token: Optional[str]) -> None:
    """Open the Qt GUI: the runs table (live over WatchRuns), the selected run's return
    curve, log and artifacts, submit and cancel, and the services' health. It talks to
    the gateway only (the public gRPC API); see docs/GUI.md."""
    from trainer.gui.app import main
    sys.exit(main(address, token))
