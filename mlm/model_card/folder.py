"""What the model folder itself says: its config, tokenizer files and weights."""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FolderFacts:
    config: dict[str, Any] = field(default_factory=dict)  # config.json
    mask_token: str | None = None  # from the tokenizer files
    parameters: int | None = None  # counted in the safetensors weights

    @property
    def architecture(self) -> str | None:
        """The model class, e.g. `BertForMaskedLM`."""
        archs = self.config.get("architectures") or []
        return str(archs[0]) if archs else None

    @property
    def labels(self) -> list[str]:
        """The classifier's label names in id order; [] when it has none or only `LABEL_N` placeholders."""
        id2label = self.config.get("id2label") or {}
        labels = [str(v) for _, v in sorted(id2label.items(), key=lambda kv: int(kv[0]))]
        return [] if all(v.startswith("LABEL_") for v in labels) else labels


def read_folder(folder: str | os.PathLike) -> FolderFacts:
    folder = Path(folder)
    return FolderFacts(
        config=_read_json(folder / "config.json"),
        mask_token=_mask_token(folder),
        parameters=count_parameters(folder),
    )


def count_parameters(folder: str | os.PathLike) -> int | None:
    """Parameters in the folder's safetensors weights (sharded or not); None when there are none."""
    folder = Path(folder)
    try:
        single = folder / "model.safetensors"
        if single.is_file():
            return _safetensors_parameters(single)
        index = folder / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
            if shards:
                return sum(_safetensors_parameters(folder / s) for s in shards)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    return None


def _safetensors_parameters(path: Path) -> int:
    """Number of parameters stored in one safetensors file, read from its header only."""
    with path.open("rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return sum(math.prod(t["shape"]) for name, t in header.items() if name != "__metadata__")


def _mask_token(folder: Path) -> str | None:
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        token = _read_json(folder / name).get("mask_token")
        if isinstance(token, dict):
            token = token.get("content")
        if isinstance(token, str) and token:
            return token
    return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}
