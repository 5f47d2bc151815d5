"""The client library of the trainer gateway (used by the CLI and the GUI).

    from trainer.client import Client
    with Client() as c:                       # TRAINER_GATEWAY_ADDR, $TRAINER_HOME/gateway.token
        run = c.submit({"env": "CartPole-v1", "seed": 1}).run
        for msg in c.watch(run_ids=[run.run_id]):   # resumes by itself after a reconnect
            for ev in msg.events:
                print(ev.seq, ev.type, ev.status)

``AsyncClient`` has the same methods as coroutines (``watch`` and ``logs`` are
async iterators). Errors are raised as TrainerError with the gRPC code, and for
INVALID_ARGUMENT the field and the reason.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Mapping, Optional

import grpc

from trainer_api.v1 import trainer_pb2 as pb
from trainer_api.v1 import trainer_pb2_grpc as pb_grpc

DEFAULT_ADDR = "127.0.0.1:50055"
# A channel whose server went away retries its connection after grpc's reconnect
# backoff (default 1 s, then x1.6 up to 120 s), failing calls at once meanwhile: a
# restarted gateway would be reached seconds after it is back (docs/API.md,
# "Reconnecting"). The watch loop's own retry backoff is capped at WATCH_MAX_BACKOFF.
CHANNEL_OPTIONS = (("grpc.max_receive_message_length", 64 * 1024 * 1024),
                   ("grpc.initial_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500))
WATCH_MAX_BACKOFF = 0.5
LOGS_MAX_BACKOFF = 0.5              # Client.logs' retry backoff at most
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
MAX_PAGE_SIZE = 1000                  # ListRuns page_size at most
PIN_TIMEOUT_S = 5.0                   # GetHealth that pins a live watch's start
STREAMS = {"stdout": pb.LOG_STREAM_STDOUT, "stderr": pb.LOG_STREAM_STDERR}


class TrainerError(Exception):
    """A failed call: ``code`` (grpc.StatusCode), ``message``, and for bad input the
    ``field`` and ``reason``; ``retryable`` for UNAVAILABLE and ABORTED."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "",
                 reason: str = "", trainer_code: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code, self.message, self.field = code, message, field
        self.reason, self.trainer_code = reason, trainer_code

    @property
    def retryable(self) -> bool:
        return self.code in RETRYABLE

    @staticmethod
    def from_rpc(err: grpc.RpcError) -> "TrainerError":
        code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
        meta = dict(err.trailing_metadata() or ()) if hasattr(err, "trailing_metadata") else {}
        details = err.details() if hasattr(err, "details") else str(err)
        return TrainerError(code, details or "", str(meta.get("trainer-field", "")),
                            str(meta.get("trainer-reason", "")), str(meta.get("trainer-code", "")))


def default_address(env: Optional[Mapping[str, str]] = None) -> str:
    e = os.environ if env is None else env
    return e.get("TRAINER_GATEWAY_ADDR") or DEFAULT_ADDR


def default_token(env: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """TRAINER_GATEWAY_TOKEN, else the text of $TRAINER_HOME/gateway.token."""
    e = os.environ if env is None else env
    if e.get("TRAINER_GATEWAY_TOKEN", "").strip():
        return e["TRAINER_GATEWAY_TOKEN"].strip()
    home = e.get("TRAINER_HOME") or os.path.join(e.get("HOME", "/tmp"), ".local/share/trainer")
    try:
        with open(os.path.join(home, "gateway.token"), encoding="utf-8") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _credentials(tls_ca: Optional[str]) -> Optional[grpc.ChannelCredentials]:
    """TLS trusting ``tls_ca``; by default TRAINER_GATEWAY_TLS_CA, else the gateway's own
    certificate TRAINER_GATEWAY_TLS_CERT (a self-signed one, on the gateway's machine);
    none of them: no TLS. "" turns TLS off."""
    ca = tls_ca if tls_ca is not None else (os.environ.get("TRAINER_GATEWAY_TLS_CA", "")
                                            or os.environ.get("TRAINER_GATEWAY_TLS_CERT", ""))
    if not ca:
        return None
    with open(ca, "rb") as fh:
        return grpc.ssl_channel_credentials(root_certificates=fh.read())


def _submit_request(config: Any, submitted_by: str, request_id: str) -> pb.SubmitRunRequest:
    req = pb.SubmitRunRequest(submitted_by=submitted_by, request_id=request_id)
    req.config_json = config if isinstance(config, str) else json.dumps(config)
    return req


def _stream(name: Any) -> int:
    return STREAMS[name] if isinstance(name, str) else int(name)


class _Resume:
    """Where a watch stands, to reconnect without loss or repeats.

    ``position`` is the resume point: ``since_seq``, then the ``seq`` of every message
    received outside a snapshot. A live watch (no ``since_seq``) is pinned by its first
    message; if a connection fails before any message, ``pin`` sets it to the log's
    head from GetHealth, so what is committed while reconnecting is not lost.

    During a snapshot ``have`` holds, per run, the newest seq the caller has (a
    record's ``last_seq`` or an event's ``seq``). A snapshot cut off is asked for
    again, and ``accept`` passes on only what the caller does not have: a record only
    if it is newer, an event only if its seq is above the run's.
    """

    def __init__(self, run_ids: Iterable[str], since_seq: Optional[int], snapshot: bool) -> None:
        self.run_ids = list(run_ids)
        self.position = since_seq
        self.in_snapshot = snapshot
        self.have: dict[str, int] = {}
        self.restarted = False

    def request(self) -> pb.WatchRunsRequest:
        req = pb.WatchRunsRequest(run_ids=self.run_ids, snapshot=self.in_snapshot)
        if not self.in_snapshot and self.position is not None:
            req.since_seq = self.position
        return req

    def reconnecting(self) -> None:
        """The stream broke: the next snapshot (if any) is a repeat to filter."""
        self.restarted = self.in_snapshot

    @property
    def unpinned(self) -> bool:
        return self.position is None and not self.in_snapshot

    def pin(self, health: pb.GetHealthResponse) -> None:
        """Start from the log's head (when the registry answered GetHealth)."""
        if self.unpinned and any(s.name == "registry" and s.alive for s in health.services):
            self.position = health.last_seq

    def accept(self, msg: pb.WatchRunsResponse) -> Optional[pb.WatchRunsResponse]:
        """Take ``msg`` into account; the message for the caller (None: nothing new)."""
        if not self.in_snapshot:
            self.position = msg.seq
            return msg
        if self.restarted:
            msg = self._unseen(msg)
        for rec in msg.snapshot:
            self.have[rec.run_id] = max(self.have.get(rec.run_id, 0), rec.last_seq)
        for ev in msg.events:
            self.have[ev.run_id] = max(self.have.get(ev.run_id, 0), ev.seq)
        if msg.snapshot_complete:
            self.in_snapshot = self.restarted = False
            self.position = msg.seq
            self.have = {}
            return msg
        return msg if msg.snapshot or msg.events else None

    def _unseen(self, msg: pb.WatchRunsResponse) -> pb.WatchRunsResponse:
        out = pb.WatchRunsResponse(seq=msg.seq, snapshot_complete=msg.snapshot_complete)
        out.snapshot.extend(r for r in msg.snapshot
                            if r.run_id not in self.have or r.last_seq > self.have[r.run_id])
        out.events.extend(e for e in msg.events if e.seq > self.have.get(e.run_id, 0))
        return out


class Client:
    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *,
                 tls_ca: Optional[str] = None, timeout: float = 30.0,
                 options: Iterable[tuple[str, Any]] = ()) -> None:
        self.address = address or default_address()
        token = token if token is not None else default_token()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        opts = [*CHANNEL_OPTIONS, *options]
        creds = _credentials(tls_ca)
        self.channel = grpc.secure_channel(self.address, creds, opts) if creds else \
            grpc.insecure_channel(self.address, opts)
        self.stub = pb_grpc.TrainerServiceStub(self.channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def _call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        try:
            return getattr(self.stub, method)(request, metadata=self.metadata,
                                              timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise TrainerError.from_rpc(err) from None

    def submit(self, config: Any, *, submitted_by: str = "", request_id: str = "",
               timeout: Optional[float] = None) -> pb.SubmitRunResponse:
        """``config``: a map or JSON text. ``.run`` and ``.created`` in the answer."""
        return self._call("SubmitRun", _submit_request(config, submitted_by, request_id),
                          timeout)

    def get(self, run_id: str) -> pb.RunRecord:
        return self._call("GetRun", pb.GetRunRequest(run_id=run_id)).run

    def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
             page_token: str = "") -> pb.ListRunsResponse:
        return self._call("ListRuns", pb.ListRunsRequest(
            statuses=list(statuses), tag=tag, page_size=page_size, page_token=page_token))

    def iter_runs(self, statuses: Iterable[int] = (), tag: str = "",
                  page_size: int = 100) -> Iterator[pb.RunRecord]:
        token = ""
        while True:
            page = self.list(statuses, tag, page_size, token)
            yield from page.runs
            token = page.next_page_token
            if not token:
                return

    def cancel(self, run_id: str, reason: str = "", requested_by: str = "") -> pb.RunRecord:
        return self._call("CancelRun", pb.CancelRunRequest(
            run_id=run_id, reason=reason, requested_by=requested_by)).run

    def health(self) -> pb.GetHealthResponse:
        return self._call("GetHealth", pb.GetHealthRequest())

    def artifacts(self, run_id: str, kind: str = "") -> list[pb.Artifact]:
        """Every artifact of the run (of ``kind`` if given), in seq order, page by page."""
        out: list[pb.Artifact] = []
        token = ""
        while True:
            page = self._call("ListArtifacts", pb.ListArtifactsRequest(
                run_id=run_id, kind=kind, page_token=token))
            out += page.artifacts
            token = page.next_page_token
            if not token:
                return out

    def metrics(self, run_id: str, offset: int = 0, limit: int = 0,
                keys: Iterable[str] = ()) -> pb.GetMetricsResponse:
        return self._call("GetMetrics", pb.GetMetricsRequest(
            run_id=run_id, offset=offset, limit=limit, keys=list(keys)))

    def watch(self, run_ids: Iterable[str] = (), since_seq: Optional[int] = None,
              snapshot: bool = False, *, resume: bool = True, max_backoff: float = WATCH_MAX_BACKOFF,
              give_up_after: Optional[float] = None) -> Iterator[pb.WatchRunsResponse]:
        """Watch messages for ever; on a lost connection, reconnect from the last
        ``seq`` received: nothing is lost or repeated (docs/API.md, WatchRuns). A
        snapshot cut short is asked for again; only what the caller does not have yet
        (newer records, later events) is passed on."""
        state = _Resume(run_ids, since_seq, snapshot)
        backoff, down_since = 0.05, None
        while True:
            call = self.stub.WatchRuns(state.request(), metadata=self.metadata)
            try:
                for msg in call:
                    backoff, down_since = 0.05, None
                    out = state.accept(msg)
                    if out is not None:
                        yield out
                return
            except grpc.RpcError as err:
                error = TrainerError.from_rpc(err)
                down_since = down_since or time.monotonic()
                if not resume or not error.retryable or (
                        give_up_after is not None
                        and time.monotonic() - down_since > give_up_after):
                    raise error from None
            finally:
                call.cancel()
            state.reconnecting()
            if state.unpinned:
                try:
                    state.pin(self._call("GetHealth", pb.GetHealthRequest(), PIN_TIMEOUT_S))
                except TrainerError:
                    pass  # the gateway is away too: the next answer pins the start
            time.sleep(backoff)  # reconnect backoff
            backoff = min(backoff * 2, max_backoff)

    def logs(self, run_id: str, stream: Any = "stdout", offset: int = 0, follow: bool = False,
             *, resume: bool = True, give_up_after: Optional[float] = None,
             on_outage: Optional[Callable[[Optional[TrainerError], int], None]] = None,
             ) -> Iterator[pb.LogChunk]:
        """Chunks from ``offset``. If the stream breaks (UNAVAILABLE, ABORTED), waits
        until the gateway answers GetHealth and reconnects at the next offset: no byte
        repeated or skipped. ``on_outage(error, offset)`` is told once when the
        gateway is found unreachable, and once with ``error`` None when it answers
        again. After ``give_up_after`` seconds without a stream the last error is
        raised (None: retry for ever)."""
        outage = _Outage(on_outage)
        while True:
            call = self.stub.StreamLogs(pb.StreamLogsRequest(
                run_id=run_id, stream=_stream(stream), offset=offset, follow=follow),
                metadata=self.metadata)
            try:
                for chunk in call:
                    offset = chunk.offset + len(chunk.data)
                    outage.over()
                    yield chunk
                return
            except grpc.RpcError as err:
                error = TrainerError.from_rpc(err)
                if not resume or not error.retryable:
                    raise error from None
            finally:
                call.cancel()
            outage.failed(error, offset)
            while True:
                outage.wait(give_up_after)
                try:
                    self._call("GetHealth", pb.GetHealthRequest(), PIN_TIMEOUT_S)
                    break
                except TrainerError as err:
                    if not err.retryable:
                        raise
                    outage.failed(err, offset)
            outage.answered(offset)


class _Outage:
    """Where a broken log stream stands: since when, its retry backoff, and whether the
    gateway was found unreachable (told to ``notify`` once, and once when it is back)."""

    def __init__(self, notify: Optional[Callable[[Optional[TrainerError], int], None]]) -> None:
        self.notify = notify
        self.since: Optional[float] = None
        self.error: Optional[TrainerError] = None
        self.backoff = 0.05
        self.away = False

    def failed(self, error: TrainerError, offset: int) -> None:
        self.since = self.since or time.monotonic()
        self.error = error
        if error.code == grpc.StatusCode.UNAVAILABLE and not error.trainer_code \
                and not self.away:  # grpc's own UNAVAILABLE: nothing answered
            self.away = True
            if self.notify:
                self.notify(error, offset)

    def wait(self, give_up_after: Optional[float]) -> None:
        """Sleep the backoff; raise the last error once the outage is too long."""
        if give_up_after is not None and self.since is not None and self.error is not None \
                and time.monotonic() - self.since > give_up_after:
            raise self.error
        time.sleep(self.backoff)  # reconnect backoff
        self.backoff = min(self.backoff * 2, LOGS_MAX_BACKOFF)

    def answered(self, offset: int) -> None:
        """GetHealth answered: a gateway found away is back."""
        if self.away:
            self.away = False
            self.over()
            if self.notify:
                self.notify(None, offset)

    def over(self) -> None:
        self.since, self.error, self.backoff = None, None, 0.05


class AsyncClient:
    """The same calls for asyncio code (grpc.aio)."""

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *,
                 tls_ca: Optional[str] = None, timeout: float = 30.0) -> None:
        self.address = address or default_address()
        token = token if token is not None else default_token()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        opts = list(CHANNEL_OPTIONS)
        creds = _credentials(tls_ca)
        self.channel = grpc.aio.secure_channel(self.address, creds, opts) if creds else \
            grpc.aio.insecure_channel(self.address, opts)
        self.stub = pb_grpc.TrainerServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        try:
            return await getattr(self.stub, method)(request, metadata=self.metadata,
                                                    timeout=timeout or self.timeout)
        except grpc.RpcError as err:
            raise TrainerError.from_rpc(err) from None

    async def submit(self, config: Any, *, submitted_by: str = "",
                     request_id: str = "") -> pb.SubmitRunResponse:
        return await self._call("SubmitRun", _submit_request(config, submitted_by, request_id))

    async def get(self, run_id: str) -> pb.RunRecord:
        return (await self._call("GetRun", pb.GetRunRequest(run_id=run_id))).run

    async def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
                   page_token: str = "") -> pb.ListRunsResponse:
        return await self._call("ListRuns", pb.ListRunsRequest(
            statuses=list(statuses), tag=tag, page_size=page_size, page_token=page_token))

    async def cancel(self, run_id: str, reason: str = "", requested_by: str = "") -> pb.RunRecord:
        return (await self._call("CancelRun", pb.CancelRunRequest(
            run_id=run_id, reason=reason, requested_by=requested_by))).run

    async def health(self) -> pb.GetHealthResponse:
        return await self._call("GetHealth", pb.GetHealthRequest())

    async def artifacts(self, run_id: str, kind: str = "") -> list[pb.Artifact]:
        """Every artifact of the run (of ``kind`` if given), in seq order, page by page."""
        out: list[pb.Artifact] = []
        token = ""
        while True:
            page = await self._call("ListArtifacts", pb.ListArtifactsRequest(
                run_id=run_id, kind=kind, page_token=token))
            out += page.artifacts
            token = page.next_page_token
            if not token:
                return out

    async def metrics(self, run_id: str, offset: int = 0, limit: int = 0,
                      keys: Iterable[str] = ()) -> pb.GetMetricsResponse:
        return await self._call("GetMetrics", pb.GetMetricsRequest(
            run_id=run_id, offset=offset, limit=limit, keys=list(keys)))

    async def watch(self, run_ids: Iterable[str] = (), since_seq: Optional[int] = None,
                    snapshot: bool = False, *, resume: bool = True,
                    max_backoff: float = WATCH_MAX_BACKOFF) -> AsyncIterator[pb.WatchRunsResponse]:
        """As Client.watch."""
        import asyncio
        state = _Resume(run_ids, since_seq, snapshot)
        backoff = 0.05
        while True:
            call = self.stub.WatchRuns(state.request(), metadata=self.metadata)
            try:
                async for msg in call:
                    backoff = 0.05
                    out = state.accept(msg)
                    if out is not None:
                        yield out
                return
            except grpc.RpcError as err:
                error = TrainerError.from_rpc(err)
                if not resume or not error.retryable:
                    raise error from None
            finally:
                call.cancel()
            state.reconnecting()
            if state.unpinned:
                try:
                    state.pin(await self._call("GetHealth", pb.GetHealthRequest(),
                                               PIN_TIMEOUT_S))
                except TrainerError:
                    pass  # the gateway is away too: the next answer pins the start
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)

    async def logs(self, run_id: str, stream: Any = "stdout", offset: int = 0,
                   follow: bool = False) -> AsyncIterator[pb.LogChunk]:
        call = self.stub.StreamLogs(pb.StreamLogsRequest(
            run_id=run_id, stream=_stream(stream), offset=offset, follow=follow),
            metadata=self.metadata)
        try:
            async for chunk in call:
                yield chunk
        except grpc.RpcError as err:
            raise TrainerError.from_rpc(err) from None
