"""The CURVE key files (bus/curvekeys.py), `trainer keys`, and which endpoints need CURVE
(core/exposure.py, checked by Settings.from_env)."""

from __future__ import annotations

import os
import stat

import pytest
import zmq.auth
from click.testing import CliRunner

from bus import curvekeys
from bus.curvekeys import KeyFileError, KeyStore
from core import exposure
from core.errors import ValidationError
from core.settings import Settings
from trainer.cli.main import cli

pytestmark = pytest.mark.timeout(30)


def _mode(path: str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("endpoint, remote", [
    ("tcp://127.0.0.1:5555", False), ("tcp://127.9.0.3:5555", False),
    ("tcp://localhost:5555", False), ("tcp://[::1]:5555", False),
    ("tcp://0.0.0.0:5555", True), ("tcp://*:5555", True), ("tcp://eth0:5555", True),
    ("tcp://10.0.0.7:5555", True), ("tcp://[::]:5555", True),
    ("tcp://127.0.0.1;10.0.0.7:5555", True), ("tcp://1270.0.0.1:1", True),
    ("ipc:///tmp/x", False), ("ipc://@abstract", False), ("inproc://x", False),
])
def test_which_endpoints_reach_beyond_this_host(endpoint: str, remote: bool) -> None:
    assert exposure.is_remote(endpoint) is remote


def _env(tmp_path, **more: str) -> dict[str, str]:
    return {"HOME": str(tmp_path), "TRAINER_HOME": str(tmp_path / "th"), **more}


@pytest.mark.parametrize("var", ["TRAINER_BUS_PUB", "TRAINER_BUS_SUB"])
def test_a_bus_endpoint_beyond_loopback_needs_curve(tmp_path, var: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings.from_env(_env(tmp_path, **{var: "tcp://0.0.0.0:5555"}))
    assert err.value.field == var
    assert "TRAINER_BUS_CURVE=1" in err.value.message
    ok = Settings.from_env(_env(tmp_path, **{var: "tcp://0.0.0.0:5555",
                                             "TRAINER_BUS_CURVE": "1"}))
    assert ok.bus_curve is True
    assert Settings.from_env(_env(tmp_path, **{var: "tcp://127.0.0.1:5555"})).bus_curve is False


def test_the_registry_never_listens_beyond_loopback(tmp_path) -> None:
    for curve in ("0", "1"):
        with pytest.raises(ValidationError) as err:
            Settings.from_env(_env(tmp_path, TRAINER_REGISTRY="tcp://*:5556",
                                   TRAINER_BUS_CURVE=curve))
        assert err.value.field == "TRAINER_REGISTRY" and "only local" in err.value.message
    assert Settings.from_env(_env(tmp_path, TRAINER_REGISTRY="tcp://127.0.0.1:5556"))


def test_the_store_makes_private_pairs_and_authorises_them(tmp_path) -> None:
    store = KeyStore(str(tmp_path))
    public, secret = store.ensure(curvekeys.SERVICES)
    assert store.ensure(curvekeys.SERVICES) == (public, secret)   # made once
    for folder in (store.dir, store.authorized, store.clients):
        assert _mode(folder) == 0o700
    assert _mode(store.secret_path(curvekeys.SERVICES)) == 0o600
    authorised = zmq.auth.load_certificates(store.authorized)
    assert list(authorised) == [public]
    keys = store.client(curvekeys.SERVICES)
    assert keys.server == store.server_pair()[0] and keys.public == public
    assert not [n for n in os.listdir(store.dir) if n.startswith(".new-")]


def test_a_replaced_pair_is_authorised_again(tmp_path) -> None:
    store = KeyStore(str(tmp_path))
    old, _ = store.ensure(curvekeys.WORKERS)
    os.unlink(store.secret_path(curvekeys.WORKERS))
    new, _ = store.ensure(curvekeys.WORKERS)
    assert new != old and list(zmq.auth.load_certificates(store.authorized)) == [new]


@pytest.mark.parametrize("which", ["secret", "folder", "authorized"])
def test_key_files_others_may_read_are_refused(tmp_path, which: str) -> None:
    store = KeyStore(str(tmp_path))
    store.ensure(curvekeys.SERVICES)
    path, mode = {"secret": (store.secret_path(curvekeys.SERVICES), 0o644),
                  "folder": (store.dir, 0o755),
                  "authorized": (store.authorized, 0o750)}[which]
    os.chmod(path, mode)
    with pytest.raises(KeyFileError) as err:
        store.client(curvekeys.SERVICES)
    assert err.value.field == path
    assert f"mode {mode:o}" in err.value.message and "chmod" in err.value.message


def test_a_worker_reads_its_keys_from_the_files_its_environment_names(tmp_path) -> None:
    store = KeyStore(str(tmp_path / "home"))
    run = tmp_path / "run"
    run.mkdir()
    env = store.issue_run_keys(str(run))
    assert env == {curvekeys.KEY_VAR: str(run / curvekeys.RUN_KEY_FILE),
                   curvekeys.SERVER_VAR: str(run / curvekeys.RUN_SERVER_FILE)}
    assert _mode(env[curvekeys.KEY_VAR]) == 0o600
    keys = curvekeys.keys_from_env(env)
    assert keys is not None
    assert keys.public == store.ensure(curvekeys.WORKERS)[0]
    assert keys.server == store.server_pair()[0]
    assert curvekeys.keys_from_env({}) is None
    with pytest.raises(ValidationError) as err:
        curvekeys.keys_from_env({curvekeys.KEY_VAR: env[curvekeys.KEY_VAR]})
    assert err.value.field == curvekeys.SERVER_VAR
    os.chmod(env[curvekeys.KEY_VAR], 0o640)
    with pytest.raises(KeyFileError, match="mode 640"):
        curvekeys.keys_from_env(env)
    with pytest.raises(KeyFileError, match="no secret key"):
        curvekeys.load_secret(env[curvekeys.SERVER_VAR])


def _trainer(home: str, *args: str):
    return CliRunner().invoke(cli, ["keys", *args], env={"TRAINER_HOME": home},
                              catch_exceptions=False)


def test_trainer_keys_create_ls_revoke(tmp_path) -> None:
    home = str(tmp_path / "th")
    assert "no authorised key" in _trainer(home, "ls").output
    made = _trainer(home, "create", "alice")
    assert made.exit_code == 0, made.output
    store = KeyStore(home)
    public = zmq.auth.load_certificate(store.secret_path("alice"))[0].decode()
    assert f"public key {public}" in made.output
    assert store.secret_path("alice") in made.output and store.public_path("server") in made.output
    assert _mode(store.secret_path("alice")) == 0o600
    again = _trainer(home, "create", "alice")
    assert again.exit_code == 1 and "exists already" in again.output
    listed = _trainer(home, "ls").output.splitlines()
    assert [line.split()[:2] for line in listed] == [["alice", public]]
    gone = _trainer(home, "revoke", "alice")
    assert gone.exit_code == 0 and "revoked" in gone.output
    assert not os.path.exists(store.secret_path("alice"))
    assert zmq.auth.load_certificates(store.authorized) == {}
    assert _trainer(home, "revoke", "alice").exit_code == 1


@pytest.mark.parametrize("args, said", [
    (("create", "Bad Name"), "must be 1-63"), (("create", "services"), "services"),
    (("revoke", "workers"), "authorised again"), (("revoke", "../x"), "must be 1-63"),
])
def test_trainer_keys_refuses_bad_names(tmp_path, args: tuple[str, ...], said: str) -> None:
    got = _trainer(str(tmp_path / "th"), *args)
    assert got.exit_code == 1 and said in got.output, got.output
