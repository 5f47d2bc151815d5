"""Follow a run's stdout.log and stderr.log and publish their lines on the bus
(``log.<run_id>.<stream>``), in batches, at most ``rate_bytes`` per second per run.

The files are the record: the bus gets a copy when it can. Whatever the rate limit
holds back stays on disk and is sent later; a line longer than CHUNK is sent in
pieces. Reading never blocks the worker, which writes to the files directly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from bus.codec import MessageType
from bus.pubsub import Publisher
from bus.topics import Topic

CHUNK = 64 * 1024
STREAMS = ("stdout", "stderr")


@dataclass
class RunLogs:
    run_id: str
    run_dir: str
    rate_bytes: int
    offsets: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STREAMS, 0))
    budget: float = 0.0
    last_refill: float = 0.0
    published: int = 0
    paths: dict[str, str] = field(default_factory=dict)

    def poll(self, publisher: Publisher, now: float) -> int:
        """Publish what is new, within the rate budget; returns bytes published."""
        self.budget = min(self.rate_bytes, self.budget + (now - self.last_refill) * self.rate_bytes)
        self.last_refill = now
        sent = 0
        for stream in STREAMS:
            while self.budget > 0:
                batch = self._read(stream, min(CHUNK, int(self.budget)))
                if batch is None:
                    break
                offset, data = batch
                payload: dict[str, Any] = {"run_id": self.run_id, "stream": stream,
                                           "offset": offset,
                                           "lines": data.decode("utf-8", "replace")
                                           .splitlines()}
                publisher.publish(Topic.LOG.topic(self.run_id, stream),
                                  MessageType.LOG_LINES.value, payload)
                self.budget -= len(data)
                sent += len(data)
        self.published += sent
        return sent

    def skip_to_end(self) -> None:
        """Start following from the current end of each file (after an adoption, the
        bus copy of what was written meanwhile is skipped; the files keep it)."""
        for stream in STREAMS:
            try:
                self.offsets[stream] = os.path.getsize(
                    os.path.join(self.run_dir, f"{stream}.log"))
            except FileNotFoundError:
                self.offsets[stream] = 0

    def _read(self, stream: str, limit: int) -> tuple[int, bytes] | None:
        path = self.paths.get(stream)
        if path is None:
            path = self.paths[stream] = os.path.join(self.run_dir, f"{stream}.log")
        offset = self.offsets[stream]
        try:
            if os.stat(path).st_size <= offset:
                return None  # nothing new: a stat, not an open
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(max(limit, 1))
        except FileNotFoundError:
            return None
        if not data:
            return None
        cut = data.rfind(b"\n") + 1
        if cut == 0 and len(data) < CHUNK and limit >= CHUNK:
            return None  # an unfinished line: wait for its end
        if cut:
            data = data[:cut]
        self.offsets[stream] = offset + len(data)
        return offset, data


def tail_lines(run_dir: str, stream: str = "stderr", lines: int = 20,
               max_bytes: int = 16 * 1024) -> str:
    """The last lines of a run's log file (for failure messages)."""
    path = os.path.join(run_dir, f"{stream}.log")
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except FileNotFoundError:
        return ""
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])
