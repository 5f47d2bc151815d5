"""The gateway's version check runs before anything imports the generated trainer/v1
code (which fails at import on an older protobuf): an old protobuf gives the clear
"refusing to start" and exit code 3, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.bootstrap import EXIT_TOO_OLD
from tests.helpers import REPO

pytestmark = pytest.mark.timeout(60)

# An old protobuf, as the gateway's process sees it: importlib.metadata reports it, and
# importing trainer_pb2 fails the way ValidateProtobufRuntimeVersion makes it fail.
OLD_PROTOBUF = r'''
import importlib.metadata as md
import sys

real = md.version
md.version = lambda dist: "4.25.0" if dist == "protobuf" else real(dist)


class OldProtobuf:
    def find_spec(self, name, path=None, target=None):
        if name.startswith("trainer.v1.trainer_pb2"):
            raise ImportError(f"{name}: Detected mismatched Protobuf Gencode/Runtime versions")
        return None


sys.meta_path.insert(0, OldProtobuf())
from services.gateway.__main__ import main
sys.exit(main())
'''


def test_old_protobuf_is_refused_with_exit_code_3(tmp_path: Path) -> None:
    env = {**os.environ, "TRAINER_HOME": str(tmp_path), "TRAINER_GATEWAY_ADDR": "127.0.0.1:1",
           "PYTHONPATH": REPO}
    env.pop("TRAINER_GATEWAY_TOKEN", None)
    got = subprocess.run([sys.executable, "-c", OLD_PROTOBUF], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=45)
    assert got.returncode == EXIT_TOO_OLD, got.stderr
    assert "gateway: refusing to start: protobuf 4.25.0 is older than the minimum" in got.stderr
    assert "Traceback" not in got.stderr
