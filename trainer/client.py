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

import time
from typing import Any, Callable, Iterable, Iterator, Optional

import grpc

from trainer.aioclient import AsyncClient  # re-exported: the same calls for asyncio
from trainer.channel import (
    CHANNEL_OPTIONS,
    DEFAULT_ADDR,
    MAX_PAGE_SIZE,
    PIN_TIMEOUT_S,
    RETRYABLE,
    STREAMS,
    WATCH_MAX_BACKOFF,
    TrainerError,
    channel_credentials,
    default_address,
    default_token,
    experiment_request,
    log_stream,
    results_request,
    submit_request,
)
from trainer.reconnect import LogOutage, WatchResume
from trainer_api.v1 import trainer_pb2 as pb
from trainer_api.v1 import trainer_pb2_grpc as pb_grpc


class Client:
    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *,
                 tls_ca: Optional[str] = None, timeout: float = 30.0,
                 options: Iterable[tuple[str, Any]] = ()) -> None:
        self.address = address or default_address()
        token = token if token is not None else default_token()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        opts = [*CHANNEL_OPTIONS, *options]
        creds = channel_credentials(tls_ca)
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
        return self._call("SubmitRun", submit_request(config, submitted_by, request_id),
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

    def rerun(self, run_id: str, reason: str = "", from_scratch: bool = False,
              force: bool = False, requested_by: str = "") -> pb.RunRecord:
        """Give an ended run a new attempt (from its latest checkpoint unless
        ``from_scratch``; a COMPLETED run only with ``force``): the run, PENDING."""
        return self._call("RerunRun", pb.RerunRunRequest(
            run_id=run_id, reason=reason, from_scratch=from_scratch, force=force,
            requested_by=requested_by)).run

    def health(self) -> pb.GetHealthResponse:
        return self._call("GetHealth", pb.GetHealthRequest())

    def add_env(self, name: str, python: str, added_by: str = "") -> pb.AddEnvironmentResponse:
        """Register the interpreter ``python`` (an absolute path on the orchestrator's
        machine) as the environment ``name``: ``.environment`` and ``.created``."""
        return self._call("AddEnvironment", pb.AddEnvironmentRequest(
            name=name, python=python, added_by=added_by))

    def envs(self, include_removed: bool = False) -> list[pb.Environment]:
        return list(self._call("ListEnvironments", pb.ListEnvironmentsRequest(
            include_removed=include_removed)).environments)

    def remove_env(self, name: str, reason: str = "", removed_by: str = "") -> pb.Environment:
        return self._call("RemoveEnvironment", pb.RemoveEnvironmentRequest(
            name=name, reason=reason, removed_by=removed_by)).environment

    def create_experiment(self, spec: Any, submitted_by: str = "",
                          timeout: Optional[float] = None) -> pb.CreateExperimentResponse:
        """``spec``: a map or JSON text (docs/EXPERIMENTS.md): ``.experiment`` and
        ``.created_runs`` in the answer."""
        return self._call("CreateExperiment", experiment_request(spec, submitted_by),
                          timeout)

    def experiment(self, name: str) -> pb.Experiment:
        """The experiment with each cell's run status."""
        return self._call("GetExperiment", pb.GetExperimentRequest(name=name)).experiment

    def experiments(self, page_size: int = 100) -> Iterator[pb.Experiment]:
        token = ""
        while True:
            page = self._call("ListExperiments", pb.ListExperimentsRequest(
                page_size=page_size, page_token=token))
            yield from page.experiments
            token = page.next_page_token
            if not token:
                return

    def cancel_experiment(self, name: str, reason: str = "",
                          requested_by: str = "") -> pb.CancelExperimentResponse:
        return self._call("CancelExperiment", pb.CancelExperimentRequest(
            name=name, reason=reason, requested_by=requested_by))

    def rerun_experiment(self, name: str, reason: str = "", from_scratch: bool = False,
                         requested_by: str = "") -> pb.RerunExperimentResponse:
        return self._call("RerunExperiment", pb.RerunExperimentRequest(
            name=name, reason=reason, from_scratch=from_scratch, requested_by=requested_by))

    def experiment_results(self, name: str, metric: str = "", curves: bool = False,
                           grid_points: int = 0) -> pb.GetExperimentResultsResponse:
        return self._call("GetExperimentResults",
                          results_request(name, metric, curves, grid_points))

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
                keys: Iterable[str] = (), *, tensorboard: bool = False,
                tensorboard_cursor: str = "") -> pb.GetMetricsResponse:
        """GetMetrics; with ``tensorboard`` also the worker's own TensorBoard scalars,
        read on from ``tensorboard_cursor`` (the answer's next_tensorboard_cursor)."""
        return self._call("GetMetrics", pb.GetMetricsRequest(
            run_id=run_id, offset=offset, limit=limit, keys=list(keys),
            tensorboard=tensorboard, tensorboard_cursor=tensorboard_cursor))

    def watch(self, run_ids: Iterable[str] = (), since_seq: Optional[int] = None,
              snapshot: bool = False, *, resume: bool = True,
              max_backoff: float = WATCH_MAX_BACKOFF,
              give_up_after: Optional[float] = None) -> Iterator[pb.WatchRunsResponse]:
        """Watch messages for ever; on a lost connection, reconnect from the last
        ``seq`` received: nothing is lost or repeated (docs/API.md, WatchRuns). A
        snapshot cut short is asked for again; only what the caller does not have yet
        (newer records, later events) is passed on."""
        state = WatchResume(run_ids, since_seq, snapshot, max_backoff, give_up_after)
        while True:
            call = self.stub.WatchRuns(state.request(), metadata=self.metadata)
            try:
                for msg in call:
                    out = state.accept(msg)
                    if out is not None:
                        yield out
                return
            except grpc.RpcError as err:
                state.broken(err, resume)
            finally:
                call.cancel()
            if state.unpinned:
                try:
                    state.pin(self._call("GetHealth", pb.GetHealthRequest(), PIN_TIMEOUT_S))
                except TrainerError:
                    pass  # the gateway is away too: the next answer pins the start
            time.sleep(state.next_backoff())  # reconnect backoff

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
        outage = LogOutage(on_outage)
        while True:
            call = self.stub.StreamLogs(pb.StreamLogsRequest(
                run_id=run_id, stream=log_stream(stream), offset=offset, follow=follow),
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

__all__ = ["AsyncClient", "CHANNEL_OPTIONS", "Client", "DEFAULT_ADDR", "MAX_PAGE_SIZE",
           "RETRYABLE", "STREAMS", "TrainerError", "default_address", "default_token"]
