"""The gateway: the public gRPC API (trainer.v1.TrainerService, docs/API.md)."""
