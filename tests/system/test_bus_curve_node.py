"""The Node.js subscriber of docs/BUS.md (examples/js/curve_subscriber.js) reads the bus
over tcp + CURVE with a key of `trainer keys create`. Needs node and the example's
modules (`npm install` in examples/js, once); skipped without them (the suite never
goes to the network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Iterator

import pytest
import zmq

from bus.curvekeys import KeyStore
from core.settings import Settings
from tests.helpers import REPO, free_port, wait_until
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(60)

EXAMPLE = os.path.join(REPO, "examples", "js")
NODE = shutil.which("node")
needs_node = pytest.mark.skipif(
    NODE is None or not os.path.isdir(os.path.join(EXAMPLE, "node_modules", "zeromq")),
    reason="needs node and `npm install` in examples/js")


@pytest.fixture
def bus_only(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    env = {**service_env, "TRAINER_BUS_PUB": f"tcp://127.0.0.1:{free_port()}",
           "TRAINER_BUS_SUB": f"tcp://127.0.0.1:{free_port()}", "TRAINER_BUS_CURVE": "1"}
    s = Stack(env, Settings.from_env(env), ctx)
    try:
        s.start_bus()
        yield s
    finally:
        s.close()


def _node(stack: Stack, secret: str) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    store = KeyStore(stack.settings.home)
    env = {**stack.env, "TRAINER_BUS_CURVE_KEY": secret,
           "TRAINER_BUS_CURVE_SERVER": store.public_path("server")}
    try:
        return subprocess.run([NODE, os.path.join(EXAMPLE, "curve_subscriber.js"),
                               "status.bus", "2"], env=env, capture_output=True, text=True,
                              timeout=8)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -9, str(exc.stdout or ""), "timed out")


@needs_node
def test_the_node_subscriber_reads_the_bus_with_a_created_key(bus_only: Stack) -> None:
    store = KeyStore(bus_only.settings.home)
    store.create("node")
    got = _node(bus_only, store.secret_path("node"))
    assert got.returncode == 0, got.stderr
    lines = got.stdout.splitlines()
    assert lines[0] == f"listening on {bus_only.settings.bus_sub}"
    messages = [json.loads(line) for line in lines[1:]]
    assert [(m["topic"], m["type"], m["source"]) for m in messages] == \
        [("status.bus", "ServiceStatus", "bus")] * 2
    assert messages[0]["payload"]["pid"] == bus_only.bus.pid


@needs_node
def test_the_node_subscriber_gets_nothing_with_a_revoked_key(bus_only: Stack) -> None:
    store = KeyStore(bus_only.settings.home)
    public, _ = store.create("node")
    kept = os.path.join(bus_only.settings.home, "kept.key_secret")
    shutil.copy(store.secret_path("node"), kept)
    os.chmod(kept, 0o600)
    store.revoke("node")
    assert NODE is not None
    out_path = os.path.join(bus_only.settings.home, "node.out")
    env = {**bus_only.env, "TRAINER_BUS_CURVE_KEY": kept,
           "TRAINER_BUS_CURVE_SERVER": store.public_path("server")}
    with open(out_path, "w") as out:
        proc = subprocess.Popen([NODE, os.path.join(EXAMPLE, "curve_subscriber.js"),
                                 "status.bus", "1"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: public.decode() in bus_only.bus.log(), 10,
                   message="the broker to log the revoked key")
        # Statuses go on meanwhile (a subscriber with the services' key sees them);
        # the node subscriber, refused at its handshake, prints none.
        sub = bus_only.subscriber("status.bus", live=False)
        for _ in range(3):
            assert wait_until(lambda: sub.recv(100), 10, message="a bus status")
        assert proc.poll() is None
        with open(out_path, encoding="utf-8") as fh:
            assert fh.read().splitlines() == [f"listening on {bus_only.settings.bus_sub}"]
    finally:
        proc.kill()
        proc.wait(10)
