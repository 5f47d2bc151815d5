"""Regenerate the gRPC code of ``proto/trainer/v1/trainer.proto`` into ``trainer_api/v1/``
(``python scripts/gen_proto.py``, from any folder).

protoc names the generated modules after the .proto's path (``trainer/v1/...``), so
``trainer_pb2_grpc`` would import ``trainer.v1.trainer_pb2``, inside the client
package; the code is generated into a temporary folder and that one import is
rewritten to ``trainer_api.v1``, the package both the gateway and the client take it
from (the descriptor keeps its name, ``trainer/v1/trainer.proto``).
"""

from __future__ import annotations

import importlib.resources
import os
import sys
import tempfile

from grpc_tools import protoc

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROTO = "trainer/v1/trainer.proto"
OUT = os.path.join(REPO, "trainer_api", "v1")
FILES = ("trainer_pb2.py", "trainer_pb2.pyi", "trainer_pb2_grpc.py")


def main() -> int:
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(["protoc", f"-I{os.path.join(REPO, 'proto')}", f"-I{include}",
                          f"--python_out={tmp}", f"--pyi_out={tmp}",
                          f"--grpc_python_out={tmp}", os.path.join(REPO, "proto", PROTO)])
        if rc != 0:
            print(f"protoc failed ({rc})", file=sys.stderr)
            return 1
        for name in FILES:
            with open(os.path.join(tmp, "trainer", "v1", name), encoding="utf-8") as fh:
                text = fh.read()
            text = text.replace("from trainer.v1 import", "from trainer_api.v1 import")
            with open(os.path.join(OUT, name), "w", encoding="utf-8") as fh:
                fh.write(text)
    print(f"wrote {', '.join(FILES)} to {os.path.relpath(OUT, REPO)}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
