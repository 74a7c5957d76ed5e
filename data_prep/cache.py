"""Skip work whose inputs are unchanged: a fingerprint of the inputs, kept in a JSON record beside the work.

The one "reuse if unchanged" rule of the project (recipe steps, `mlm evaluate`'s task data and runs):

    key = fingerprint({"config": ..., "inputs": ...})
    record = lookup(folder / "some_record.json", key)
    if record is None:
        ...do the work...
        store(folder / "some_record.json", key, result=...)

A record is `{"fingerprint": key, **fields}`. It lives here, not in `mlm`, because `data_prep` never imports
`mlm` and both use it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from data_prep.io import read_json, write_json

FINGERPRINT_KEY = "fingerprint"


def fingerprint(inputs: Any) -> str:
    """A short, stable hash of JSON-able `inputs` (mapping keys sorted; other objects by `str`)."""
    blob = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def read(record: str | os.PathLike) -> dict[str, Any] | None:
    """The record at `record` whatever its fingerprint, or None when there is none (or it is unreadable)."""
    try:
        data = read_json(record)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def lookup(record: str | os.PathLike, key: str) -> dict[str, Any] | None:
    """The record at `record` when it was stored with `key`; None when it is missing or has another key."""
    data = read(record)
    return data if data is not None and data.get(FINGERPRINT_KEY) == key else None


def store(record: str | os.PathLike, key: str, **fields: Any) -> None:
    """Write `{"fingerprint": key, **fields}` to `record` (atomically): the work for `key` is done."""
    write_json(record, {FINGERPRINT_KEY: key, **fields})
