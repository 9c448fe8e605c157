"""Cache keys from content: sha256 over canonical JSON, never mtimes.

A step's key covers its own definition, its parents' keys and the digests of what
it reads, so an unchanged input gives the same key on any machine, any day.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Bump when the meaning of a step changes, so old cache entries are not reused.
CACHE_FORMAT = 2


def step_key(kind: str, definition: Mapping[str, Any], parents: Sequence[str] = ()) -> str:
    """The key of a step: its kind, its definition and its parents' keys."""
    document = {
        "format": CACHE_FORMAT,
        "kind": kind,
        "definition": definition,
        "parents": list(parents),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()

