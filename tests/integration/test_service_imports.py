"""What the services import, checked in a fresh interpreter (``python -m bench idle``
holds their sum of RSS under 200 MB): the registry loads no numpy for sqlite_utils'
optional type map (eventstore/sqlitelib.py), yet numpy imports as usual afterwards;
the bus loads zmq.auth's authenticator thread (and asyncio with it) only where
CURVE is on."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO


def _run(code: str) -> None:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_registry_imports_no_numpy_and_numpy_still_imports_after() -> None:
    _run("import sys, services.registry.__main__, eventstore.tables;"
         "assert 'numpy' not in sys.modules and 'pandas' not in sys.modules;"
         "from eventstore.sqlitelib import sqlite_utils;"
         "assert sqlite_utils.db.np is None;"
         "import numpy; assert numpy.zeros(2).sum() == 0")


def test_the_bus_imports_the_curve_authenticator_only_for_curve() -> None:
    _run("import sys, bus.__main__;"
         "bad = [m for m in ('zmq.auth.thread', 'asyncio', 'bus.curveauth') if m in sys.modules];"
         "assert not bad, bad")
