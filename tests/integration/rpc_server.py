"""An RpcServer in a thread of the test process (zmq, in-process): answers requests with
a function, can hold and reorder them. Shared by test_asyncrpc and test_rpc_pipeline."""

from __future__ import annotations

import threading
from typing import Any, Callable

import zmq

from bus.rpc import RpcServer


class Server:
    """Answers requests with ``answer(method, args, id)``; None drops the request.
    Holds up to ``hold`` requests and answers them in reverse order."""

    def __init__(self, endpoint: str, answer: Callable[[str, dict, str], Any],
                 hold: int = 1) -> None:
        self.ctx = zmq.Context()
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(endpoint)
        self.server = RpcServer(sock, "test-server")
        self.answer, self.hold = answer, hold
        self.seen: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        held = []
        while not self.stop.is_set():
            if not self.server.sock.poll(20):
                continue
            req = self.server.recv_nowait()
            if req is None or not hasattr(req, "method"):
                continue
            self.seen.append(req.id)
            held.append(req)
            if len(held) < self.hold:
                continue
            for r in reversed(held):
                payload = self.answer(r.method, r.args, r.id)
                if payload is not None:
                    self.server.reply(r.identity, r.id, payload)
            held = []

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.server.sock.close(linger=0)
        self.ctx.term()
