"""The trainer's user-facing Python package: the gRPC client library (``client``),
the CLI (``cli``) and the GUI (``gui``); the gRPC code
generated from proto/trainer/v1/trainer.proto lives in ``trainer_api.v1``."""
