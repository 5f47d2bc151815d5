"""``trainer env add NAME PYTHON | ls | rm NAME``: the Python environments runs can
name in their config's ``python_env`` (docs/WORKERS.md, "Your own environment"),
through the gateway (AddEnvironment, ListEnvironments, RemoveEnvironment)."""

from __future__ import annotations

import os

import click

from trainer.cli import errors
from trainer.client import TrainerError


def _who() -> str:
    return os.environ.get("USER", "cli")


@click.group("env")
def env() -> None:
    """The Python environments (venvs, conda envs) workers run in.

    A run config naming one ("python_env": NAME) has its worker started with that
    environment's interpreter and looked up among that environment's entry points."""


@env.command("add")
@click.argument("name")
@click.argument("python", metavar="PYTHON")
def add(name: str, python: str) -> None:
    """Register the interpreter PYTHON (e.g. ~/venvs/torch/bin/python, a path on the
    orchestrator's machine) as NAME. It is run once to record its version, sys.path
    and prefix, and refused if the trainer SDK is not installed in it. Adding the same
    interpreter again records what it says now."""
    path = os.path.abspath(os.path.expanduser(python))  # (a symlink is kept as it is)
    with errors.open_client() as c:
        try:
            got = c.add_env(name, path, added_by=_who())
        except TrainerError as err:
            raise errors.fail(err, c.address) from None
    e = got.environment
    what = "added" if got.created else "already registered, unchanged"
    click.echo(f"{e.name} {what}: {e.python} (Python {e.python_version}, SDK "
               f"{e.sdk_version}, prefix {e.prefix})")
    click.echo(f"workers: {', '.join(e.workers) if e.workers else 'none'}")


@env.command("ls")
@click.option("--all", "show_all", is_flag=True, help="Also the removed environments.")
def ls(show_all: bool) -> None:
    """The registered environments: name, Python version, SDK version, interpreter,
    and the workers their entry points name."""
    with errors.open_client() as c:
        try:
            found = c.envs(include_removed=show_all)
        except TrainerError as err:
            raise errors.fail(err, c.address) from None
    if not found:
        click.echo("no environment registered (trainer env add NAME PYTHON)")
        return
    table = [("NAME", "PYTHON", "SDK", "INTERPRETER", "WORKERS")]
    for e in found:
        table.append((e.name + (" (removed)" if e.removed else ""), e.python_version,
                      e.sdk_version, e.python, ", ".join(e.workers) or "-"))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[4])


@env.command("rm")
@click.argument("name")
@click.option("--reason", default="", help="Why (recorded in the environment's history).")
def rm(name: str, reason: str) -> None:
    """Remove the environment NAME: refused while a run that has not ended names it
    (the runs are listed). Ended runs keep the name in their config; rerunning one is
    refused until NAME is added again."""
    with errors.open_client() as c:
        try:
            e = c.remove_env(name, reason=reason, removed_by=_who())
        except TrainerError as err:
            raise errors.fail(err, c.address) from None
    click.echo(f"{e.name} removed ({e.python})")
