"""Skip work whose inputs are unchanged: a fingerprint of the inputs, kept in a JSON record beside the work.

The one "reuse if unchanged" rule of the project (recipe steps, `mlm evaluate`'s task data and runs):

    key = fingerprint({"config": ..., "inputs": ...})
    record = lookup(folder / "some_record.json", key)
    if record is None:
        ...do the work...
        store(folder / "some_record.json", key, result=...)

A record is `{"fingerprint": key, **fields}`. It lives here, not in `mlm`, because `data_prep` never imports
`mlm` and both use it. Input files are identified by content, not only by name: `file_digest` (size,
modification time and a hash of the bytes: all of a small file, the head and tail of a large one), and
folders by the digests of their files (`folder_digest`).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
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


WHOLE_FILE_BYTES = 1 << 20  # files up to this size are hashed whole
SAMPLE_BYTES = 512 << 10  # larger ones by their first and last SAMPLE_BYTES (with their size and mtime)


def file_digest(path: str | os.PathLike) -> dict[str, Any]:
    """What identifies a file's content: absolute path, size, modification time and the sha256 of its bytes
    (a small file whole; a large one's head and tail, so that a run over many large files stays cheap)."""
    p = Path(path).resolve()
    st = p.stat()
    h = hashlib.sha256()
    with open(p, "rb") as f:
        if st.st_size <= WHOLE_FILE_BYTES:
            h.update(f.read())
        else:
            h.update(f.read(SAMPLE_BYTES))
            f.seek(st.st_size - SAMPLE_BYTES)
            h.update(f.read(SAMPLE_BYTES))
    return {"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": h.hexdigest()[:32]}


def folder_digest(folder: str | os.PathLike) -> str:
    """A hash of the digests of every file under `folder` (hidden files and folders left out), by relative
    path: it changes when a file is added, removed or edited."""
    root = Path(folder).resolve()
    h = hashlib.sha256()
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(dirpath) / name
            digest = {**file_digest(path), "path": path.relative_to(root).as_posix()}
            h.update(json.dumps(digest, sort_keys=True).encode())
    return h.hexdigest()[:32]
