"""Every unary API call off the GUI thread: Calls.start(fn, on_done, on_error) runs
``fn(client)`` in a QThreadPool; ``fn`` returns plain data, and the callbacks run on
the GUI thread (a queued signal to a slot of Calls, which lives there)."""

from __future__ import annotations

import itertools
import threading
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal, Slot

from trainer.client import Client
from trainer.gui import convert

Done = Callable[[Any], None]
Failed = Callable[[dict], None]


class _Job(QRunnable):
    def __init__(self, calls: "Calls", job_id: int, fn: Callable[[Client], Any]) -> None:
        super().__init__()
        self.calls, self.job_id, self.fn = calls, job_id, fn

    def run(self) -> None:
        try:
            result, ok = self.fn(self.calls.client), True
        except Exception as exc:  # noqa: BLE001 - delivered to the caller's on_error
            result, ok = convert.error(exc), False
        self.calls.finished.emit(self.job_id, ok, result)


class Calls(QObject):
    """A Client shared by the pool's threads (gRPC channels are thread-safe)."""

    finished = Signal(int, bool, object)  # job id, ok, result or error dict
    busy_changed = Signal(int)            # calls in flight

    def __init__(self, address: str, token: Optional[str], timeout: float = 5.0,
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.client = Client(address, token, timeout=timeout)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(4)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Optional[Done], Optional[Failed]]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self.finished.connect(self._deliver, Qt.ConnectionType.QueuedConnection)

    def start(self, fn: Callable[[Client], Any], on_done: Optional[Done] = None,
              on_error: Optional[Failed] = None) -> int:
        if self._closed:
            return 0
        job_id = next(self._ids)
        self._pending[job_id] = (on_done, on_error)
        self.pool.start(_Job(self, job_id, fn))
        self.busy_changed.emit(len(self._pending))
        return job_id

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @Slot(int, bool, object)
    def _deliver(self, job_id: int, ok: bool, result: Any) -> None:
        on_done, on_error = self._pending.pop(job_id, (None, None))
        self.busy_changed.emit(len(self._pending))
        if self._closed:
            return
        callback = on_done if ok else on_error
        if callback is not None:
            callback(result)

    def close(self, wait_ms: int = 5000) -> bool:
        """Cancel the calls in flight (closing the channel) and join the pool."""
        self._closed = True
        self.pool.clear()
        self.client.close()
        return self.pool.waitForDone(wait_ms)
