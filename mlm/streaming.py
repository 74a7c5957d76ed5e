"""Streaming pretraining data and exact, fast resume.

- `PackedStream`: the packed blocks of `mlm pack` read as a stream from the memory-mapped Arrow shards (never
  loaded whole), split across processes, starting at any block without reading the blocks before it.
- `EpochSampler`: the map-style order (a fresh permutation per epoch from `seed + epoch`) yielding *draw ids*
  `epoch * N + index`, so every draw of a block is told apart from the others (its masking seed).
- `batch_seed` / `SeededMasking`: masking that depends only on the seed and the draws in the batch, not on
  any RNG stream, so a resumed run masks exactly as an uninterrupted one (any number of workers too).
- Checkpoints (completeness, the data position a streaming run resumes from) are in `mlm.checkpoints`.

Stream order: draw p of the global stream is block `order_k(p mod N)` of the train split, in pass
k = p // N, where `order_k` is a permutation of the N blocks made from (seed, k) by a keyed Feistel network
(no N-sized table in memory; stored order when the stream has no seed). Micro-batch j of process r (of W) is
draws `start + (j * W + r) * B ... + B - 1`: the processes read disjoint runs of draws, and one optimizer
step consumes exactly B * W * gradient_accumulation_steps draws, so the position after a step is known
exactly and a resumed stream starts at the next unseen draw without touching any block before it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep.errors import UserError

# ------------------------------------------------------------------------------------------- masking


def batch_seed(seed: int, draw_ids: torch.Tensor | np.ndarray | list[int]) -> int:
    """A 63-bit seed from the run's seed and the draw ids of a batch (order matters)."""
    ids = np.asarray(draw_ids, dtype=np.int64)
    h = hashlib.blake2b(np.int64(seed).tobytes() + ids.tobytes(), digest_size=8)
    return int.from_bytes(h.digest(), "little") >> 1


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of the global RNG (dropout) for optimizer step `step` on process `rank`."""
    return batch_seed(seed, [step, rank, -1])


class SeededMasking:
    """Wrap a masking collator (`seed=None`, so it draws from torch's global RNG): each batch is masked under
    a CPU seed made from `seed` and the batch's `sample_id`s, inside `torch.random.fork_rng`, so the global
    RNG stream (dropout) is left as it was. Items without `sample_id` are masked from the global RNG."""

    def __init__(self, masker, seed: int) -> None:
        self.masker, self.seed = masker, seed

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if "sample_id" not in items[0]:
            return self.masker(items)
        ids = [int(it["sample_id"]) for it in items]
        items = [{k: v for k, v in it.items() if k != "sample_id"} for it in items]
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(batch_seed(self.seed, ids))
            return self.masker(items)


# -------------------------------------------------------------------------------------------- sampler


class EpochSampler(torch.utils.data.Sampler):
    """Map-style order: a permutation of the N blocks per epoch, from `seed + epoch` alone; yields draw ids
    `epoch * N + index` (the dataset reads block `id % N`). Same order in every process (the distributed
    wrapper hands each one its batches), and in a resumed run."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        base = self.epoch * self.n
        yield from (base + torch.randperm(self.n, generator=g)).tolist()


# --------------------------------------------------------------------------------------------- stream


def _mix(x: np.ndarray, key: int) -> np.ndarray:
    """splitmix64's finalizer of x ^ key (uint64, wrapping)."""
    x = x ^ np.uint64(key)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def permute(indices: np.ndarray, n: int, seed: int, rounds: int = 4) -> np.ndarray:
    """A bijection of [0, n) keyed by `seed`, applied to `indices` (Feistel network + cycle walking)."""
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    keys = [batch_seed(seed, [r]) for r in range(rounds)]

    def feistel(x: np.ndarray) -> np.ndarray:
        left, right = x >> np.uint64(half), x & mask
        for key in keys:
            left, right = right, left ^ (_mix(right, key) & mask)
        return (left << np.uint64(half)) | right

    with np.errstate(over="ignore"):
        out = feistel(np.asarray(indices, dtype=np.uint64))
        outside = out >= np.uint64(n)
        while outside.any():  # walk the cycle until it comes back inside [0, n)
            out[outside] = feistel(out[outside])
            outside = out >= np.uint64(n)
    return out.astype(np.int64)


class PackedStream(torch.utils.data.IterableDataset):
    """The train split of a packed folder as an endless stream of blocks (see the module docstring).

    `start`: draws already consumed (from the checkpoint); the stream begins there, reading nothing before.
    `seed`: each pass over the blocks in its own random order (None: stored order).
    `configure(batch_size, rank, world_size)` must match the DataLoader (done by the trainer). Items:
    `input_ids`, `word_start` (when packed with it), `sample_id` (the draw id, for the masking seed).
    `blocks_read` counts the blocks this process (or worker) read.
    """

    def __init__(
        self, data_dir: str | os.PathLike, split: str = "train", start: int = 0, seed: int | None = None
    ) -> None:
        self.path = Path(data_dir) / split
        self.seed = seed
        if not (self.path / "dataset_info.json").is_file():
            raise UserError(f"streaming: {self.path} is not a packed split (run `mlm pack` first)")
        self.start = int(start)
        self.batch_size, self.rank, self.world_size = 1, 0, 1
        self.blocks_read = 0
        self._table = None
        self.num_blocks = len(self._open())
        if self.num_blocks == 0:
            raise UserError(f"streaming: {self.path} holds no blocks")

    def configure(self, batch_size: int, rank: int, world_size: int) -> None:
        self.batch_size, self.rank, self.world_size = int(batch_size), int(rank), int(world_size)

    def __getstate__(self) -> dict:  # workers re-open the memory map
        return {**self.__dict__, "_table": None}

    def _open(self):
        if self._table is None:
            import datasets

            ds = datasets.load_from_disk(str(self.path))  # memory-mapped Arrow shards: nothing is loaded yet
            self._columns = [c for c in ("input_ids", "word_start") if c in ds.column_names]
            self._table = ds.data.table.select(self._columns)
        return self._table

    def blocks(self, position: int, n: int) -> np.ndarray:
        """The block indices of draws [position, position + n)."""
        draws = np.arange(position, position + n, dtype=np.int64)
        passes, index = np.divmod(draws, self.num_blocks)
        if self.seed is None:
            return index
        out = np.empty_like(index)
        for k in np.unique(passes):
            sel = passes == k
            out[sel] = permute(index[sel], self.num_blocks, batch_seed(self.seed, [int(k), -2]))
        return out

    def _read(self, position: int, n: int) -> dict[str, np.ndarray]:
        """Blocks of draws [position, position + n): (n, L) arrays per column. Reads only those blocks."""
        import pyarrow as pa

        rows = self._open().take(pa.array(self.blocks(position, n)))
        self.blocks_read += n
        return {
            c: rows.column(c).combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(n, -1)
            for c in self._columns
        }

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        b, w = self.batch_size, self.world_size
        j = worker  # DataLoader workers take this process's micro-batches in turn
        while True:
            first = self.start + (j * w + self.rank) * b
            cols = self._read(first, b)
            tensors = {c: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for c, v in cols.items()}
            for r in range(b):
                item = {c: t[r] for c, t in tensors.items()}
                item["sample_id"] = torch.tensor(first + r, dtype=torch.int64)
                yield item
            j += workers
