"""Stable content hashes used as record ids (problem, sample, recipe).

A hash is sha256 over canonical JSON (sorted keys, no whitespace), cut to 16 hex chars
(64 bits: the chance of any collision among ten million records is about 3e-6).
This module does not decide *what* goes into an id; records.py does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal values hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stable_hash(*parts: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of ``parts``."""
    digest = hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()
    return digest[:length]
