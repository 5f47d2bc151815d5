"""``trainer keys create NAME | ls | revoke NAME``: the CURVE client keys that may use the
bus's tcp endpoints (docs/BUS.md, "tcp endpoints and CURVE"). Works on the files of
TRAINER_HOME/keys directly (no service needed); the broker reads the authorised keys
again at the next connection's handshake."""

from __future__ import annotations

import time

import click

from bus.curvekeys import SERVER, KeyStore
from core.errors import ValidationError
from trainer.cli import errors


def _store() -> KeyStore:
    return KeyStore(errors.load_settings().home)


def _refused(exc: ValidationError) -> errors.CliError:
    return errors.CliError(exc.message)


@click.group("keys")
def keys() -> None:
    """The CURVE client keys of the bus's tcp endpoints (TRAINER_BUS_CURVE=1).

    A worker or subscriber on another host connects with a key made here and the
    broker's public key (TRAINER_HOME/keys/server.key)."""


@keys.command("create")
@click.argument("name")
def create(name: str) -> None:
    """Make the client key pair NAME and authorise it: prints its public key, its secret
    file (0600, to copy to the client's host) and the broker's public key file."""
    store = _store()
    try:
        public, secret_file = store.create(name)
        store.server_pair()
    except ValidationError as exc:
        raise _refused(exc) from None
    click.echo(f"{name} authorised: public key {public.decode('ascii')}")
    click.echo(f"secret key file: {secret_file}")
    click.echo(f"broker's public key file: {store.public_path(SERVER)}")


@keys.command("ls")
def ls() -> None:
    """The authorised keys: name, public key and when it was authorised."""
    try:
        rows = _store().listing()
    except ValidationError as exc:
        raise _refused(exc) from None
    if not rows:
        click.echo("no authorised key (the services make theirs at their first start "
                   "with TRAINER_BUS_CURVE=1)")
        return
    width = max(len(name) for name, _, _ in rows)
    for name, public, mtime in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(mtime))
        click.echo(f"{name.ljust(width)}  {public}  {when}")


@keys.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke the client key NAME: the broker refuses its next connection (one already
    made stays up until it breaks or the bus restarts); its files are deleted."""
    try:
        _store().revoke(name)
    except ValidationError as exc:
        raise _refused(exc) from None
    click.echo(f"{name} revoked: new connections with it are refused "
               "(restart the bus to cut one already made)")
