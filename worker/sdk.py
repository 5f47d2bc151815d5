"""The worker SDK: a few lines turn any training script into a worker.

    from worker.sdk import Run
    with Run.from_env() as run:               # reads TRAINER_RUN_ID, TRAINER_RUN_DIR, ...
        for step in range(budget):
            if run.stop_requested:            # SIGTERM: checkpoint and leave
                break
            ...
            run.progress(step=step, episode=ep, last_return=r)
            run.log_metrics(step, loss=0.1)
        run.finish("completed", metrics={"return": r})

A background thread publishes a heartbeat with the latest progress every
``heartbeat_interval`` seconds on ``hb.<run_id>``. ``finish`` (or leaving the
``with`` block) writes ``result.json`` in the run directory, whatever the exit path.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import threading
import time
from typing import Any, Optional

import zmq

from bus.codec import Envelope, MessageType, encode
from bus.topics import Topic

RESULT_FILE = "result.json"
MANIFEST_FILE = "artifacts.jsonl"
METRICS_FILE = "metrics.jsonl"


class Run:
    def __init__(self, run_id: str, run_dir: str, bus_pub: str, heartbeat_interval: float,
                 ctx: Optional[zmq.Context] = None) -> None:
        self.run_id = run_id
        self.run_dir = os.path.abspath(run_dir)
        self.heartbeat_interval = heartbeat_interval
        self._ctx = ctx or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 1000)
        if bus_pub:
            self._sock.connect(bus_pub)
        self._lock = threading.Lock()
        self._progress: dict[str, Any] = {"step": 0, "episode": 0, "last_return": None,
                                          "mean_return": None}
        self._beats = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._done = threading.Event()
        self.stop_requested = False
        self.finished = False
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._thread = threading.Thread(target=self._beat_loop, name="heartbeat", daemon=True)
        self._thread.start()

    @classmethod
    def from_env(cls, env: Optional[dict[str, str]] = None) -> "Run":
        e = os.environ if env is None else env
        return cls(e.get("TRAINER_RUN_ID", "local"), e.get("TRAINER_RUN_DIR", "."),
                   e.get("TRAINER_BUS_PUB", ""),
                   float(e.get("TRAINER_HEARTBEAT_INTERVAL", "1.0")))

    # --- reporting -----------------------------------------------------------------
    def _send(self, topic: str, mtype: str, payload: dict[str, Any]) -> None:
        env = Envelope(type=mtype, source=f"worker:{self.run_id}", ts=time.time(),
                       payload=payload)
        with self._lock:
            self._sock.send_multipart([topic.encode(), encode(env)])

    def progress(self, **values: Any) -> None:
        with self._lock:
            self._progress.update(values)

    def heartbeat(self) -> None:
        with self._lock:
            progress = dict(self._progress)
            self._beats += 1
            beat = self._beats
        elapsed = max(time.monotonic() - self._t0, 1e-9)
        payload = {"run_id": self.run_id, "beat": beat, **progress,
                   "steps_per_s": progress.get("step", 0) / elapsed,
                   "rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                   "gpu_mem_bytes": None}
        self._send(Topic.HEARTBEAT.topic(self.run_id), MessageType.HEARTBEAT.value, payload)

    def log_metrics(self, step: int, **values: float) -> None:
        record = {"run_id": self.run_id, "step": step, "ts": time.time(), "values": values}
        with open(os.path.join(self.run_dir, METRICS_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self._send(Topic.METRICS.topic(self.run_id), MessageType.METRICS.value, record)

    def register_artifact(self, path: str, kind: str, **meta: Any) -> dict[str, Any]:
        full = os.path.realpath(os.path.join(self.run_dir, path))
        root = os.path.realpath(self.run_dir)
        if os.path.commonpath([full, root]) != root or full == root:
            raise ValueError(f"artifact {path!r} is outside the run directory {root}")
        record = {"run_id": self.run_id, "kind": kind, "path": os.path.relpath(full, root),
                  "size": os.path.getsize(full), "meta": meta}
        with open(os.path.join(self.run_dir, MANIFEST_FILE), "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        self._send(Topic.ARTIFACT.topic(self.run_id), MessageType.ARTIFACT_REPORTED.value,
                   record)
        return record

    # --- lifecycle -------------------------------------------------------------------
    def _on_sigterm(self, signum: int, frame: object) -> None:
        self.stop_requested = True

    def _beat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.heartbeat()
            except zmq.ZMQError:
                return
            self._stop.wait(self.heartbeat_interval)

    def finish(self, status: str, reason: str = "", metrics: Optional[dict[str, Any]] = None) -> None:
        """Write the exit record (status, reason, final metrics) and stop heartbeating."""
        if self.finished:
            return
        self.finished = True
        tmp = os.path.join(self.run_dir, RESULT_FILE + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"run_id": self.run_id, "status": status, "reason": reason,
                       "metrics": metrics or {}, "at": time.time()}, fh)
        os.replace(tmp, os.path.join(self.run_dir, RESULT_FILE))
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish("stopped" if self.stop_requested else "completed")
        else:
            self.finish("failed", f"{exc_type.__name__}: {exc}")
