"""Time from a gateway restart (SIGTERM, new process launched at once) until a
retrying Client.watch gets a message again: ``.venv/bin/python bench/gateway_restart.py [N]``
(informational, not in the runner; uses the tests helpers for the stack)."""
import os, sys, tempfile, threading, time, shutil
sys.path.insert(0, os.getcwd())
import zmq
from core.settings import Settings
from tests.system.stack import Stack
from tests.system.gateway import Gateway
from tests.helpers import wait_until
from trainer.client import Client, TrainerError

home = tempfile.mkdtemp(prefix="th-", dir="/tmp")
env = {**os.environ, "TRAINER_HOME": home, "PYTHONUNBUFFERED": "1"}
for k in list(env):
    if k.startswith("TRAINER_") and k != "TRAINER_HOME":
        del env[k]

settings = Settings.from_env(env)
ctx = zmq.Context()
stack = Stack(env, settings, ctx)
stack.start_bus(); stack.start_registry()
gw = Gateway(stack, {"TRAINER_GATEWAY_WATCH_KEEPALIVE": "5"}).start()
c = Client(gw.addr, gw.token)
times = []
def reader():
    try:
        for msg in c.watch():
            times.append(time.monotonic())
    except Exception as exc:
        print("reader ended", exc)
threading.Thread(target=reader, daemon=True).start()
wait_until(lambda: times, 10)
reg = stack.client()
out = []
for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    t0 = time.monotonic()
    gw.proc.stop()
    t_exit = time.monotonic()
    n = len(times)
    mark = len(gw.log())
    gw.proc.start()
    t_launch = time.monotonic()
    wait_until(lambda: '"gateway.listening"' in gw.log()[mark:], 30, interval=0.005)
    t_listen = time.monotonic()
    from trainer_api.v1 import trainer_pb2 as pb, trainer_pb2_grpc as pbg
    import grpc
    ch = grpc.insecure_channel(gw.addr)
    first = next(pbg.TrainerServiceStub(ch).WatchRuns(pb.WatchRunsRequest(), metadata=gw.auth, wait_for_ready=True, timeout=10))
    t_fresh = time.monotonic(); ch.close()
    def ready():
        try:
            with Client(gw.addr, gw.token, timeout=1) as f:
                f.health()
            return True
        except TrainerError:
            return False
    wait_until(ready, 30, interval=0.01)
    t_ready = time.monotonic()
    reg.call("submit", {"config": {"seed": 1000 + i}})
    wait_until(lambda: len(times) > n, 30, interval=0.005)
    t_flow = times[n]
    out.append((t_ready - t0, t_flow - t0))
    print(f"  stop {t_exit - t0:.2f} s, launch->listening {t_listen - t_launch:.2f} s, listening->fresh watch msg {t_fresh - t_listen:.2f} s")
    print(f"  listening->retrying watch flows {t_flow - t_listen:.2f} s")
    print(f"restart {i}: gateway answers a new client after {t_ready - t0:.2f} s, "
          f"the retrying watch flows after {t_flow - t0:.2f} s", flush=True)
print("max flow", max(f for _, f in out))
c.close(); gw.close(); stack.close(); ctx.term(); shutil.rmtree(home, True)
