"""A model folder checked before it is loaded: is it a model at all, and are its files whole.

`check_model_folder` turns what users give by mistake into one line naming the folder or file: a pretraining
run folder (which `final/` or `checkpoint-N/` inside to use), a tokenizer folder (it has no model), a
`config.json` that is not JSON, weights cut short (a truncated `model.safetensors`, a missing shard).
Hub ids and paths that do not exist are left to the loaders.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from data_prep.errors import CorruptFileError, UserError
from data_prep.io import read_json

WEIGHTS_INDEX = "model.safetensors.index.json"
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt")
# Weights that `from_pretrained` loads without unpickling: safetensors, whole or sharded.
SAFE_WEIGHTS = ("model.safetensors", WEIGHTS_INDEX)
# Pickled weights (older transformers): loadable, but running code on load; never published.
PICKLED_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json")
_SEARCH_DEPTH = 3  # how deep `models_inside` looks: runs/NAME/pretrain/final is 2 below runs/NAME


def check_safetensors(path: str | os.PathLike) -> None:
    """`path` is a whole safetensors file: its header reads and its tensors end where the file ends."""
    path = Path(path)
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError(f"its header claims {header_len} bytes but the file has {size}")
            header = json.loads(f.read(header_len))
        ends = [t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"]
    except (struct.error, ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        raise CorruptFileError(f"{path} is damaged: not a safetensors file ({e})") from None
    expected = 8 + header_len + max(ends, default=0)
    if size != expected:
        how = "cut short" if size < expected else "longer than its header says"
        raise CorruptFileError(f"{path} is damaged: {how} ({size} bytes, {expected} expected)")


def check_weights(folder: str | os.PathLike) -> None:
    """Every safetensors file of `folder` is whole, and a sharded checkpoint's index names shards that exist."""
    folder = Path(folder)
    index = folder / WEIGHTS_INDEX
    if index.is_file():
        shards = set((read_json(index).get("weight_map") or {}).values())
        for name in sorted(shards):
            if not (folder / name).is_file():
                raise CorruptFileError(f"{folder / name} is missing: {index.name} lists it")
    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors(path)


def is_model_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a model `from_pretrained` loads: config.json and weights (safetensors or pickled)."""
    folder = Path(folder)
    weights = SAFE_WEIGHTS + PICKLED_WEIGHTS
    return (folder / "config.json").is_file() and any((folder / name).is_file() for name in weights)


def models_inside(folder: str | os.PathLike) -> list[Path]:
    """The model folders below `folder` (up to 3 levels), finished models first (by path), then checkpoints
    newest first; a model folder's own subfolders (ELECTRA's generator/) and hidden folders are not searched."""
    found: list[Path] = []
    level = [Path(folder)]
    for _ in range(_SEARCH_DEPTH):
        below = []
        for parent in level:
            try:
                children = sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
            for child in children:
                (found if is_model_folder(child) else below).append(child)
        level = below
    checkpoints = [p for p in found if p.name.startswith("checkpoint-")]
    finished = sorted((p for p in found if p not in checkpoints), key=lambda p: p.as_posix())
    return finished + sorted(checkpoints, key=_newest_first)


def _newest_first(checkpoint: Path) -> tuple[str, int]:
    step = checkpoint.name.split("-")[-1]
    return checkpoint.parent.as_posix(), -int(step) if step.isdigit() else 1


def run_folder_hint(folder: Path) -> str | None:
    """For a pretraining run folder: which model folders inside it to use (None for other folders)."""
    checkpoints = sorted(
        (p for p in folder.glob("checkpoint-*") if (p / "config.json").is_file()),
        key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1,
    )
    names = [p.name + "/" for p in checkpoints[-3:]]
    if (folder / "final" / "config.json").is_file():
        more = f" (or a checkpoint inside it: {', '.join(names)})" if names else ""
        return f"{folder} is a pretraining run folder; use its final model {folder / 'final'}{more}"
    if names:
        return f"{folder} is a pretraining run folder without final/; use a checkpoint inside it: {', '.join(names)}"
    return None


def not_a_model(folder: Path, what: str = "model") -> str:
    """Why `folder` (which has no config.json) is not a model, in one line."""
    hint = run_folder_hint(folder)
    if hint:
        return hint
    if any((folder / name).is_file() for name in _TOKENIZER_FILES):
        return f"{folder} is a tokenizer folder: it has no model (no config.json, no weights); give a {what} folder"
    return f"{what} folder {folder} has no config.json: it is not a saved model"


def check_model_folder(name: str | os.PathLike, what: str = "model") -> None:
    """When `name` is a local folder: a UserError unless it holds a model whose config, tokenizer files and
    weights are whole."""
    folder = Path(os.path.expanduser(str(name)))
    if not folder.is_dir():
        return
    if not (folder / "config.json").is_file():
        raise UserError(not_a_model(folder, what))
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        if (folder / name).is_file() and not isinstance(read_json(folder / name), dict):
            raise CorruptFileError(f"{folder / name} is damaged: expected a JSON object")
    check_weights(folder)
