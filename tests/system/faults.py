"""Shared by the fault tests (test_faults, test_faults_frames)."""

CONFIG = {"env": "CartPole-v1", "seed": 7, "worker": "cartpole"}
