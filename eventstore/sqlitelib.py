"""sqlite_utils as the event store uses it, imported without its optional numpy and
pandas type maps. Our tables never hold a numpy or pandas value (every value comes
from msgpack or the standard library). Importing numpy only for that map cost the
registry 11 MB of its 42 MB and 40 ms of its start (``python -m bench idle``).

Both are kept out only while sqlite_utils is imported: a process that imports numpy
later (a worker, a test) gets it as usual."""

from __future__ import annotations

import sys

_KEPT_OUT = [name for name in ("numpy", "pandas") if name not in sys.modules]
for _name in _KEPT_OUT:
    sys.modules[_name] = None  # type: ignore[assignment]  # import raises ImportError
try:
    import sqlite_utils
finally:
    for _name in _KEPT_OUT:
        if sys.modules.get(_name) is None:
            del sys.modules[_name]

__all__ = ["sqlite_utils"]
