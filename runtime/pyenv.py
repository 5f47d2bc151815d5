"""Probing a Python interpreter once (``trainer env add``): run it with ``-I`` (isolated:
no PYTHON* variables, no user site, no current folder on sys.path) and a short script
that prints, as JSON, its version, sys.path, sys.prefix and whether the trainer SDK
(``worker.runner``) can be imported there and which distribution's version it is.
Nothing of that interpreter is imported here; the gateway runs this off its loop."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass

TIMEOUT_S = 20.0
MAX_OUTPUT = 1024 * 1024
SDK_DISTRIBUTIONS = ("trainer-sdk", "trainer-orchestrator")  # the SDK's own, or all of it

SCRIPT = """
import json, sys
out = {"version": "%d.%d.%d" % tuple(sys.version_info[:3]), "prefix": sys.prefix,
       "sys_path": [p for p in sys.path if p], "sdk_version": "", "sdk_error": ""}
try:
    import importlib.util
    found = importlib.util.find_spec("worker.runner") is not None
except Exception as exc:
    found, out["sdk_error"] = False, "%s: %s" % (type(exc).__name__, exc)
if found:
    from importlib import metadata
    for name in DISTRIBUTIONS:
        try:
            out["sdk_version"] = metadata.version(name)
            break
        except metadata.PackageNotFoundError:
            pass
    else:
        out["sdk_version"] = "unknown"
print(json.dumps(out))
""".replace("DISTRIBUTIONS", repr(SDK_DISTRIBUTIONS))


class ProbeError(Exception):
    """The path is not a Python interpreter that answers (the reason says why)."""


@dataclass(frozen=True)
class Probe:
    python: str
    python_version: str
    sys_path: tuple[str, ...]
    prefix: str
    sdk_version: str     # "" where worker.runner cannot be imported
    sdk_error: str = ""  # why finding it failed, where it did


def probe(python: str, timeout_s: float = TIMEOUT_S) -> Probe:
    """What the interpreter ``python`` (an absolute path) says of itself. Raises
    ProbeError naming what is wrong (not a file, not executable, not a Python)."""
    if not os.path.isabs(python):
        raise ProbeError("must be an absolute path")
    if not os.path.exists(python):
        raise ProbeError(f"{python} does not exist")
    if not os.path.isfile(python):
        raise ProbeError(f"{python} is not a file")
    if not os.access(python, os.X_OK):
        raise ProbeError(f"{python} is not executable")
    try:
        done = subprocess.run([python, "-I", "-c", SCRIPT], capture_output=True,
                              timeout=timeout_s, stdin=subprocess.DEVNULL, cwd="/",
                              env={k: v for k, v in os.environ.items()
                                   if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")})
    except subprocess.TimeoutExpired:
        raise ProbeError(f"{python} did not answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise ProbeError(f"{python} cannot be run: {exc.strerror or exc}") from None
    if done.returncode != 0:
        last = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise ProbeError(f"{python} is not a Python 3 interpreter that runs the probe "
                         f"(exit {done.returncode}: {last[0][:120]})")
    try:
        found = json.loads(done.stdout[:MAX_OUTPUT].decode())
        return Probe(python, str(found["version"]), tuple(str(p) for p in found["sys_path"]),
                     str(found["prefix"]), str(found["sdk_version"]),
                     str(found.get("sdk_error") or ""))
    except (ValueError, KeyError, TypeError) as exc:
        raise ProbeError(f"{python} answered the probe with something else ({exc})") from None
