"""The client for asyncio code (grpc.aio): the same calls as trainer.client.Client,
as coroutines; ``watch`` and ``logs`` are async iterators."""

from __future__ import annotations

from typing import Any, AsyncIterator, Iterable, Optional

import grpc

from trainer.channel import (
    CHANNEL_OPTIONS,
    PIN_TIMEOUT_S,
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
from trainer.reconnect import WatchResume
from trainer_api.v1 import trainer_pb2 as pb
from trainer_api.v1 import trainer_pb2_grpc as pb_grpc


class AsyncClient:
    """The same calls for asyncio code (grpc.aio)."""

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, *,
                 tls_ca: Optional[str] = None, timeout: float = 30.0) -> None:
        self.address = address or default_address()
        token = token if token is not None else default_token()
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout
        opts = list(CHANNEL_OPTIONS)
        creds = channel_credentials(tls_ca)
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
        return await self._call("SubmitRun", submit_request(config, submitted_by, request_id))

    async def get(self, run_id: str) -> pb.RunRecord:
        return (await self._call("GetRun", pb.GetRunRequest(run_id=run_id))).run

    async def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
                   page_token: str = "") -> pb.ListRunsResponse:
        return await self._call("ListRuns", pb.ListRunsRequest(
            statuses=list(statuses), tag=tag, page_size=page_size, page_token=page_token))

    async def cancel(self, run_id: str, reason: str = "", requested_by: str = "") -> pb.RunRecord:
        return (await self._call("CancelRun", pb.CancelRunRequest(
            run_id=run_id, reason=reason, requested_by=requested_by))).run

    async def rerun(self, run_id: str, reason: str = "", from_scratch: bool = False,
                    force: bool = False, requested_by: str = "") -> pb.RunRecord:
        """As Client.rerun."""
        return (await self._call("RerunRun", pb.RerunRunRequest(
            run_id=run_id, reason=reason, from_scratch=from_scratch, force=force,
            requested_by=requested_by))).run

    async def health(self) -> pb.GetHealthResponse:
        return await self._call("GetHealth", pb.GetHealthRequest())

    async def add_env(self, name: str, python: str,
                      added_by: str = "") -> pb.AddEnvironmentResponse:
        """As Client.add_env."""
        return await self._call("AddEnvironment", pb.AddEnvironmentRequest(
            name=name, python=python, added_by=added_by))

    async def envs(self, include_removed: bool = False) -> list[pb.Environment]:
        return list((await self._call("ListEnvironments", pb.ListEnvironmentsRequest(
            include_removed=include_removed))).environments)

    async def remove_env(self, name: str, reason: str = "",
                         removed_by: str = "") -> pb.Environment:
        return (await self._call("RemoveEnvironment", pb.RemoveEnvironmentRequest(
            name=name, reason=reason, removed_by=removed_by))).environment

    async def create_experiment(self, spec: Any,
                                submitted_by: str = "") -> pb.CreateExperimentResponse:
        return await self._call("CreateExperiment", experiment_request(spec, submitted_by))

    async def experiment(self, name: str) -> pb.Experiment:
        return (await self._call("GetExperiment",
                                 pb.GetExperimentRequest(name=name))).experiment

    async def cancel_experiment(self, name: str, reason: str = "",
                                requested_by: str = "") -> pb.CancelExperimentResponse:
        return await self._call("CancelExperiment", pb.CancelExperimentRequest(
            name=name, reason=reason, requested_by=requested_by))

    async def rerun_experiment(self, name: str, reason: str = "", from_scratch: bool = False,
                               requested_by: str = "") -> pb.RerunExperimentResponse:
        return await self._call("RerunExperiment", pb.RerunExperimentRequest(
            name=name, reason=reason, from_scratch=from_scratch, requested_by=requested_by))

    async def experiment_results(self, name: str, metric: str = "", curves: bool = False,
                                 grid_points: int = 0) -> pb.GetExperimentResultsResponse:
        return await self._call("GetExperimentResults",
                                results_request(name, metric, curves, grid_points))

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
                      keys: Iterable[str] = (), *, tensorboard: bool = False,
                      tensorboard_cursor: str = "") -> pb.GetMetricsResponse:
        """GetMetrics; with ``tensorboard`` also the worker's own TensorBoard scalars,
        read on from ``tensorboard_cursor`` (the answer's next_tensorboard_cursor)."""
        return await self._call("GetMetrics", pb.GetMetricsRequest(
            run_id=run_id, offset=offset, limit=limit, keys=list(keys),
            tensorboard=tensorboard, tensorboard_cursor=tensorboard_cursor))

    async def watch(self, run_ids: Iterable[str] = (), since_seq: Optional[int] = None,
                    snapshot: bool = False, *, resume: bool = True,
                    max_backoff: float = WATCH_MAX_BACKOFF) -> AsyncIterator[pb.WatchRunsResponse]:
        """As Client.watch."""
        import asyncio
        state = WatchResume(run_ids, since_seq, snapshot, max_backoff)
        while True:
            call = self.stub.WatchRuns(state.request(), metadata=self.metadata)
            try:
                async for msg in call:
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
                    state.pin(await self._call("GetHealth", pb.GetHealthRequest(),
                                               PIN_TIMEOUT_S))
                except TrainerError:
                    pass  # the gateway is away too: the next answer pins the start
            await asyncio.sleep(state.next_backoff())

    async def logs(self, run_id: str, stream: Any = "stdout", offset: int = 0,
                   follow: bool = False) -> AsyncIterator[pb.LogChunk]:
        call = self.stub.StreamLogs(pb.StreamLogsRequest(
            run_id=run_id, stream=log_stream(stream), offset=offset, follow=follow),
            metadata=self.metadata)
        try:
            async for chunk in call:
                yield chunk
        except grpc.RpcError as err:
            raise TrainerError.from_rpc(err) from None
