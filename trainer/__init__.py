"""The trainer's user-facing Python package: the gRPC client library (``client``),
the code generated from proto/trainer/v1/trainer.proto (``v1``) and the CLI (``cli``)."""
