"""Artifacts of a run (ported from tests/unit/test_dispatcher_artifacts.py): the shell
reads the run's manifest (a torn last line and a missing file skipped) and judges each
path against the run folder with its symlinks resolved, also for an artifact a worker
reports on the bus; the decision core registers only what it has not registered
already, refuses (and logs once) what leads outside, and sends the rest before the
run's end. The registry stores a path registered twice once (the dispatcher no longer
reads the registry's list of a run's artifacts: after a restart it sends a finished
run's whole manifest again)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from core.commands import FinishRun, RegisterArtifact
from core.rundir import MANIFEST_FILE
from services.dispatcher.decide.inputs import ExitRecord, ManifestEntry, ShimEnded
from services.dispatcher.shell.folders import outside_run_dir, read_manifest
from services.dispatcher.shell.hearing import reported
from tests.unit.dispatcher.driver import Driver, commands, folder, logged
from tests.unit.workload import open_registry

OUTSIDE = "must lie inside the run directory (symlinks resolved)"


def write_manifest(run_dir: Path, entries: list[dict], torn: str = "") -> None:
    with open(run_dir / MANIFEST_FILE, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in entries)
        fh.write(torn)


def test_the_manifest_read_skips_a_torn_last_line_and_files_that_do_not_exist(
        tmp_path: Path) -> None:
    paths = [f"a/{n}.bin" for n in range(12)] + ["new.mp4"]
    for p in paths:
        os.makedirs(os.path.dirname(tmp_path / p), exist_ok=True)
        (tmp_path / p).write_bytes(b"")
    write_manifest(tmp_path, [{"kind": "video", "path": p, "size": 1}
                              for p in paths + ["gone.mp4"]],
                   torn='{"kind": "video", "pa')   # torn by a killed worker
    assert read_manifest(str(tmp_path)) == tuple(
        ManifestEntry("video", p, 1, {}, "") for p in paths)
    assert read_manifest(str(tmp_path / "nowhere")) == ()


def test_manifest_entries_leading_out_of_the_run_folder_through_a_symlink_are_marked(
        tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    (run_dir / "sub" / "ok.bin").write_bytes(b"x")
    (run_dir / "etclink").symlink_to("/etc")
    (run_dir / "inner").symlink_to(run_dir / "sub")
    write_manifest(run_dir, [{"kind": "file", "path": p, "size": 1}
                             for p in ("etclink/passwd", "inner/ok.bin", "sub/ok.bin")])
    got = {e.path: e.outside for e in read_manifest(str(run_dir))}
    assert got == {"etclink/passwd": OUTSIDE, "inner/ok.bin": "", "sub/ok.bin": ""}
    root = str(run_dir)
    assert outside_run_dir(root, "etclink/passwd") == OUTSIDE
    assert outside_run_dir(root, "/etc/passwd") and outside_run_dir(root, ".")
    assert outside_run_dir(root, "../run/sub/ok.bin") == ""   # back inside: allowed
    assert outside_run_dir(root, "a\0b") and outside_run_dir(root, "")
    assert outside_run_dir(root, None) and outside_run_dir(root, "new.mp4") == ""


def test_an_artifact_reported_on_the_bus_is_judged_against_its_run_folder(
        tmp_path: Path) -> None:
    (tmp_path / "etclink").symlink_to("/etc")
    (tmp_path / "ok.bin").write_bytes(b"x")
    bad = reported("r1", {"kind": "file", "path": "etclink/passwd", "size": 1}, str(tmp_path))
    ok = reported("r1", {"kind": "file", "path": "ok.bin", "size": 1, "meta": {"n": 1}},
                  str(tmp_path))
    assert (bad.path, bad.outside) == ("etclink/passwd", OUTSIDE)
    assert (ok.kind, ok.path, ok.size, dict(ok.meta), ok.outside) == \
        ("file", "ok.bin", 1, {"n": 1}, "")


def test_an_artifact_reported_through_a_symlink_out_is_refused_and_logged_once(
        tmp_path: Path, d: Driver) -> None:
    (tmp_path / "etclink").symlink_to("/etc")
    (tmp_path / "ok.bin").write_bytes(b"x")
    d.start("r1")
    effects = []
    for path in ("etclink/passwd", "ok.bin", "etclink/passwd"):
        effects += d.feed(reported("r1", {"kind": "file", "path": path, "size": 1},
                                   str(tmp_path)))
    assert [c.path for c in commands(effects, RegisterArtifact)] == ["ok.bin"]
    (line,) = logged(effects, "registry.refused")
    assert (line.get("method"), line.get("run_id"), line.get("reason")) == \
        ("register_artifact", "r1", f"path: {OUTSIDE}")


def test_at_the_end_only_manifest_entries_not_registered_already_are_sent(d: Driver) -> None:
    d.start("r1")
    d.settle(d.feed(reported("r1", {"kind": "video", "path": "a.mp4", "size": 1}, "/nonexistent")))
    d.feed(ShimEnded("r1", 0))
    manifest = (ManifestEntry("video", "a.mp4", 1), ManifestEntry("video", "new.mp4", 1),
                ManifestEntry("file", "etclink/passwd", 1, outside=OUTSIDE))
    effects = d.feed(folder("r1", exit=ExitRecord(0, None), manifest=manifest))
    assert [c.path for c in commands(effects, RegisterArtifact)] == ["new.mp4"]
    assert not commands(effects, FinishRun)  # the end goes once they are stored
    (line,) = logged(effects, "registry.refused")
    assert line.get("reason") == f"path: {OUTSIDE}"
    assert commands(d.answer(effects), FinishRun)[0].run_id == "r1"


def test_the_registry_stores_a_path_registered_twice_once(tmp_path: Path) -> None:
    """What a restarted dispatcher relies on when it sends a run's manifest again."""
    conn, registry, _ = open_registry(str(tmp_path / "events.db"))
    ask = lambda m, a, i: registry.handle(m, a, f"q{i}", "test").reply  # noqa: E731
    run_id = ask("submit", {"config": {"seed": 1}}, 1)["result"]["run"]["run_id"]
    assert ask("claim_gpus", {"run_id": run_id, "gpu_uuids": [], "claimed_by": "d"}, 2)["ok"]
    art = {"run_id": run_id, "kind": "video", "path": "a.mp4", "size": 1}
    assert ask("register_artifact", art, 3)["ok"]
    again = ask("register_artifact", {**art, "size": 2}, 4)
    assert again["ok"], again
    listed = ask("list_artifacts", {"run_id": run_id}, 5)["result"]["artifacts"]
    assert [(a["path"], a["size"]) for a in listed] == [("a.mp4", 1)]  # the first stands
    conn.close()
