"""Pretraining data: the packed folder `mlm pack` writes, held as compact tensors, and fixed eval sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data_prep.errors import UserError
from data_prep.io import read_json


def load_packed(data_dir: str | Path):
    """Open a packed dataset folder; returns (DatasetDict, pack metadata)."""
    import datasets

    from data_prep.arrow_files import load_saved

    path = Path(data_dir)
    if not path.is_dir():
        raise UserError(f"packed data not found: {path} (run `mlm pack` first)")
    if not (path / "dataset_dict.json").is_file():
        raise UserError(f"{path} is not a packed dataset folder (no dataset_dict.json)")
    dsd = load_saved(path)
    if not isinstance(dsd, datasets.DatasetDict) or "train" not in dsd:
        raise UserError(f"{path} has no 'train' split; was it written by `mlm pack`?")
    if "input_ids" not in dsd["train"].column_names:
        cols = ", ".join(dsd["train"].column_names)
        raise UserError(f"{path} has no column 'input_ids'; columns found: {cols}")
    meta = read_json(path / "mlm_step.json") if (path / "mlm_step.json").is_file() else {}
    return dsd, meta


def _block_matrix(table, column: str, dtype) -> torch.Tensor:
    """A list column of equal-length rows as one (rows, length) tensor, without a Python object per row."""
    lists = table.column(column).combine_chunks()
    n = len(lists)
    if n == 0:
        return torch.from_numpy(np.zeros((0, 0), dtype))
    lengths = np.diff(np.asarray(lists.offsets))
    if (lengths != lengths[0]).any():
        raise UserError(
            f"packed blocks must all have the same length; column '{column}' has rows of {sorted(set(lengths.tolist()))[:5]} tokens"
        )
    flat = np.array(
        lists.flatten().to_numpy(zero_copy_only=False), dtype=dtype
    )  # a copy: writable, not mapped
    return torch.from_numpy(flat.reshape(n, int(lengths[0])))


class BlockDataset(torch.utils.data.Dataset):
    """Packed blocks held as one int tensor; indexing returns what the masking collator takes.

    An index past the end is a draw id of a later epoch (`epoch * N + i`, from `EpochSampler`): it reads
    block `i`, and the item's `sample_id` (the draw id) seeds its batch's masking."""

    def __init__(self, ds) -> None:
        # held compactly (ids int32, word starts int8: 5 bytes a token instead of 16), widened per item
        table = ds.with_format("arrow")[:]  # the selected rows, indices mapping applied
        self.input_ids = _block_matrix(table, "input_ids", np.int32)
        self.word_start = (
            _block_matrix(table, "word_start", np.int8) if "word_start" in ds.column_names else None
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = i % self.input_ids.shape[0]
        item = {"input_ids": self.input_ids[j].long(), "sample_id": torch.tensor(i, dtype=torch.int64)}
        if self.word_start is not None:
            item["word_start"] = self.word_start[j].long()
        return item


class FixedEvalSet(torch.utils.data.Dataset):
    """Validation blocks masked once with a fixed seed, so every evaluation scores the same positions."""

    def __init__(self, blocks: BlockDataset, collator, n: int, batch: int = 256) -> None:
        n = min(n, len(blocks))
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, n, batch):
            out = collator([blocks[i] for i in range(start, min(n, start + batch))])
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
        self.tensors = {k: torch.cat(v) for k, v in parts.items()}

    def __len__(self) -> int:
        return self.tensors["input_ids"].shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def stack_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def packed_stats(data_dir: str | Path) -> dict:
    """The packing statistics a packed folder records (stats.json; {} when absent)."""
    f = Path(data_dir) / "stats.json"
    return read_json(f) if f.is_file() else {}
