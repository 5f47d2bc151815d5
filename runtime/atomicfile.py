"""Files that readers see whole or not at all: written to ``<path>.tmp.<pid>`` and
renamed over ``path``. A write that fails (a full disk, an encoder that raises)
leaves neither a torn file nor its temporary behind."""

from __future__ import annotations

import contextlib
import os
from typing import IO, Any, Iterator, Optional


@contextlib.contextmanager
def atomic_file(path: str, mode: str = "w", durable: bool = True,
                encoding: Optional[str] = "utf-8") -> Iterator[IO[Any]]:
    """Open a temporary file to write ``path``; on a clean exit it is flushed (and
    fsynced if ``durable``: on disk before the rename) and renamed into place."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as fh:
            yield fh
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
