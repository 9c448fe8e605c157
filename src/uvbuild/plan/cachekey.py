"""Cache keys from content: sha256 over canonical JSON, never mtimes.

A step's key covers its own definition, its parents' keys and the digests of what
it reads, so an unchanged input gives the same key on any machine, any day.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

# Bump when the meaning of a step or the shape of its key changes, so old cache entries
# are not reused. 3: keys are made from the steps' declared fields (planner.step_key_of),
# and the file digests from the tar bytes that ship (plan/archive.py).
CACHE_FORMAT = 3


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



def unkeyed_fields(cls: type) -> dict[str, str]:
    """The fields a dataclass leaves out of keys, each with why: the `unkeyed` mappings
    (a ClassVar) of the class and of the classes it derives from."""
    left_out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        left_out.update(vars(klass).get("unkeyed", {}))
    return left_out


def key_value(value: object) -> Any:
    """`value` as JSON data for a key: scalars as they are, tuples and lists as lists,
    mappings with text keys as objects, a dataclass as [its type name, {field: value}]
    with every field but those its class leaves out (unkeyed_fields); the type name tells
    apart two kinds of one union, an image base from a bootstrap one.

    So a field added to a dataclass is in the keys that hold it unless it is left out
    on purpose, with a reason.

    Anything else is a TypeError: a value with no stable text form (a host path, an
    object's repr) must be given one here, or its field left out of the key on purpose.
    """
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, tuple | list):
        return [key_value(item) for item in value]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: key_value(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        left_out = unkeyed_fields(type(value))
        return [type(value).__name__, {f.name: key_value(getattr(value, f.name))
                                        for f in dataclasses.fields(value)
                                        if f.name not in left_out}]
    raise TypeError(f"{type(value).__name__} {value!r} has no key form: give it one in "
                    "cachekey.key_value, or leave its field out of keys (an `unkeyed` "
                    "entry of its class)")
