"""``trainer workers``: the workers installed here, read from the local installation
(``importlib.metadata``), not asked of the services."""

from __future__ import annotations

import os

import click

from core.errors import ValidationError
from core.settings import Settings
from runtime.workers import groups, installed


def rows(test_workers: bool) -> list[tuple[str, str, str, str]]:
    """(name, entry point value, distribution, version) per installed worker, by name."""
    out = []
    for ep in installed(test_workers):
        dist = ep.dist
        out.append((ep.name, ep.value, dist.name if dist is not None else "?",
                    dist.version if dist is not None else "?"))
    return sorted(out)


@click.command("workers")
def workers() -> None:
    """List the installed workers: name, entry point, distribution and version.

    Read from this machine's Python installation (the entry points of the group
    trainer.workers, with importlib.metadata), not from the services: run it in the
    environment the dispatcher runs in. The test suite's workers (trainer.test_workers)
    are listed only where TRAINER_TEST_WORKERS=1."""
    try:
        test_workers = Settings.from_env(os.environ).test_workers
    except ValidationError as exc:
        raise click.ClickException(str(exc)) from None
    table = [("NAME", "ENTRY POINT", "DISTRIBUTION", "VERSION"), *rows(test_workers)]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[3])
    if len(table) == 1:
        click.echo(f"no worker installed (no entry point in {' or '.join(groups(test_workers))})")
