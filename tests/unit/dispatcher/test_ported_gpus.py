"""The GPU inventory (ported from the dispatcher part of tests/unit/test_claim_inventory.py,
which called the old launch.check_gpus on the old inventory): a GPU claimed for a run
that is gone from the inventory read last keeps its worker from starting, naming it
(not judged when no inventory could be read); the shell's fake inventory (TRAINER_FAKE_GPUS)
and a read without pynvml. (The run failing ``spawn_error`` for it, as a decision:
test_supervising.py, test_a_claimed_gpu_gone_or_an_unstartable_worker_fails_spawn_error.)"""

from __future__ import annotations

import dataclasses
import sys

import pytest

from services.dispatcher.decide.gpus import GpuSource, Inventory
from services.dispatcher.decide.inputs import GpusRead
from services.dispatcher.shell.gpuread import (FAKE_GPU_MEMORY, GpuReader, fake_inventory,
                                               read_inventory)

G0, G1 = "GPU-fake-0000", "GPU-fake-0001"
OTHER = Inventory((dataclasses.replace(fake_inventory(1).gpus[0], uuid="GPU-other"),),
                  GpuSource.NVML)


@pytest.mark.parametrize("gpus, inventory, gone", [
    ((G0, G1), fake_inventory(2), None),
    ((), fake_inventory(0), None),
    ((G0, G1), fake_inventory(1), G1),
    ((G0,), OTHER, G0),
    ((G0,), Inventory(source=GpuSource.NONE, error="NVML query failed"), None),  # nothing read
])
def test_a_gpu_gone_from_the_inventory_stops_the_start(
        gpus: tuple[str, ...], inventory: Inventory, gone: str | None) -> None:
    why = inventory.gone(gpus)
    if gone is None:
        assert why == ""
        return
    assert why.startswith(f"GPU(s) {gone} claimed for the run are no longer in the GPU "
                          f"inventory ({inventory.source.value}: {len(inventory.gpus)} GPU(s))")


def test_the_fake_inventory_declares_n_gpus_of_16_gib_with_stable_uuids() -> None:
    inv = read_inventory(2)
    assert inv == fake_inventory(2) and inv.source is GpuSource.FAKE and not inv.error
    assert inv.uuids == (G0, G1) and [g.index for g in inv.gpus] == [0, 1]
    assert all(g.memory_total == g.memory_free == FAKE_GPU_MEMORY == 16 * 1024**3
               and not g.foreign_pids for g in inv.gpus)
    assert inv.gpus[0].to_map() == {"index": 0, "uuid": G0, "name": "Fake GPU",
                                    "memory_total": FAKE_GPU_MEMORY,
                                    "memory_free": FAKE_GPU_MEMORY, "foreign_pids": []}
    assert fake_inventory(0) == Inventory((), GpuSource.FAKE)


def test_without_pynvml_there_are_no_gpus_and_the_reason_is_kept(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml: ImportError
    inv = read_inventory(0)
    assert inv.gpus == () and inv.source is GpuSource.NONE
    assert inv.error.startswith("pynvml is not installed")


def test_with_nothing_to_read_again_the_reader_answers_at_once_keeping_the_inventory() -> None:
    reader = GpuReader(None)  # fake GPUs: no re-read, no thread
    assert reader.start(frozenset({1})) == GpusRead(None)
    assert reader.result() is None


def test_a_re_read_changing_source_or_nothing_is_not_taken() -> None:
    inv = fake_inventory(2)
    assert inv.refreshed(fake_inventory(2)) is None
    assert inv.refreshed(Inventory(error="no NVIDIA driver or device")) is None
    busy = Inventory((dataclasses.replace(inv.gpus[0], foreign_pids=(9,)), inv.gpus[1]),
                     GpuSource.FAKE)
    assert inv.refreshed(busy) == busy
