"""Datasets on disk in the folder layout `datasets.save_to_disk` writes, read and written as Arrow streams.

`prepare` and `pack` write their splits here file by file and read them back record batch by record batch,
never memory-mapping a whole table: memory stays bounded on a corpus of any size, every row is written once
(by `datasets`' own `ArrowWriter`, `pack`'s workers each writing their shard), and the result is a folder
`datasets.load_from_disk` reads as usual. `save_to_disk` itself would need the whole split as a `Dataset`
first, a second copy of every row; `tests/test_arrow_files.py` shows that, for the same rows, the installed
`datasets` writes the same records, schemas and shards as this module.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from data_prep.errors import CorruptFileError, UserError
from data_prep.io import read_json


def shard_name(index: int, count: int) -> str:
    """The file name `save_to_disk` gives shard `index` of `count`."""
    return f"data-{index:05d}-of-{count:05d}.arrow"


def split_files(split_dir: str | os.PathLike) -> list[Path]:
    """The Arrow files of a saved split, in order (from its state.json)."""
    split_dir = Path(split_dir)
    state_file = split_dir / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    files = [split_dir / f["filename"] for f in state.get("_data_files") or []]
    if not files or not all(f.is_file() for f in files):
        raise UserError(f"{split_dir} is not a split saved by `datasets` (no state.json listing its files)")
    return files


def saved_files(folder: str | os.PathLike) -> list[Path]:
    """Every Arrow file a `save_to_disk` folder (a DatasetDict or one Dataset) lists, checked to be there.

    A folder that is not a saved dataset is a UserError; a listed file that is missing, or a record that is
    not valid JSON, is a `CorruptFileError` naming it."""
    folder = Path(folder)
    if (folder / "dataset_dict.json").is_file():
        record = read_json(folder / "dataset_dict.json")
        splits = record.get("splits") if isinstance(record, dict) else None
        if not isinstance(splits, list):
            raise CorruptFileError(f"{folder / 'dataset_dict.json'} is damaged: it lists no splits")
        split_dirs = [folder / str(s) for s in splits]
    elif (folder / "state.json").is_file():
        split_dirs = [folder]
    else:
        raise UserError(f"{folder} is not a saved dataset folder (no dataset_dict.json)")
    files = []
    for split_dir in split_dirs:
        if not (split_dir / "state.json").is_file():
            raise CorruptFileError(f"{split_dir / 'state.json'} is missing: {folder} is incomplete")
        state = read_json(split_dir / "state.json")
        listed = state.get("_data_files") if isinstance(state, dict) else None
        if not isinstance(listed, list) or not all(isinstance(f, dict) for f in listed):
            raise CorruptFileError(f"{split_dir / 'state.json'} is damaged: it lists no Arrow files")
        for name in [f.get("filename") for f in listed]:
            if not (split_dir / str(name)).is_file():
                raise CorruptFileError(f"{split_dir / str(name)} is missing: {folder} lost one of its shards")
            files.append(split_dir / str(name))
    return files


def damaged_arrow_file(files: list[Path]) -> tuple[Path, str] | None:
    """The first of `files` that does not read as a whole Arrow stream, and why (None when all do)."""
    import pyarrow as pa

    for path in files:
        try:
            with pa.memory_map(str(path)) as src:
                pa.ipc.open_stream(src).read_all()
        except (OSError, pa.ArrowException) as e:
            return path, str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return None


def load_saved(folder: str | os.PathLike):  # -> datasets.Dataset | datasets.DatasetDict
    """`datasets.load_from_disk(folder)`, with a missing, damaged or cut-short file named in one line."""
    import datasets
    import pyarrow as pa

    files = saved_files(folder)
    try:
        return datasets.load_from_disk(str(folder))
    except (OSError, ValueError, pa.ArrowException) as e:
        bad = damaged_arrow_file(files)
        if bad is not None:
            raise CorruptFileError(
                f"{bad[0]} is damaged or cut short ({bad[1]}); remove {folder} and run the step that wrote it again"
            ) from None
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{folder} could not be read as a saved dataset: {reason}") from None


def iter_record_batches(files: list[Path]) -> Iterator:  # -> Iterator[pyarrow.RecordBatch]
    """Record batches of Arrow stream files, read (not memory-mapped) one at a time."""
    import pyarrow as pa

    for path in files:
        with pa.OSFile(str(path)) as src:
            yield from pa.ipc.open_stream(src)


def _column_slices(split_dir: str | os.PathLike, start: int, stop: int, column: str) -> Iterator:
    """`column` of rows [start, stop) of a saved split, one Arrow slice per record batch."""
    row = 0
    for record_batch in iter_record_batches(split_files(split_dir)):
        if row >= stop:
            break
        n = record_batch.num_rows
        a, b = max(start - row, 0), min(stop - row, n)
        row += n
        if b > a:
            yield record_batch.column(column).slice(a, b - a)


def iter_text_batches(
    split_dir: str | os.PathLike,
    start: int,
    stop: int,
    batch_size: int,
    column: str = "text",
    max_bytes: int | None = None,
) -> Iterator[list[str]]:
    """`column` of rows [start, stop) of a saved split, `batch_size` rows at a time; with `max_bytes`, a
    batch also ends before its text passes that many UTF-8 bytes (it always holds at least one row), and no
    more than that is turned into Python strings at once."""
    import pyarrow.compute as pc

    buf: list[str] = []
    size = 0
    for values in _column_slices(split_dir, start, stop, column):
        ends = np.cumsum(pc.binary_length(values).fill_null(0).to_numpy()) if max_bytes else None
        i = 0
        while i < len(values):
            j = min(i + batch_size - len(buf), len(values))
            if ends is not None:  # bytes up to and including row k: ends[k]
                done = int(ends[i - 1]) if i else 0
                j = min(j, int(np.searchsorted(ends, done + max_bytes - size, side="right")))
                if j == i and buf:  # the next row does not fit: this batch is full
                    yield buf
                    buf, size = [], 0
                    continue
                j = max(j, i + 1)
                size += int(ends[j - 1]) - done
            buf += values.slice(i, j - i).to_pylist()
            i = j
            if len(buf) >= batch_size or (max_bytes is not None and size >= max_bytes):
                yield buf
                buf, size = [], 0
    if buf:
        yield buf


def write_split_metadata(split_dir: str | os.PathLike, n_files: int, features) -> None:
    """Make `split_dir`, holding `shard_name(i, n_files)` files, a folder `load_from_disk` reads: the state.json
    and dataset_info.json of `save_to_disk`, taken from an empty dataset with the same `features` that
    `datasets` saves itself (so the format is whatever this `datasets` version writes)."""
    import datasets

    split_dir = Path(split_dir)
    datasets.disable_progress_bars()
    probe = split_dir.parent / f".probe-{split_dir.name}"
    datasets.Dataset.from_dict({k: [] for k in features}, features=features).save_to_disk(str(probe))
    state = json.loads((probe / "state.json").read_text())
    state["_data_files"] = [{"filename": shard_name(i, n_files)} for i in range(n_files)]
    state["_fingerprint"] = os.urandom(8).hex()  # new data, new fingerprint
    (split_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True))
    shutil.copyfile(probe / "dataset_info.json", split_dir / "dataset_info.json")
    shutil.rmtree(probe)


def write_dataset_dict(folder: str | os.PathLike, splits: list[str]) -> None:
    """The dataset_dict.json that makes `folder` (one sub-folder per split) a DatasetDict."""
    (Path(folder) / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
