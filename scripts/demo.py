"""``make demo``: start the services under supervisord, submit a CartPole run, watch
its events arrive on the bus, cancel it, audit the event log, stop everything.

(The dispatcher and the CartPole worker are the next issues: until they land, the
run stays PENDING and the demo cancels it instead of training it.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import zmq

from bus.badframes import BadFrameLog
from bus.catchup import EventFollower, registry_fetch
from bus.codec import event_from_envelope
from bus.logs import service_logger
from bus.pubsub import Subscriber
from bus.rpc import RpcClient, Unavailable
from core.settings import Settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = {"worker": "cartpole", "env": "CartPole-v1", "seed": 1, "steps": 50_000,
          "video_every": 10}


def supervisor(home: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TRAINER_HOME": home}
    return subprocess.run([os.path.join(REPO, ".venv", "bin", args[0]), "-c",
                           os.path.join(REPO, "supervisor.conf"), *args[1:]],
                          env=env, capture_output=True, text=True, check=False)


def wait_for_registry(client: RpcClient, deadline_s: float) -> dict:
    end = time.monotonic() + deadline_s
    while True:
        try:
            return client.call("ping", timeout_s=0.5, retries=0)
        except Unavailable:
            if time.monotonic() > end:
                raise


def show(env) -> None:
    event = event_from_envelope(env)
    fields = {k: v for k, v in event.to_payload().items() if k not in ("run_id", "config")}
    print(f"  seq {env.seq:>3}  {event.TYPE:<16} run {event.run_id}  {fields}")


def main() -> int:
    home = os.environ.get("TRAINER_HOME") or tempfile.mkdtemp(prefix="trainer-demo-", dir="/tmp")
    os.environ["TRAINER_HOME"] = home
    os.makedirs(os.path.join(home, "logs"), mode=0o700, exist_ok=True)
    settings = Settings.from_env(os.environ)
    print(f"TRAINER_HOME={home}\nstarting the services under supervisord ...")
    started = supervisor(home, "supervisord")
    if started.returncode != 0:
        print(started.stdout, started.stderr, file=sys.stderr)
        return 1
    ctx = zmq.Context()
    client = RpcClient(ctx, settings.registry, "demo", timeout_s=3)
    sock = ctx.socket(zmq.SUB)
    sock.connect(settings.bus_sub)
    follower = EventFollower(Subscriber(sock, BadFrameLog(service_logger("demo"))),
                             registry_fetch(client))
    try:
        ping = wait_for_registry(client, 20)
        print(f"registry up (pid {ping['pid']}, log at seq {ping['head_seq']})")
        print(supervisor(home, "supervisorctl", "status").stdout.rstrip())
        first = client.call("submit", {"config": CONFIG, "submitted_by": "demo"})
        run_id = first["run"]["run_id"]
        again = client.call("submit", {"config": dict(reversed(CONFIG.items()))})
        print(f"submitted run {run_id} (created={first['created']}); the same config again "
              f"gives {again['run']['run_id']} (created={again['created']})")
        client.call("request_cancel", {"run_id": run_id, "requested_by": "demo",
                                       "reason": "demo: no dispatcher yet"})
        print("events on the bus (seq order, gaps filled from the registry):")
        seen = 0
        end = time.monotonic() + 10
        while seen < 3 and time.monotonic() < end:
            for env in follower.poll(0.2):
                show(env)
                seen += 1
        run = client.call("get_run", {"run_id": run_id})["run"]
        print(f"run {run_id}: {run['status']} ({run['cause']}, asked by "
              f"{run['cancel_requested_by']}: {run['cancel_reason']})")
    finally:
        sock.close(linger=0)
        client.close()
        ctx.term()
        print(supervisor(home, "supervisorctl", "shutdown").stdout.rstrip())
    audit = subprocess.run([sys.executable, "-m", "services.registry.audit", "--db",
                            settings.db_path], capture_output=True, text=True, check=False)
    print(f"audit: {(audit.stdout or audit.stderr).strip()}")
    print(f"event log: {settings.db_path}\nservice logs: {settings.logs_dir}/")
    return audit.returncode


if __name__ == "__main__":
    sys.exit(main())
