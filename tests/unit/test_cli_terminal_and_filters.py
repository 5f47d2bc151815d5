"""What the `trainer` command prints: control characters from names, tags, paths and
messages escaped; repeated --tag filters combined; the end of a failed run; bad
settings; the GUI's X11 libraries checked first. Pure or with stand-in clients."""

from __future__ import annotations

import json
from typing import Any, Iterable

import pytest
from click.testing import CliRunner

from core.errors import ValidationError
from core.runconfig import RunConfig
from trainer.cli import format as fmt
from trainer.cli import gui as cli_gui
from trainer.cli import runs as cli_runs
from trainer.cli.main import cli
from trainer_api.v1 import trainer_pb2 as pb

pytestmark = pytest.mark.timeout(30)

EVIL = "EVIL\nr000000000000  fake-row  COMPLETED"


def test_clean_escapes_every_control_character_on_one_line() -> None:
    assert fmt.clean(EVIL) == "EVIL\\nr000000000000  fake-row  COMPLETED"
    assert fmt.clean("a\x07b\x00c\x1b[2J\x7f\x9b\u202ed") == \
        "a\\x07b\\x00c\\x1b[2J\\x7f\\x9b\\u202ed"
    assert fmt.clean("plain: é ✓ 学") == "plain: é ✓ 学"
    assert fmt.clean_block("line 1\r\nline 2\rline\t3\x1b]0;title\x07") == \
        "line 1\nline 2\nline\t3\\x1b]0;title\\x07"


def test_names_and_tags_with_control_characters_are_refused_naming_the_field() -> None:
    for config, field in (({"name": EVIL}, "name"), ({"tags": ["ok", "b\x07"]}, "tags"),
                          ({"tags": ["nul\x00"]}, "tags"), ({"name": "x\u2028y"}, "name"),
                          ({"env": "Cart\x1bPole-v1"}, "env")):
        with pytest.raises(ValidationError) as err:
            RunConfig.from_map(config)
        assert err.value.field == field and "control characters" in err.value.message
    assert RunConfig.from_map({"name": "plain é name", "tags": ["a b"]}).name == "plain é name"


def record(run_id: str, tags: Iterable[str] = (), **fields: Any) -> pb.RunRecord:
    cfg = {"name": fields.pop("name", ""), "tags": list(tags), "worker": "w", "env": "E"}
    return pb.RunRecord(run_id=run_id, config_json=json.dumps(cfg), **fields)


class FakeClient:
    """ListRuns with the gateway's one-tag filter; GetRun, ListArtifacts, a watch."""

    address = "127.0.0.1:1"

    def __init__(self, runs: list[pb.RunRecord], artifacts: Iterable[pb.Artifact] = ()) -> None:
        self.runs, self.arts = runs, list(artifacts)

    def __enter__(self) -> "FakeClient":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def list(self, statuses: Iterable[int] = (), tag: str = "", page_size: int = 0,
             page_token: str = "") -> pb.ListRunsResponse:
        hits = [r for r in self.runs if not tag or tag in fmt.config_of(r)["tags"]]
        start = int(page_token or 0)
        out = pb.ListRunsResponse(runs=hits[start:start + page_size], total_size=len(hits))
        if start + page_size < len(hits):
            out.next_page_token = str(start + page_size)
        return out

    def get(self, run_id: str) -> pb.RunRecord:
        return next(r for r in self.runs if r.run_id == run_id)

    def artifacts(self, run_id: str) -> list[pb.Artifact]:
        return self.arts

    def watch(self, *a: Any, **kw: Any) -> Iterable[pb.WatchRunsResponse]:
        return iter(())


def invoke(monkeypatch: pytest.MonkeyPatch, fake: FakeClient, *args: str) -> Any:
    monkeypatch.setattr(cli_runs, "client", lambda: fake)
    return CliRunner().invoke(cli, list(args))


def test_repeated_tags_combine(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [record("r000000000001", ["a"]), record("r000000000002", ["a", "b"]),
            record("r000000000003", ["b"]), record("r000000000004", ["a", "b", "c"])]
    got = invoke(monkeypatch, FakeClient(runs), "ls", "--tag", "a", "--tag", "b")
    assert got.exit_code == 0, got.output
    ids = [line.split()[0] for line in got.output.splitlines() if line.startswith("r0")]
    assert ids == ["r000000000002", "r000000000004"]
    got = invoke(monkeypatch, FakeClient(runs), "ls", "--tag", "b", "--tag", "a", "--limit", "1")
    assert [line.split()[0] for line in got.output.splitlines()
            if line.startswith("r0")] == ["r000000000002"] and "(1 of 2 runs" in got.output


def test_a_bad_status_is_refused_by_ls_and_watch(monkeypatch: pytest.MonkeyPatch) -> None:
    for command in ("ls", "watch"):
        got = invoke(monkeypatch, FakeClient([]), command, "--status", "bogus")
        assert got.exit_code == 2 and "'bogus' is not one of" in got.output, got.output
        assert got.exception is None or isinstance(got.exception, SystemExit)


def test_show_and_ls_print_no_raw_control_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    run = record("r0123456789ab", ["bell\x07"], name=EVIL, status=pb.RUN_STATUS_FAILED,
                 message="exit code 2\nboom\x1b]0;pwned\x07", cancel_reason="x\x00y")
    fake = FakeClient([run], [pb.Artifact(kind="file\x07", path="a\x00b\nc", size=1)])
    for args in (("show", run.run_id), ("ls",)):
        got = invoke(monkeypatch, fake, *args)
        assert got.exit_code == 0, got.output
        assert not any(ch in got.output for ch in "\x00\x07\x1b"), got.output
        rows = [line for line in got.output.splitlines() if line.startswith("r0")]
        assert rows == ([] if args[0] == "show" else [rows[0]]), got.output  # no fake row
        assert "EVIL\\nr0000000" in got.output
    shown = invoke(monkeypatch, fake, "show", run.run_id).output
    assert "a\\x00b\\nc" in shown and "bell\\x07" in shown and "boom\\x1b]0;pwned" in shown


def test_a_failed_run_ends_with_its_cause_and_last_stderr_lines() -> None:
    run = record("r0123456789ab", status=pb.RUN_STATUS_FAILED, exit_code=2,
                 cause=pb.TERMINAL_CAUSE_EXIT_CODE,
                 message="exit code 2\nTraceback (most recent call last):\nValueError: lr")
    text = cli_runs.ending(run)
    assert text.splitlines() == ["r0123456789ab FAILED: exit_code (exit code 2)",
                                 "  exit code 2", "  Traceback (most recent call last):",
                                 "  ValueError: lr"]


@pytest.mark.parametrize("args", [("up", "--timeout", "0"), ("down",), ("tail",)])
def test_a_bad_setting_is_named_with_exit_status_2(args: tuple[str, ...],
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Any) -> None:
    monkeypatch.setenv("TRAINER_HOME", str(tmp_path))
    monkeypatch.setenv("TRAINER_CHECKPOINT_INTERVAL", "abc")
    got = CliRunner().invoke(cli, list(args))
    assert got.exit_code == 2, got.output
    assert got.output.strip().splitlines() == [
        "Error: bad setting TRAINER_CHECKPOINT_INTERVAL: 'abc' is not valid: could not "
        "convert string to float: 'abc'"]
    assert isinstance(got.exception, SystemExit)  # no traceback


def test_the_gui_names_missing_x11_libraries_before_qt_loads() -> None:
    def loader(present: set[str]) -> Any:
        def load(soname: str) -> object:
            if soname not in present:
                raise OSError(f"{soname}: cannot open shared object file")
            return object()
        return load
    everything = {soname for _, soname in cli_gui.XCB_LIBRARIES}
    assert cli_gui.missing_xcb_libraries(loader(everything)) == []
    assert cli_gui.missing_xcb_libraries(loader({"libxcb-icccm.so.4"})) == \
        ["libxcb-cursor0", "libxcb-keysyms1"]
    with pytest.raises(Exception) as err:
        cli_gui.check_platform({"DISPLAY": ":0"}, loader(set()))
    assert "apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in str(err.value)
    cli_gui.check_platform({"DISPLAY": ":0"}, loader(everything))
    for env in ({"QT_QPA_PLATFORM": "offscreen"}, {"WAYLAND_DISPLAY": "wayland-0"},
                {"QT_QPA_PLATFORM": "wayland;xcb"}):
        cli_gui.check_platform(env, loader(set()))  # not xcb: nothing to check
    assert cli_gui.uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not cli_gui.uses_xcb({}, "darwin")
