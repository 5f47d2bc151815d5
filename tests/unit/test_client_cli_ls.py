"""`trainer ls --limit N` pages through ListRuns (at most 1000 runs a page) until it
has N runs or there are no more. The client is a stand-in with the server's paging
rules (no server)."""

from __future__ import annotations

from typing import Any, Iterable

import grpc
import pytest
from click.testing import CliRunner

from trainer.cli import runs as cli_runs
from trainer.client import TrainerError
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(30)


class FakeClient:
    """ListRuns over ``n`` runs, newest first, with the gateway's page_size limits."""

    def __init__(self, n: int) -> None:
        self.runs = [pb.RunRecord(run_id=f"r{i:012x}", status=pb.RUN_STATUS_PENDING)
                     for i in range(n, 0, -1)]
        self.sizes: list[int] = []

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
             page_token: str = "") -> pb.ListRunsResponse:
        if not 0 < page_size <= 1000:
            raise TrainerError(grpc.StatusCode.INVALID_ARGUMENT, "page_size: must be from "
                               "1 to 1000", "page_size", "must be from 1 to 1000")
        self.sizes.append(page_size)
        start = int(page_token or 0)
        out = pb.ListRunsResponse(runs=self.runs[start:start + page_size],
                                  total_size=len(self.runs))
        if start + page_size < len(self.runs):
            out.next_page_token = str(start + page_size)
        return out


def _ls(monkeypatch: pytest.MonkeyPatch, n: int, *args: str) -> tuple[Any, FakeClient]:
    fake = FakeClient(n)
    monkeypatch.setattr(cli_runs, "client", lambda: fake)
    return CliRunner().invoke(cli_runs.ls, list(args)), fake


def _ids(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines() if line.startswith("r0")]


def test_ls_pages_past_1000(monkeypatch: pytest.MonkeyPatch) -> None:
    got, fake = _ls(monkeypatch, 2500, "--limit", "2100")
    assert got.exit_code == 0, got.output
    assert _ids(got.output) == [r.run_id for r in fake.runs[:2100]]
    assert fake.sizes == [1000, 1000, 100] and "(2100 of 2500 runs" in got.output
    got, fake = _ls(monkeypatch, 1200, "--limit", "5000")
    assert got.exit_code == 0 and len(_ids(got.output)) == 1200 and fake.sizes == [1000, 1000]
    assert "of 1200" not in got.output
    got, fake = _ls(monkeypatch, 10, "--limit", "3")
    assert len(_ids(got.output)) == 3 and fake.sizes == [3]
    got, fake = _ls(monkeypatch, 10, "--limit", "0")
    assert got.exit_code == 2 and "--limit" in got.output and fake.sizes == []


def test_ls_rows_show_the_name_cut_and_the_gpu_tails() -> None:
    from trainer.cli import format as fmt
    config = {"name": "a-rather-long-sweep-name-lr-0.0003-seed-7", "worker": "cartpole",
              "env": "CartPole-v1", "tags": ["sweep"]}
    run = pb.RunRecord(run_id="r0123456789ab", status=pb.RUN_STATUS_RUNNING,
                       config_json=__import__("json").dumps(config),
                       gpus=["GPU-8f3e1a2b-0000-4c3d-9e8f-0123abcd4567", "GPU-1"])
    row = dict(zip(fmt.RUN_HEADERS, fmt.run_row(run, 0.0)))
    assert row["NAME"] == "a-rather-long-sweep-nam…" and len(row["NAME"]) == fmt.NAME_WIDTH
    assert row["GPUS"] == "…abcd4567,GPU-1"
    assert row["STATUS"] == "RUNNING" and row["WORKER"] == "cartpole"
