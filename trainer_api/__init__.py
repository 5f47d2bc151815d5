"""The code generated from ``proto/`` (``trainer_api.v1``): the one place the gateway
(the server) and the client library, CLI and GUI take the gRPC messages and stubs from,
so that no service depends on the client package. Regenerate with
``python scripts/gen_proto.py`` (docs/API.md)."""
