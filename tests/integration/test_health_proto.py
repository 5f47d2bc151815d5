"""proto/grpc/health/v1/health.proto (shipped for grpcurl -proto, docs/API.md) is the
health protocol the gateway serves: the same descriptor as grpcio-health-checking's."""

from __future__ import annotations

import os
import subprocess
import sys

from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_shipped_health_proto_matches_the_served_one(tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "health.pb")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-Iproto",
                    f"--descriptor_set_out={out}", "grpc/health/v1/health.proto"],
                   cwd=REPO, check=True)
    with open(out, "rb") as fh:
        shipped = descriptor_pb2.FileDescriptorSet.FromString(fh.read()).file[0]
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    served.name = shipped.name
    for message in shipped.message_type:        # protoc fills in json_name; the
        for m in (message, *message.nested_type):  # compiled-in descriptor omits it
            for field in m.field:
                field.ClearField("json_name")
    assert shipped == served
