"""Server reflection as both ``grpc.reflection.v1alpha`` and ``grpc.reflection.v1``.

grpcio-reflection (up to at least 1.85) serves only v1alpha; newer clients
(grpcurl, Postman, grpc-js tools) ask for v1 first. The two protocols are the same
messages under another package name, so v1 is the same servicer registered under
the v1 name, with the v1 file descriptor (the v1alpha one, renamed) added to the
pool so that reflection can describe itself under both names.
"""

from __future__ import annotations

from typing import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection as v1alpha
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2

V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
V1ALPHA_SERVICE = v1alpha.SERVICE_NAME


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindServiceByName(V1_SERVICE)
        return  # a grpcio-reflection that ships v1 already put it there
    except KeyError:
        pass
    alpha = descriptor_pb2.FileDescriptorProto()
    alpha_pb2.DESCRIPTOR.CopyToProto(alpha)
    text = alpha.SerializeToString()  # rename every reference to the package
    v1 = descriptor_pb2.FileDescriptorProto.FromString(text)
    v1.name, v1.package = V1_FILE, V1_PACKAGE
    v1.ClearField("options")
    old = f".{alpha.package}."
    for message in v1.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = "." + V1_PACKAGE + "." + field.type_name[len(old):]
    for service in v1.service:
        for method in service.method:
            for name in ("input_type", "output_type"):
                value = getattr(method, name)
                if value.startswith(old):
                    setattr(method, name, "." + V1_PACKAGE + "." + value[len(old):])
    pool.Add(v1)


def enable(service_names: Iterable[str], server: grpc.aio.Server) -> tuple[str, ...]:
    """Serve reflection v1alpha and v1 for ``service_names`` and both reflection
    services; return every name served."""
    pool = descriptor_pool.Default()
    _add_v1_descriptor(pool)
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = v1alpha.aio.ReflectionServicer(names, pool=pool)
    method = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=alpha_pb2.ServerReflectionRequest.FromString,
        response_serializer=alpha_pb2.ServerReflectionResponse.SerializeToString)
    for service in (V1ALPHA_SERVICE, V1_SERVICE):
        handlers = {"ServerReflectionInfo": method}
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service,
                                                                              handlers),))
    return names
