"""What every step writes beside its output: `mlm_step.json` (step, config, versions, inputs)."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Any

from data_prep.io import read_json, write_json

STEP_FILE = "mlm_step.json"
_PACKAGES = ("transformers", "datasets", "tokenizers", "torch")


def package_versions() -> dict[str, str]:
    """Python and library versions, for the libraries that are installed."""
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def file_fingerprint(path: str | os.PathLike, hash_content: bool = False) -> dict[str, Any]:
    """Absolute path, size and modification time of a file (plus its sha256 when `hash_content`)."""
    p = Path(path).resolve()
    st = p.stat()
    out: dict[str, Any] = {"path": str(p), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
    if hash_content:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        out["sha256"] = h.hexdigest()
    return out


def folder_fingerprint(folder: str | os.PathLike) -> dict[str, Any]:
    """Identify a step's output folder: its absolute path and the sha256 of its `mlm_step.json`."""
    p = Path(folder).resolve()
    out: dict[str, Any] = {"path": str(p)}
    meta = p / STEP_FILE
    if meta.is_file():
        out["mlm_step_sha256"] = hashlib.sha256(meta.read_bytes()).hexdigest()
    return out


def config_values(cfg: Any) -> dict[str, Any]:
    """A config's options as JSON values (enums by value), a secret (`hub_token`) only as set or not."""
    values = {}
    for f in dataclasses.fields(cfg):
        if f.init:
            value = getattr(cfg, f.name)
            value = getattr(value, "value", value)
            if f.name.endswith("_token") and value is not None:
                value = "<set>"
            values[f.name] = dataclasses.asdict(value) if dataclasses.is_dataclass(value) else value
    return values


def write_step_metadata(
    folder: str | os.PathLike, step: str, config: Any, inputs: dict, **facts: Any
) -> dict:
    """Write `folder/mlm_step.json` = {"step", "config", "versions", "inputs", **facts} and return it
    (`facts`: what the step says of its output, e.g. `tokenizer_fingerprint`)."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = config_values(config)
    meta = {"step": step, "config": dict(config), "versions": package_versions(), "inputs": inputs, **facts}
    write_json(Path(folder) / STEP_FILE, meta)
    return meta


def read_step_metadata(folder: str | os.PathLike) -> dict | None:
    """The `mlm_step.json` of `folder`, or None when it has none."""
    p = Path(folder) / STEP_FILE
    return read_json(p) if p.is_file() else None
