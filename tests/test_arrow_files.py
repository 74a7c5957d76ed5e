"""`data_prep.arrow_files` writes what `datasets.save_to_disk` writes: for the same rows, the installed
`datasets` reads both folders alike, and their record files, Arrow schemas and shard files are the same."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pytest
from datasets.arrow_writer import ArrowWriter

from data_prep.arrow_files import (
    iter_record_batches,
    load_saved,
    saved_files,
    shard_name,
    write_dataset_dict,
    write_split_metadata,
)

TEXT = datasets.Features({"text": datasets.Value("string")})  # what `prepare` writes
BLOCKS = datasets.Features(  # what `pack` writes
    {
        "input_ids": datasets.Sequence(datasets.Value("int32")),
        "word_start": datasets.Sequence(datasets.Value("int8")),
    }
)


def _rows(features: datasets.Features, n: int, seed: int) -> dict[str, list]:
    if "text" in features:
        return {"text": [f"document {seed}-{i} " + "é" * (i % 5) for i in range(n)]}
    return {
        "input_ids": [[(seed + i + j) % 30000 for j in range(8)] for i in range(n)],
        "word_start": [[(i + j) % 2 for j in range(8)] for i in range(n)],
    }


def _table(path: Path) -> pa.Table:
    with pa.OSFile(str(path)) as src:
        return pa.ipc.open_stream(src).read_all()


def _write_ours(folder: Path, shards: dict[str, list[pa.Table]], features: datasets.Features) -> None:
    """As `prepare` and `pack` do: each shard through `datasets`' ArrowWriter, then the records."""
    for split, tables in shards.items():
        (folder / split).mkdir(parents=True)
        for i, table in enumerate(tables):
            with ArrowWriter(
                path=str(folder / split / shard_name(i, len(tables))), features=features
            ) as writer:
                for batch in table.to_batches(max_chunksize=3):  # several record batches per shard
                    writer.write_table(pa.Table.from_batches([batch]))
                writer.finalize()
        write_split_metadata(folder / split, len(tables), features)
    write_dataset_dict(folder, list(shards))


@pytest.mark.parametrize("features", [TEXT, BLOCKS], ids=["prepare", "pack"])
def test_our_folder_is_what_save_to_disk_writes(tmp_path: Path, features: datasets.Features) -> None:
    datasets.disable_progress_bars()
    rows = {"train": _rows(features, 23, 0), "validation": _rows(features, 5, 1)}
    num_shards = {"train": 3, "validation": 1}
    theirs, ours = tmp_path / "theirs", tmp_path / "ours"
    datasets.DatasetDict(
        {split: datasets.Dataset.from_dict(r, features=features) for split, r in rows.items()}
    ).save_to_disk(str(theirs), num_shards=num_shards)
    # the same rows in the same shards
    shards = {split: [_table(p) for p in saved_files(theirs / split)] for split in rows}
    assert [len(t) for t in shards["train"]] == [8, 8, 7]
    _write_ours(ours, shards, features)

    # the records: equal but for the fingerprint, which is new for new data
    assert json.loads((ours / "dataset_dict.json").read_text()) == json.loads(
        (theirs / "dataset_dict.json").read_text()
    )
    for split in rows:
        state = {f: json.loads((f / split / "state.json").read_text()) for f in (ours, theirs)}
        assert state[ours].pop("_fingerprint") != state[theirs].pop("_fingerprint")
        assert state[ours] == state[theirs]
        info = {f: json.loads((f / split / "dataset_info.json").read_text()) for f in (ours, theirs)}
        assert info[ours] == info[theirs]
        assert sorted(p.name for p in (ours / split).iterdir()) == sorted(
            p.name for p in (theirs / split).iterdir()
        )
        # the shard files: the same schema (with the features in its metadata) and rows
        for mine, saved in zip(saved_files(ours / split), saved_files(theirs / split), strict=True):
            assert mine.name == saved.name
            a, b = _table(mine), _table(saved)
            assert a.schema.equals(b.schema, check_metadata=True)
            assert a.equals(b)

    # what `datasets` reads
    loaded = {f: datasets.load_from_disk(str(f)) for f in (ours, theirs)}
    assert list(loaded[ours]) == list(loaded[theirs]) == list(rows)
    for split, r in rows.items():
        assert loaded[ours][split].features == loaded[theirs][split].features == features
        assert loaded[ours][split].to_dict() == loaded[theirs][split].to_dict() == r
        assert load_saved(ours)[split].to_dict() == r
        # and what our reader reads from datasets' own folder
        streamed = pa.Table.from_batches(list(iter_record_batches(saved_files(theirs / split))))
        assert streamed.to_pydict() == r
