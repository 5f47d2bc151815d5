"""The threads that own the blocking streams: TrainerQBridgeThread (WatchRuns) and
LogThread (StreamLogs). Each owns its own Client (its own channel), so stop() can
cancel the stream by closing that channel from the GUI thread; they hand plain data
(dicts, lists, str) to the GUI thread through signals (queued connections)."""

from __future__ import annotations

import codecs
import threading
from typing import Any, Optional

from PySide6.QtCore import QObject, QThread, Signal

from trainer.client import Client
from trainer.gui import convert


class _StreamThread(QThread):
    """A QThread with a Client that stop() closes (cancelling its streams), then joins."""

    failed = Signal(dict)  # convert.error() of what ended the stream, unless stopped

    def __init__(self, address: str, token: Optional[str],
                 parent: Optional[QObject] = None) -> None:
        super().__init__(parent)
        self.address, self.token = address, token
        self._lock = threading.Lock()
        self._client: Optional[Client] = None
        self._stopping = False

    def _open(self) -> Optional[Client]:
        with self._lock:
            if self._stopping:
                return None
            self._client = Client(self.address, self.token)
            return self._client

    @property
    def stopping(self) -> bool:
        return self._stopping

    def cancel(self) -> None:
        """Cancel the stream (close the channel) without waiting for the thread."""
        with self._lock:
            self._stopping = True
            client = self._client
        if client is not None:
            client.close()

    def stop(self, wait_ms: int = 5000) -> bool:
        """Cancel the stream and join the thread; True when it has ended."""
        self.cancel()
        return self.wait(wait_ms)

    def run(self) -> None:
        client = self._open()
        if client is None:
            return
        try:
            self.stream(client)
        except Exception as exc:  # noqa: BLE001 - the stream's end: a closed channel or a hard error
            if not self._stopping:
                self.failed.emit(convert.error(exc))
        finally:
            client.close()

    def stream(self, client: Client) -> None:
        raise NotImplementedError


class TrainerQBridgeThread(_StreamThread):
    """WatchRuns with snapshot=True, then live for ever (Client.watch reconnects by
    itself from the last seq). Signals carry plain data only."""

    snapshot_page = Signal(list)      # run dicts (convert.run) of one snapshot page
    snapshot_done = Signal(int)       # the snapshot is complete as of this seq
    events = Signal(list)             # event dicts (convert.event), in seq order
    position = Signal(int)            # the resume position (seq) after a live message
    connection = Signal(bool, str)    # connected?, the channel state's name

    def stream(self, client: Client) -> None:
        self._connected: Optional[bool] = None
        client.channel.subscribe(self._on_state, try_to_connect=True)
        try:
            live = False
            for msg in client.watch(snapshot=True, max_backoff=0.5):
                if self._stopping:
                    return
                self._set_connected(True, "READY")
                if msg.snapshot:
                    self.snapshot_page.emit([convert.run(r) for r in msg.snapshot])
                if msg.events:
                    self.events.emit([convert.event(e) for e in msg.events])
                if msg.snapshot_complete and not live:
                    live = True
                    self.snapshot_done.emit(msg.seq)
                elif live:
                    self.position.emit(msg.seq)
        finally:
            client.channel.unsubscribe(self._on_state)

    def _set_connected(self, up: bool, state: str) -> None:
        if up != self._connected:
            self._connected = up
            self.connection.emit(up, state)

    def _on_state(self, state: Any) -> None:
        # A grpc.ChannelConnectivity, on a gRPC thread: only emit (queued to the GUI).
        if not self._stopping:
            self._set_connected(state.name == "READY", state.name)


class LogThread(_StreamThread):
    """StreamLogs of one run with follow=True, until the run has ended."""

    text = Signal(str, str, str)   # run_id, stream name, decoded text
    ended = Signal(str)       # run_id: the log is complete (eof)

    def __init__(self, address: str, token: Optional[str], run_id: str,
                 stream_name: str = "stdout", parent: Optional[QObject] = None) -> None:
        super().__init__(address, token, parent)
        self.run_id, self.stream_name = run_id, stream_name

    def stream(self, client: Client) -> None:
        decoder: Any = codecs.getincrementaldecoder("utf-8")(errors="replace")
        for chunk in client.logs(self.run_id, self.stream_name, follow=True):
            if self._stopping:
                return
            if chunk.data:
                self.text.emit(self.run_id, self.stream_name, decoder.decode(chunk.data))
            if chunk.eof:
                self.ended.emit(self.run_id)
                return
