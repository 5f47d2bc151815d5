"""The bus on tcp with CURVE (TRAINER_BUS_CURVE=1), with real processes: a run's
heartbeats, metrics and artifacts arrive over it and the run completes; clients
without an authorised key (none, unknown, revoked, the wrong server key) get nothing
and the broker logs each once; endpoints beyond loopback without CURVE, and key files
others may read, stop a service at start."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from typing import Iterator

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from bus import curvekeys
from bus.curvekeys import ClientKeys, KeyStore
from tests.helpers import REPO, free_port, wait_until
from tests.system.dispatch_helpers import TERMINAL, run_dir, running_stack, submit, wait_status
from tests.system.gateway import Gateway
from tests.system.stack import Stack

pytestmark = pytest.mark.timeout(120)

REFUSED = "bus.client_refused"


def _tcp_env(service_env: dict[str, str], curve: str = "1") -> dict[str, str]:
    return {**service_env, "TRAINER_BUS_PUB": f"tcp://127.0.0.1:{free_port()}",
            "TRAINER_BUS_SUB": f"tcp://127.0.0.1:{free_port()}", "TRAINER_BUS_CURVE": curve,
            "TRAINER_CPU_SLOTS": "2", "TRAINER_STATUS_INTERVAL": "0.2"}


@pytest.fixture
def cstack(service_env: dict[str, str], ctx: zmq.Context) -> Iterator[Stack]:
    """bus (tcp + CURVE on both sides), registry (ipc) and dispatcher."""
    env = _tcp_env(service_env)
    with running_stack(env, ctx) as s:
        yield s


def _refusals(stack: Stack) -> list[dict]:
    lines = [json.loads(line) for line in stack.bus.log().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == REFUSED]


def test_a_run_reports_over_tcp_with_curve_and_completes(cstack: Stack) -> None:
    sub = cstack.subscriber("hb.", "metric.", "artifact.")
    run_id = submit(cstack, "cartpole", seed=3, steps=3000, checkpoint_every=1,
                    params={"final_eval_episodes": 2})
    seen: set[str] = set()
    def all_kinds() -> bool:
        msg = sub.recv(200)
        if msg is not None and msg.envelope.payload.get("run_id") == run_id:
            seen.add(msg.topic.split(".", 1)[0])
        return seen >= {"hb", "metric", "artifact"}
    wait_until(all_kinds, 60, message=f"heartbeats, metrics and artifacts of {run_id} "
                                      f"(seen {seen})")
    run = wait_status(cstack, run_id, TERMINAL, timeout=60)
    assert run["status"] == "COMPLETED" and run["exit_code"] == 0, run
    arts = cstack.client().call("list_artifacts", {"run_id": run_id})["artifacts"]
    assert "checkpoint" in {a["kind"] for a in arts}, arts
    # The worker's key came through its run folder, owner-only.
    folder = run_dir(cstack, run_id)
    key_file = os.path.join(folder, curvekeys.RUN_KEY_FILE)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert curvekeys.load_secret(key_file)[0] == KeyStore(
        cstack.settings.home).ensure(curvekeys.WORKERS)[0]
    assert _refusals(cstack) == []


class Client:
    """A SUB socket on the broker's subscriber side with a monitor of its handshakes."""

    def __init__(self, stack: Stack, keys: ClientKeys | None) -> None:
        self.sock = stack.socket(zmq.SUB)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"status.")
        self.monitor = self.sock.get_monitor_socket()
        self.events: list[int] = []
        curvekeys.connect(self.sock, stack.settings.bus_sub, keys)

    def failed(self) -> bool:
        while self.monitor.poll(0):
            self.events.append(recv_monitor_message(self.monitor)["event"])
        return any(e in (zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                         zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_DISCONNECTED)
                   for e in self.events)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)


def _trainer_keys(stack: Stack, *args: str) -> str:
    got = subprocess.run([sys.executable, "-m", "trainer.cli.main", "keys", *args],
                         env=stack.env, cwd=REPO, capture_output=True, text=True, timeout=30)
    assert got.returncode == 0, got.stderr
    return got.stdout


def _bus_status(stack: Stack) -> dict:
    sub = stack.subscriber("status.bus", live=False)
    msg = wait_until(lambda: sub.recv(100), 10, message="the bus's status")
    return msg.envelope.payload


def test_clients_without_an_authorised_key_get_nothing_and_are_logged_once(
        cstack: Stack) -> None:
    home = cstack.settings.home
    store = KeyStore(home)
    assert "alice authorised" in _trainer_keys(cstack, "create", "alice")
    alice = ClientKeys(*curvekeys.load_secret(store.secret_path("alice")),
                       curvekeys.load_public(store.public_path("server")))
    before = Client(cstack, alice)
    wait_until(lambda: before.sock.poll(100), 10, message="alice's key let in")
    assert "alice" in _trainer_keys(cstack, "ls")
    assert "alice revoked" in _trainer_keys(cstack, "revoke", "alice")
    unknown_pub, unknown_sec = zmq.curve_keypair()
    unknown = ClientKeys(unknown_pub, unknown_sec, alice.server)
    wrong_server = ClientKeys(alice.public, alice.secret, zmq.curve_keypair()[0])
    refused = {"revoked": [Client(cstack, alice), Client(cstack, alice)],
               "unknown": [Client(cstack, unknown), Client(cstack, unknown)],
               "no key": [Client(cstack, None)], "wrong server key": [Client(cstack, wrong_server)]}
    clients = [c for group in refused.values() for c in group]
    try:
        wait_until(lambda: all(c.failed() for c in clients), 20,
                   message="every refused client's handshake to fail")
        # The broker's status after the failures counts them: every one has been
        # through its loop (and its log) by then.
        wait_until(lambda: _bus_status(cstack)["counters"]["curve_refused"] >= len(clients), 10,
                   message="the broker to count the refusals")
        good = cstack.subscriber("status.bus")
        wait_until(lambda: good.recv(100), 10, message="a status message for a good key")
        for c in clients:
            assert c.sock.poll(0) == 0, "a refused client received a message"
        # A connection made before the revocation stays up (docs/BUS.md).
        assert before.sock.poll(5000)
        lines = _refusals(cstack)
        keyed = [(line["key"], line["reason"]) for line in lines if "key" in line]
        z85 = {k: v.decode() for k, v in (("alice", alice.public), ("unknown", unknown_pub))}
        assert sorted(keyed) == sorted([(z85["alice"], "key not authorised (Unknown key)"),
                                        (z85["unknown"], "key not authorised (Unknown key)")])
        sides = [line["reason"] for line in lines if line.get("side") == "subscribers"]
        assert len(sides) == len(set(sides)), f"a refusal logged twice: {sides}"
        assert any(r.startswith("the handshake does not decrypt") for r in sides), sides
        assert any(r.startswith(("no CURVE key", "the client broke off")) for r in sides), sides
    finally:
        for c in [*clients, before]:
            c.close()


def _start(env: dict[str, str], module: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("module", ["bus", "services.registry", "services.dispatcher"])
def test_an_endpoint_beyond_loopback_without_curve_stops_a_service(
        service_env: dict[str, str], module: str) -> None:
    env = {**_tcp_env(service_env, curve="0"), "TRAINER_BUS_SUB": f"tcp://0.0.0.0:{free_port()}"}
    got = _start(env, module)
    assert got.returncode == 2, got.stderr
    assert "bad setting TRAINER_BUS_SUB" in got.stderr and "TRAINER_BUS_CURVE=1" in got.stderr


def test_a_registry_beyond_loopback_stops_it_even_with_curve(service_env: dict[str, str]) -> None:
    env = {**_tcp_env(service_env), "TRAINER_REGISTRY": f"tcp://0.0.0.0:{free_port()}"}
    got = _start(env, "services.registry")
    assert got.returncode == 2 and "bad setting TRAINER_REGISTRY" in got.stderr, got.stderr


def test_a_secret_key_others_may_read_stops_the_bus(service_env: dict[str, str]) -> None:
    env = _tcp_env(service_env)
    store = KeyStore(env["TRAINER_HOME"])
    store.server_pair()
    os.chmod(store.secret_path("server"), 0o644)
    got = _start(env, "bus")
    assert got.returncode == 2, got.stderr
    assert "refusing to start" in got.stderr and "server.key_secret" in got.stderr
    assert "mode 644" in got.stderr


def test_the_gateway_follows_a_curve_bus(cstack: Stack) -> None:
    """The gateway's bus sockets use the services' key: it sees every service's status
    and a run's heartbeats."""
    gw = Gateway(cstack)
    try:
        gw.start()
        c = gw.client()
        wait_until(lambda: len((h := c.health()).services) >= 3 and all(
            s.alive for s in h.services), 20, message="every service alive in GetHealth")
        run_id = submit(cstack, "test-sleep", params={"seconds": 2.0})
        wait_until(lambda: c.get(run_id).HasField("last_heartbeat"), 20,
                   message="the run's heartbeat through the gateway")
        assert wait_status(cstack, run_id, TERMINAL, timeout=30)["status"] == "COMPLETED"
    finally:
        gw.close()
    assert _refusals(cstack) == []


def test_a_run_fails_to_start_when_the_workers_key_is_not_private(cstack: Stack) -> None:
    store = KeyStore(cstack.settings.home)
    store.ensure(curvekeys.WORKERS)
    os.chmod(store.secret_path(curvekeys.WORKERS), 0o644)
    run_id = submit(cstack, "test-sleep", params={"seconds": 0.1})
    run = wait_status(cstack, run_id, TERMINAL, timeout=30)
    assert run["status"] == "FAILED", run
    assert "workers.key_secret" in run["message"] and "mode 644" in run["message"], run
    assert not os.path.exists(os.path.join(run_dir(cstack, run_id), curvekeys.RUN_KEY_FILE))
    assert cstack.dispatcher.alive()


def _tail(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "trainer.cli.main", "tail", "status.bus",
                           "--count", "1"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=30)


def test_trainer_tail_reads_a_curve_bus_with_the_services_key(cstack: Stack) -> None:
    got = _tail(cstack.env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["topic"] == "status.bus"
    assert _refusals(cstack) == []


def test_trainer_tail_elsewhere_uses_the_key_files_its_environment_names(
        cstack: Stack, tmp_path) -> None:
    """As on another host: a TRAINER_HOME of its own (no keys), the broker's tcp
    endpoint, and the files of `trainer keys create` copied over."""
    store = KeyStore(cstack.settings.home)
    store.create("remote")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    for src in (store.secret_path("remote"), store.public_path("server")):
        dst = elsewhere / os.path.basename(src)
        shutil.copyfile(src, dst)
        dst.chmod(0o600)
    env = {**cstack.env, "TRAINER_HOME": str(elsewhere / "home"),
           curvekeys.KEY_VAR: str(elsewhere / "remote.key_secret"),
           curvekeys.SERVER_VAR: str(elsewhere / "server.key")}
    got = _tail(env)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["topic"] == "status.bus"
    assert not os.path.exists(elsewhere / "home" / "keys")   # no pair made there
    assert _refusals(cstack) == []
