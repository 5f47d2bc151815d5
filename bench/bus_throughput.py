"""3. Bus throughput through the broker: ~200-byte envelopes (bus.codec.encode of an
Envelope) sent by a bus.pubsub.Publisher through our broker process (`python -m bus`)
to one bus.pubsub.Subscriber, vs plain pyzmq PUB -> bare zmq.proxy (XSUB/XPUB, its
own process, same high-water marks as our broker) -> SUB, with the same bytes
(msgpack.packb of the same map) and plain msgpack.unpackb at the subscriber.

Flat out: messages/s delivered to the subscriber (drops allowed, reported). Paced:
a fixed rate the raw path sustains; every sequence number must arrive (0 gaps).
A third, informational path sends the raw client through *our* broker, to tell
the broker's cost from the client library's.

Child roles:
    python -m bench.bus_throughput proxy XSUB_ENDPOINT XPUB_ENDPOINT
    python -m bench.bus_throughput pub ours|raw ENDPOINT TOPIC
"""

from __future__ import annotations

import json
import os
import select
import sys
import time
from typing import Any, Callable, Optional

import zmq

from bench.common import Lab
from bench.table import Row, median

HWM = 10_000          # what bus/__main__.py sets on the broker's XSUB and XPUB
FLAT_TARGET = 0.7
TOPICS = {"ours": "metric.r000000000001", "raw": "metric.r000000000002",
          "raw-via-ours": "metric.r000000000003"}


def payload(seq: int) -> dict[str, Any]:
    return {"run_id": "r000000000001", "seq": seq, "step": seq * 64, "episode": seq // 10,
            "values": {"reward": 187.5, "loss": 0.0421, "entropy": 0.611, "fps": 8123.4,
                       "lr": 0.0003, "kl": 0.0123, "clip": 0.118}}


def envelope_map(seq: int, ts: float) -> dict[str, Any]:
    """The exact map bus.codec.Envelope.to_map() gives for the same message."""
    return {"v": 1, "type": "Metrics", "source": "bench", "ts": ts, "payload": payload(seq)}


# --- child: the bare proxy ------------------------------------------------------------

def proxy_main(xsub_ep: str, xpub_ep: str) -> None:
    ctx = zmq.Context()
    xsub, xpub = ctx.socket(zmq.XSUB), ctx.socket(zmq.XPUB)
    xsub.setsockopt(zmq.RCVHWM, HWM)
    xpub.setsockopt(zmq.SNDHWM, HWM)
    xsub.bind(xsub_ep)
    xpub.bind(xpub_ep)
    zmq.proxy(xsub, xpub)  # until SIGTERM


# --- child: a publisher -----------------------------------------------------------------

class _Stdin:
    """Line reads on fd 0 without read-ahead, and a check for a waiting line."""

    def __init__(self) -> None:
        self.buf = b""

    def ready(self, timeout: float) -> bool:
        return b"\n" in self.buf or bool(select.select([0], [], [], timeout)[0])

    def line(self) -> Optional[dict[str, Any]]:
        while b"\n" not in self.buf:
            chunk = os.read(0, 4096)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)


def pub_main(kind: str, endpoint: str, topic: str) -> None:
    import msgpack
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.connect(endpoint)
    send: Callable[[int], None]
    if kind == "ours":
        from bus.codec import Envelope
        from bus.pubsub import Publisher
        publisher = Publisher(sock, "bench")
        def send(seq: int) -> None:
            publisher.send(topic, Envelope(type="Metrics", source="bench", ts=time.time(),
                                           payload=payload(seq)))
    else:
        btopic, packb, send_multipart = topic.encode(), msgpack.packb, sock.send_multipart
        def send(seq: int) -> None:
            send_multipart([btopic, packb(envelope_map(seq, time.time()))])
    stdin = _Stdin()
    try:
        while (cmd := stdin.line()) is not None:
            if cmd["op"] == "warm":  # seq 0 until the subscriber has seen one
                k = 0
                while not stdin.ready(0.005):
                    send(0)
                    k += 1
                reply: dict[str, Any] = {"warm": k}
            else:
                reply = _blast(send, cmd["n"], cmd.get("rate", 0))
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
    finally:
        sock.close(linger=1000)
        ctx.destroy(linger=0)


def _blast(send: Callable[[int], None], n: int, rate: float) -> dict[str, Any]:
    clock = time.perf_counter
    t0 = clock()
    if not rate:
        for seq in range(1, n + 1):
            send(seq)
    else:
        seq = 1
        while seq <= n:
            due = min(n, int((clock() - t0) * rate) + 1)
            while seq <= due:
                send(seq)
                seq += 1
            if seq <= n:
                time.sleep(0.0002)  # pacing, not synchronisation
    return {"sent": n, "elapsed": clock() - t0}


# --- the parent: subscriber and measurement --------------------------------------------

class Path:
    def __init__(self, lab: Lab, name: str, pub_kind: str, pub_ep: str, sub_ep: str) -> None:
        topic = TOPICS[name]
        self.name = name
        self.pub = lab.module("bench.bus_throughput", "pub", pub_kind, pub_ep, topic,
                              control=True)
        self.sock = lab.socket(zmq.SUB)
        self.sock.connect(sub_ep)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
        if pub_kind == "ours":
            from bus.badframes import BadFrameLog
            from runtime.logs import service_logger
            from bus.pubsub import Subscriber
            sub = Subscriber(self.sock, BadFrameLog(service_logger("bench")))
            def seq_of() -> int:
                msg = sub.recv_nowait()
                return -1 if msg is None else msg.envelope.payload["seq"]
        else:
            import msgpack
            recv, unpackb = self.sock.recv_multipart, msgpack.unpackb
            def seq_of() -> int:
                return unpackb(recv()[1])["payload"]["seq"]
        self.seq_of = seq_of

    def measure(self, n: int, rate: float = 0) -> dict[str, Any]:
        """Warm the path until a message arrives, then send seq 1..n and count."""
        self.pub.send({"op": "warm"})
        if not self.sock.poll(30_000):
            raise RuntimeError(f"{self.name}: no warm-up message: {self.pub.log_tail()}")
        self.pub.send({"op": "go", "n": n, "rate": rate})
        self.pub.recv()  # the warm reply
        seen = bytearray(n + 1)
        got = out_of_order = last = 0
        t_first = t_last = 0.0
        sent: Optional[dict[str, Any]] = None
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.pub.stdout_fd, zmq.POLLIN)
        seq_of, clock, sock_poll = self.seq_of, time.perf_counter, self.sock.poll
        while True:
            ready = dict(poller.poll(500 if sent else 30_000))
            if not ready:
                break  # the publisher is done and nothing came for 0.5 s
            if self.pub.stdout_fd in ready:
                poller.unregister(self.pub.stdout_fd)  # one reply; EOF must not spin
                sent = self.pub.recv()
            if self.sock in ready:
                while True:  # drain without the poller's overhead per message
                    seq = seq_of()
                    if seq > 0:
                        if not got:
                            t_first = clock()
                        t_last = clock()
                        if not seen[seq]:
                            seen[seq] = 1
                            got += 1
                        out_of_order += seq < last
                        last = seq
                    if got == n or not sock_poll(0):
                        break
                if got == n and sent is not None:
                    break
        if sent is None:
            sent = self.pub.recv()
        span = t_last - t_first
        return {"got": got, "gaps": n - got, "out_of_order": out_of_order,
                "rate": (got - 1) / span if span > 0 else 0.0,
                "pub_rate": n / sent["elapsed"]}


def run(quick: bool = False) -> list[Row]:
    n = 50_000 if quick else 200_000
    repeats = 1 if quick else 3
    paced_rate, paced_s = 20_000, (1.0 if quick else 3.0)
    with Lab("tb-bus-") as lab:
        lab.start_bus()
        raw_in, raw_out = lab.ipc("raw-in"), lab.ipc("raw-out")
        lab.module("bench.bus_throughput", "proxy", raw_in, raw_out)
        paths = {"ours": Path(lab, "ours", "ours", lab.settings.bus_pub, lab.settings.bus_sub),
                 "raw": Path(lab, "raw", "raw", raw_in, raw_out),
                 "raw-via-ours": Path(lab, "raw-via-ours", "raw", lab.settings.bus_pub,
                                      lab.settings.bus_sub)}
        _check_same_bytes()
        flat: dict[str, list[dict[str, Any]]] = {k: [] for k in paths}
        for r in range(repeats):
            names = list(paths) if r % 2 == 0 else list(reversed(paths))
            for name in names:
                flat[name].append(paths[name].measure(n))
        paced = {k: paths[k].measure(int(paced_rate * paced_s), paced_rate)
                 for k in ("ours", "raw")}
    rate = {k: median([m["rate"] for m in v]) for k, v in flat.items()}
    delivered = {k: sum(m["got"] for m in v) / (n * len(v)) for k, v in flat.items()}
    pub = {k: median([m["pub_rate"] for m in v]) for k, v in flat.items()}
    common = f"{n:,} msgs x {repeats}, median"
    po, pr = paced["ours"], paced["raw"]
    pn = int(paced_rate * paced_s)
    return [
        Row("bus flat out: Publisher -> broker -> Subscriber", "msgs/s", rate["ours"],
            rate["raw"], f">= {FLAT_TARGET:.0%} of bare proxy",
            rate["ours"] >= FLAT_TARGET * rate["raw"],
            f"{common}; delivered {delivered['ours']:.0%} vs {delivered['raw']:.0%}; "
            f"publisher {pub['ours']:,.0f} vs {pub['raw']:,.0f}/s"),
        Row("bus flat out, raw clients via our broker (info)", "msgs/s", rate["raw-via-ours"],
            rate["raw"], "-", None,
            f"isolates the broker; delivered {delivered['raw-via-ours']:.0%}"),
        Row(f"bus paced {paced_rate:,}/s for {paced_s:g}s: gaps", "gaps", po["gaps"],
            pr["gaps"], "0 gaps", po["gaps"] == 0 and po["out_of_order"] == 0,
            f"{pn:,} msgs; received {po['got']:,} vs {pr['got']:,}; out of order "
            f"{po['out_of_order']} vs {pr['out_of_order']}",
            ours_text=f"{po['gaps']} of {pn:,}", raw_text=f"{pr['gaps']} of {pn:,}"),
    ]


def _check_same_bytes() -> None:
    import msgpack

    from bus.codec import Envelope, encode
    ours = encode(Envelope(type="Metrics", source="bench", ts=1.5, payload=payload(123456)))
    raw = msgpack.packb(envelope_map(123456, 1.5))
    if ours != raw:
        raise RuntimeError("the raw path does not send the same bytes as bus.codec.encode")
    if not 150 <= len(ours) <= 260:
        raise RuntimeError(f"envelope is {len(ours)} bytes, not ~200")


if __name__ == "__main__":
    role, *rest = sys.argv[1:]
    {"proxy": proxy_main, "pub": pub_main}[role](*rest)
