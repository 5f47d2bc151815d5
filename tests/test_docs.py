"""The reference docs name everything the code defines: event types and their fields,
message types, topics, registry methods and their arguments, settings, terminal
causes and every state-machine transition. No sockets, no processes.

Each check looks for the item where the docs say it is (a heading, a table row), not
just anywhere in the file, and the failure message names what is missing.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Iterator

import pytest

from bus.codec import Envelope, FrameError, MessageType
from bus.rpc import Unavailable
from runtime.singleton import AlreadyRunning
from runtime.status import StatusBeacon
from bus.topics import Topic
from core import protocol
from core import errors
from core.clock import FakeClock
from core.events import EVENT_TYPES, TerminalCause
from core.ids import RunIds, is_run_id
from core.projection import RUN_COLUMNS, TABLES
from core.runstate import TRANSITIONS
from core.settings import SETTINGS
from eventstore.reader import StoredEvent
from services.registry.handlers import RequestHandler
from services.registry.migrations import connect, migrate

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _doc(name: str) -> str:
    path = DOCS / name
    assert path.is_file(), f"docs/{name} is missing"
    return path.read_text(encoding="utf-8")


def _headings(text: str) -> Iterator[tuple[int, int, str]]:
    """(line index, level, title) of every markdown heading outside code fences.
    The title loses its backticks and a leading section number like ``5.1``."""
    fenced = False
    for i, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fenced = not fenced
            continue
        m = re.match(r"^(#{1,6})\s+(.*?)\s*$", line)
        if m and not fenced:
            title = re.sub(r"^[\d.]+\s+", "", m.group(2).replace("`", "")).strip()
            yield i, len(m.group(1)), title


def _section(text: str, title: str) -> str:
    """The body under the heading ``title``, up to the next heading of the same or a
    higher level. Fails the test, naming the heading, when there is none."""
    lines = text.splitlines()
    heads = list(_headings(text))
    for n, (start, level, name) in enumerate(heads):
        if name == title:
            end = next((i for i, lvl, _ in heads[n + 1:] if lvl <= level), len(lines))
            return "\n".join(lines[start + 1:end])
    pytest.fail(f"no heading {title!r} in the docs")


def _has_row(text: str, first_cell: str) -> bool:
    """A table row whose first cell is exactly `first_cell` (in backticks)."""
    return re.search(rf"^\|\s*`{re.escape(first_cell)}`\s*\|", text, re.MULTILINE) is not None


def _missing(items: list[str]) -> str:
    return "missing: " + ", ".join(items)


# --- docs/BUS.md ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def bus_md() -> str:
    return _doc("BUS.md")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RequestHandler]:
    conn = connect(str(tmp_path / "events.db"))
    migrate(conn)
    try:
        yield RequestHandler(conn, FakeClock(), str(tmp_path / "events.db"))
    finally:
        conn.close()


def test_every_event_type_has_a_section_with_every_field(bus_md: str) -> None:
    heads = {title for _, _, title in _headings(bus_md)}
    missing_types = sorted(t for t in EVENT_TYPES if t not in heads)
    assert not missing_types, "BUS.md: event types without a heading: " + \
        _missing(missing_types)
    missing = [f"{name}.{f.name}" for name, cls in EVENT_TYPES.items()
               for f in dataclasses.fields(cls)
               if not _has_row(_section(bus_md, name), f.name)]
    assert not missing, "BUS.md: event fields without a row in their section: " + \
        _missing(missing)


def test_every_message_type_is_documented(bus_md: str) -> None:
    types = _section(bus_md, "Message types")
    missing = [m.value for m in MessageType if not _has_row(types, m.value)]
    assert not missing, "BUS.md, section Message types: " + _missing(missing)


def test_every_topic_has_a_row(bus_md: str) -> None:
    topics = _section(bus_md, "Topics")
    missing = [t.value for t in Topic
               if re.search(rf"^\|\s*`{re.escape(t.value)}\.", topics, re.MULTILINE) is None]
    assert not missing, "BUS.md, section Topics (rows `<topic>.<...>`): " + _missing(missing)


def test_every_envelope_field_has_a_row(bus_md: str) -> None:
    envelope = _section(bus_md, "The envelope")
    keys = ["v"] + [f.name for f in dataclasses.fields(Envelope)]
    missing = [k for k in keys if not _has_row(envelope, k)]
    assert not missing, "BUS.md, section The envelope: " + _missing(missing)


def test_every_status_payload_field_has_a_row(bus_md: str) -> None:
    due = StatusBeacon("x", 1.0, FakeClock(), lambda: {}).due()
    assert due is not None
    status = _section(bus_md, "ServiceStatus")
    missing = [k for k in due[1].payload if not _has_row(status, k)]
    assert not missing, "BUS.md, section ServiceStatus: " + _missing(missing)


def test_every_registry_method_has_a_section(bus_md: str, registry: RequestHandler) -> None:
    heads = {title for _, _, title in _headings(bus_md)}
    methods = sorted({*registry.commands, *registry.queries})
    assert methods, "the registry has no methods?"
    missing = [m for m in methods if m not in heads]
    assert not missing, "BUS.md: registry methods without a heading: " + _missing(missing)


def test_every_method_argument_has_a_row(bus_md: str, registry: RequestHandler) -> None:
    """Commands and queries alike: each field of its request type (core.protocol)."""
    assert set(registry.commands) | set(registry.queries) == set(protocol.Method)
    missing = [f"{m.value}.{f.name}" for m in protocol.Method
               for f in dataclasses.fields(protocol.METHODS[m])
               if not _has_row(_section(bus_md, m.value), f.name)]
    assert not missing, "BUS.md: method arguments without a row: " + _missing(missing)


def test_every_run_view_field_has_a_row(bus_md: str) -> None:
    view = _section(bus_md, "The run view")
    missing = [c for c in RUN_COLUMNS if not _has_row(view, c)]
    assert not missing, "BUS.md, section The run view: " + _missing(missing)


def test_every_error_code_has_a_row(bus_md: str) -> None:
    classes = [errors.ValidationError, errors.NotFound, errors.IllegalTransition,
               errors.Conflict, errors.ResourceBusy, errors.IntegrityError, errors.Internal,
               errors.StorageFull, errors.Expired]
    assert {c.code for c in classes} == errors.WIRE_CODES
    in_replies = _section(bus_md, "Error codes")
    unnamed = [c.__name__ for c in classes if f"`{c.__name__}`" not in in_replies]
    assert not unnamed, "BUS.md, section Error codes: classes not named: " + _missing(unnamed)
    in_replies = _section(bus_md, "Error codes")
    missing = [c.code for c in classes if not _has_row(in_replies, c.code)]
    missing += [c.code for c in (Unavailable, FrameError, AlreadyRunning)
                if f"`{c.code}`" not in in_replies]
    assert not missing, "BUS.md, section Error codes: " + _missing(missing)


def test_the_subscription_tips_hold() -> None:
    """BUS.md promises that event.<run_id>. selects one run and that no event type
    name is a prefix of another."""
    make = RunIds()
    ids = [make() for _ in range(50)]
    assert all(is_run_id(i) and len(i) == 13 for i in ids) and len(set(ids)) == 50
    clashes = [(a, b) for a in EVENT_TYPES for b in EVENT_TYPES if a != b and b.startswith(a)]
    assert not clashes, f"event type names that prefix others: {clashes}"


# --- docs/SETTINGS.md -----------------------------------------------------------------

def test_every_setting_has_a_row_with_its_default() -> None:
    text = _doc("SETTINGS.md")
    problems = []
    for s in SETTINGS:
        row = re.search(rf"^\|\s*`{re.escape(s.env)}`\s*\|.*$", text, re.MULTILINE)
        default = s.default.format(home="$TRAINER_HOME", user_home="$HOME")
        if row is None:
            problems.append(f"{s.env} (no row)")
        elif f"`{default}`" not in row.group(0):
            problems.append(f"{s.env} (default `{default}` not in its row)")
    assert not problems, "SETTINGS.md: " + _missing(problems)


# --- docs/EVENTLOG.md -----------------------------------------------------------------

@pytest.fixture(scope="module")
def eventlog_md() -> str:
    return _doc("EVENTLOG.md")


def test_every_terminal_cause_has_a_row(eventlog_md: str) -> None:
    causes = _section(eventlog_md, "Terminal causes")
    missing = [c.value for c in TerminalCause if not _has_row(causes, c.value)]
    assert not missing, "EVENTLOG.md, section Terminal causes: " + _missing(missing)


def _rows(text: str) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not all(set(c) <= set("-: ") for c in cells):
                out.append(cells)
    return out


def test_the_transition_table_is_exactly_transitions(eventlog_md: str) -> None:
    table = _section(eventlog_md, "Run state machine")
    documented = {tuple(r) for r in _rows(table) if len(r) == 3} - {("before", "event", "after")}
    expected = {(b.value if b else "(new)", t, a.value) for (b, t), a in TRANSITIONS.items()}
    missing = sorted(expected - documented)
    extra = sorted(documented - expected)
    assert not missing, "EVENTLOG.md: transitions not in the table: " + \
        _missing([" -> ".join((b, f"{t}", a)) for b, t, a in missing])
    assert not extra, f"EVENTLOG.md: the table lists moves TRANSITIONS does not: {extra}"


def test_every_stored_column_has_a_row(eventlog_md: str) -> None:
    columns = [f.name for f in dataclasses.fields(StoredEvent) if f.metadata.get("column", True)]
    columns += [c for cols, _ in TABLES.values() for c in cols]
    missing = sorted({c for c in columns if not _has_row(eventlog_md, c)})
    assert not missing, "EVENTLOG.md: columns without a row: " + _missing(missing)
    tables = [*TABLES, "events", "requests"]
    missing = [t for t in tables if f"`{t}`" not in eventlog_md]
    assert not missing, "EVENTLOG.md: tables not named: " + _missing(missing)


# --- docs/ARCHITECTURE.md -------------------------------------------------------------

def test_every_built_module_is_placed() -> None:
    text = _doc("ARCHITECTURE.md")
    modules = [p.relative_to(ROOT).as_posix()
               for folder in ("core", "bus", "runtime", "eventstore", "services/registry",
                              "services/dispatcher", "worker")
               for p in sorted((ROOT / folder).glob("*.py")) if p.name != "__init__.py"]
    assert modules
    missing = [m for m in modules if f"`{m}`" not in text]
    assert not missing, "ARCHITECTURE.md: modules not mentioned: " + _missing(missing)


# --- docs/BUS.md: the subscriber in another language -----------------------------------

def test_the_node_subscriber_in_bus_md_is_the_tested_file() -> None:
    """docs/BUS.md shows examples/js/curve_subscriber.js, which
    tests/system/test_bus_curve_node.py runs: the page and the file must not drift."""
    text = _doc("BUS.md")
    block = re.search(r"^```js\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert block is not None, "BUS.md: no ```js block (tcp endpoints and CURVE)"
    example = (ROOT / "examples" / "js" / "curve_subscriber.js").read_text(encoding="utf-8")
    assert block.group(1) == example, "BUS.md's js block differs from examples/js/curve_subscriber.js"
