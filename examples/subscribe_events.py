"""Print live run events from the trainer bus. Needs only pyzmq and msgpack.

    TRAINER_HOME=~/.local/share/trainer python examples/subscribe_events.py [COUNT]

Committed domain events are published on topics ``event.<run_id>.<EventType>``;
each carries its global ``seq`` (see docs/BUS.md for every field).
"""
import os
import sys

import msgpack
import zmq

home = os.environ.get("TRAINER_HOME") or os.path.expanduser("~/.local/share/trainer")
endpoint = os.environ.get("TRAINER_BUS_SUB") or f"ipc://{home}/sock/bus-out"
count = int(sys.argv[1]) if len(sys.argv) > 1 else 0

sock = zmq.Context().socket(zmq.SUB)
sock.connect(endpoint)
sock.setsockopt(zmq.SUBSCRIBE, b"event.")
print(f"listening on {endpoint}", flush=True)
seen = 0
while not count or seen < count:
    topic, frame = sock.recv_multipart()
    env = msgpack.unpackb(frame, raw=False)
    p = env["payload"]
    extra = {k: v for k, v in p.items() if k not in ("run_id", "config")}
    print(f"seq={env['seq']} run={p['run_id']} {env['type']} {extra}", flush=True)
    seen += 1
