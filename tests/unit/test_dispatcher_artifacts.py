"""The artifacts a finished run's manifest lists that the registry does not know yet:
the registry's list is read page by page (a run with more artifacts than one page
must not have its later ones registered a second time), a torn last line and a
missing file are skipped."""

from __future__ import annotations

import json
import os
from typing import Any

from core.rundir import MANIFEST_FILE as MANIFEST
from services.dispatcher.outcome import (artifacts_to_register, outside_run_dir,
                                         registered_artifacts)


def paged_registry(paths: list[str], page: int) -> Any:
    """A registry ``call`` that answers list_artifacts ``page`` items at a time."""
    asked: list[int] = []

    def call(method: str, args: dict[str, Any]) -> dict[str, Any]:
        assert method == "list_artifacts"
        after = args.get("after_seq", 0)
        asked.append(after)
        rows = [{"path": p, "seq": n + 1} for n, p in enumerate(paths) if n + 1 > after]
        return {"artifacts": rows[:page], "more": len(rows) > page}
    call.asked = asked  # type: ignore[attr-defined]
    return call


def test_registered_artifacts_reads_every_page() -> None:
    paths = [f"a/{n}.bin" for n in range(25)]
    call = paged_registry(paths, 10)
    assert [a["path"] for a in registered_artifacts(call, "r0123456789ab")] == paths
    assert call.asked == [0, 10, 20]


def test_only_unknown_existing_manifest_entries_are_registered(tmp_path: Any) -> None:
    run_dir = str(tmp_path)
    known = [f"a/{n}.bin" for n in range(12)]
    lines = [{"kind": "video", "path": p, "size": 1} for p in known + ["new.mp4", "gone.mp4"]]
    for p in known + ["new.mp4"]:
        os.makedirs(os.path.dirname(os.path.join(run_dir, p)), exist_ok=True)
        open(os.path.join(run_dir, p), "wb").close()
    with open(os.path.join(run_dir, MANIFEST), "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in lines)
        fh.write('{"kind": "video", "pa')   # torn by a killed worker
    call = paged_registry(known, 5)
    got = artifacts_to_register(run_dir, lambda: registered_artifacts(call, "r0123456789ab"))
    assert got == [{"kind": "video", "path": "new.mp4", "size": 1, "meta": {}}]


def test_manifest_entries_leading_out_of_the_run_folder_through_a_symlink_are_refused(
        tmp_path: Any) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    (run_dir / "sub" / "ok.bin").write_bytes(b"x")
    (run_dir / "etclink").symlink_to("/etc")
    (run_dir / "inner").symlink_to(run_dir / "sub")
    lines = [{"kind": "file", "path": p, "size": 1}
             for p in ("etclink/passwd", "inner/ok.bin", "sub/ok.bin")]
    with open(run_dir / MANIFEST, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e) + "\n" for e in lines)
    refused: list[tuple[str, str]] = []
    got = artifacts_to_register(str(run_dir), lambda: [],
                                lambda art, why: refused.append((art["path"], why)))
    assert [a["path"] for a in got] == ["inner/ok.bin", "sub/ok.bin"]
    assert refused == [("etclink/passwd", "must lie inside the run directory (symlinks "
                        "resolved)")]
    assert outside_run_dir(str(run_dir), "etclink/passwd")
    assert outside_run_dir(str(run_dir), "/etc/passwd") and outside_run_dir(str(run_dir), ".")
    assert outside_run_dir(str(run_dir), "a\0b") and not outside_run_dir(str(run_dir), "new.mp4")


def test_an_artifact_reported_on_the_bus_through_a_symlink_out_is_refused(tmp_path: Any) -> None:
    from types import SimpleNamespace

    from services.dispatcher.active import ActiveRun
    from services.dispatcher.telemetry import register_reported
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "etclink").symlink_to("/etc")
    (run_dir / "ok.bin").write_bytes(b"x")
    run = ActiveRun("r0123456789ab", str(run_dir), {}, [], 1, None)  # type: ignore[arg-type]
    registered: list[str] = []
    refused: list[tuple[str, str]] = []
    svc = SimpleNamespace(
        active={run.run_id: run}, finishing={}, clock=SimpleNamespace(monotonic=lambda: 0.0),
        note_started=lambda r, now: None,
        call_registry=lambda method, **a: registered.append(a["path"]) or {},
        log_refused=lambda method, args, exc: refused.append((args["path"], exc.field)))
    for path in ("etclink/passwd", "ok.bin", "etclink/passwd"):
        register_reported(svc, {"run_id": run.run_id, "kind": "file", "path": path, "size": 1})
    assert registered == ["ok.bin"] and refused == [("etclink/passwd", "path")]  # logged once
