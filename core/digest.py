"""Canonical form and digest of a run config (idempotent submission)."""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(config: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same meaning gives the same text."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def config_digest(config: Any) -> str:
    return hashlib.sha256(canonical_json(config).encode("utf-8")).hexdigest()
