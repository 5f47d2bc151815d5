"""What read_folder (services/dispatcher/shell/folders.py) reads of a run's folder:
all of it for a run whose shim is gone, and nothing that would end it for one its back
end still holds (a SLURM job still active: no scan of /proc, none of its end's files)."""

from __future__ import annotations

import json
import os

from services.dispatcher.shell.folders import read_folder


def test_a_held_run_s_end_files_are_not_read_and_an_unheld_one_s_are(tmp_path) -> None:
    run_dir = str(tmp_path)
    with open(os.path.join(run_dir, "result.json"), "w", encoding="utf-8") as fh:
        json.dump({"outcome": "completed", "metrics": {"score": 1.0}}, fh)
    free = read_folder("r1", run_dir)   # no shim, no exit record: what ends it is read
    assert free.disk_free is not None and free.processes == frozenset()
    held = read_folder("r1", run_dir, held=True)
    assert held.disk_free is None and dict(held.metrics) == {} and held.exit is None
    assert held.worker is None and not held.shim_alive
