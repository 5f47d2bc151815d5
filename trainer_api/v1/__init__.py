"""Generated from proto/trainer/v1/trainer.proto by scripts/gen_proto.py; do not edit."""
