"""Generated from proto/trainer/v1/trainer.proto; do not edit (regenerate, see docs/API.md)."""
