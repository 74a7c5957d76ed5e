"""Labelled classification data: read local files, Hub datasets or the built-in task into a `datasets.Dataset`.

Specs:
  - a local file: ``.csv`` (comma, standard CSV quoting), ``.tsv`` (tab, *no* quoting: GLUE TSVs contain stray
    quotes), ``.jsonl`` / ``.json``, ``.parquet``; text formats may end in ``.gz``. A file with another
    extension (SentEval's ``sentiment-train``, TREC's ``.label``) needs ``delimiter``. Delimited files other
    than CSV are split with no quoting, into at most as many fields as there are columns: the last column
    takes the rest of the line (so ``delimiter=" "`` with ``column_names=[label, text]`` reads
    "label sentence..." lines).
  - a folder written by ``datasets.save_to_disk`` (``PATH@SPLIT`` picks a split of a DatasetDict).
  - ``hf:NAME[:CONFIG]@SPLIT``: a Hub dataset (needs network access).
  - ``builtin:pydocs@SPLIT``: the built-in demo task (``data_prep.builtin.pydocs_task``).

The returned dataset keeps only the text column(s) and the label column, under their original names; texts
and labels are strings. `build_label_map` fixes the label order; `check_labels` rejects dev/test labels that
training never saw.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from data_prep.errors import UserError

TEXT_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json")


def load_labelled(
    spec_or_path: str,
    *,
    text_column: str,
    text_pair_column: str | None,
    label_column: str,
    column_names: list[str] | None = None,
    delimiter: str | None = None,
    split: str | None = None,
    encoding: str = "utf-8",
) -> datasets.Dataset:
    """Load a labelled dataset with columns `text_column` [, `text_pair_column`], `label_column` (all str).

    `column_names` names the columns of a header-less CSV/TSV/delimited file (e.g. CoLA: source, label,
    orig, sentence). `split` picks a split of a Hub dataset, the built-in task or a saved DatasetDict when
    the spec has no ``@SPLIT``.
    """
    spec = str(spec_or_path).strip()
    if not spec:
        raise UserError("empty data spec: give a file path, hf:NAME@SPLIT or builtin:pydocs@SPLIT")
    wanted = [c for c in (text_column, text_pair_column, label_column) if c]
    if spec.startswith("builtin:"):
        name, spec_split = _split_suffix(spec[len("builtin:") :])
        ds, where = _load_builtin(name, spec_split or split), spec
    elif spec.startswith("hf:"):
        name, spec_split = _split_suffix(spec[len("hf:") :])
        ds, where = _load_hub(name, spec_split or split, spec), spec
    else:
        path, spec_split = _local_path(spec)
        where = str(path)
        if path.is_dir():
            ds = _load_saved(path, spec_split or split)
        else:
            rows, columns = _read_file(path, column_names, delimiter, encoding)
            _check_columns(where, wanted, columns)
            data = {c: [_as_text(r.get(c), c == label_column) for r in rows] for c in wanted}
            return _check_labels_present(_from_columns(data, wanted), label_column, where)
    _check_columns(where, wanted, ds.column_names)
    feature = ds.features[label_column]
    names = feature.names if isinstance(feature, datasets.ClassLabel) else None
    data = {c: [_as_text(v, c == label_column) for v in ds[c]] for c in wanted}
    if names:  # a Hub ClassLabel: keep the label names, not their ids
        data[label_column] = [
            names[int(v)] if v is not None and int(v) >= 0 else None for v in data[label_column]
        ]
    return _check_labels_present(_from_columns(data, wanted), label_column, where)


def _from_columns(data: dict[str, list], wanted: Sequence[str]) -> datasets.Dataset:
    features = datasets.Features({c: datasets.Value("string") for c in wanted})
    return datasets.Dataset.from_dict(data, features=features)


def build_label_map(labels: Iterable[Any]) -> list[str]:
    """Sorted distinct labels (as strings): numerically when all look like integers, else alphabetically."""
    distinct = {str(v) for v in labels if v is not None and str(v) != ""}
    if all(_is_int(v) for v in distinct):
        return sorted(distinct, key=lambda v: (int(v), v))
    return sorted(distinct)


def check_labels(ds: datasets.Dataset, label_column: str, label_map: Sequence[str], where: str) -> None:
    """Raise UserError if `ds` has a label outside `label_map` (labels the training data never had)."""
    known = set(label_map)
    unseen = sorted({str(v) for v in ds[label_column]} - known)
    if unseen:
        raise UserError(
            f"{where}: label {', '.join(map(repr, unseen[:5]))}{' ...' if len(unseen) > 5 else ''} "
            f"not seen in the training data; known labels: {', '.join(label_map)}"
        )


def label_ids(ds: datasets.Dataset, label_column: str, label_map: Sequence[str]) -> list[int]:
    """The class id of each row's label."""
    index = {name: i for i, name in enumerate(label_map)}
    return [index[str(v)] for v in ds[label_column]]


def stratified_subset(
    ds: datasets.Dataset,
    label_column: str,
    *,
    fraction: float = 1.0,
    max_samples: int | None = None,
    seed: int = 0,
) -> datasets.Dataset:
    """A seeded subset keeping each label's share: `fraction` of the rows, then at most `max_samples`.

    Every label keeps at least one row while the budget allows. Rows keep their original order.
    """
    n = len(ds)
    target = n if fraction >= 1.0 else int(round(n * fraction))
    if max_samples is not None:
        target = min(target, max_samples)
    target = max(target, 1) if n else 0
    if target >= n:
        return ds
    labels = np.asarray([str(v) for v in ds[label_column]])
    rng = np.random.default_rng(seed)
    groups = {name: rng.permutation(np.flatnonzero(labels == name)) for name in sorted(set(labels.tolist()))}
    names = list(groups)
    exact = np.asarray([len(groups[k]) * target / n for k in names])
    quota = np.floor(exact).astype(int)
    if target >= len(names):  # every label keeps a row
        quota = np.maximum(quota, 1)
    # largest remainders fill (or trim) the quota to exactly `target`
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    sizes = np.asarray([len(groups[k]) for k in names])
    i = 0
    while quota.sum() < target:
        k = order[i % len(order)]
        if quota[k] < sizes[k]:
            quota[k] += 1
        i += 1
    for k in order[::-1]:
        while quota.sum() > target and quota[k] > 1:
            quota[k] -= 1
    keep = np.sort(np.concatenate([groups[k][: quota[j]] for j, k in enumerate(names)]))
    return ds.select(keep.tolist())


# --- sources -----------------------------------------------------------------------------------------


def _split_suffix(spec: str) -> tuple[str, str | None]:
    if "@" in spec:
        name, split = spec.rsplit("@", 1)
        return name, split or None
    return spec, None


def _local_path(spec: str) -> tuple[Path, str | None]:
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return path, None
    name, split = _split_suffix(spec)
    if split is not None and Path(os.path.expanduser(name)).is_dir():
        return Path(os.path.expanduser(name)), split
    raise UserError(f"data file not found: {spec}")


@functools.lru_cache(maxsize=4)
def _pydocs_task(seed: int = 0) -> datasets.DatasetDict:
    try:
        from data_prep.builtin import pydocs_task
    except ImportError as e:
        raise UserError(f"builtin:pydocs is not available in this installation ({e})") from None
    return pydocs_task(seed=seed)


BUILTIN_TASKS = ("pydocs",)


def _load_builtin(name: str, split: str | None) -> datasets.Dataset:
    if name not in BUILTIN_TASKS:
        raise UserError(f"unknown built-in task 'builtin:{name}'; valid: {', '.join(BUILTIN_TASKS)}")
    task = _pydocs_task()
    return _pick_split(task, split, f"builtin:{name}")


def _load_hub(name: str, split: str | None, spec: str) -> datasets.Dataset:
    repo, _, config = name.partition(":")
    if not repo:
        raise UserError(f"{spec}: expected hf:NAME[:CONFIG]@SPLIT")
    if split is None:
        raise UserError(f"{spec}: name a split, e.g. {spec}@train")
    try:
        ds = datasets.load_dataset(repo, config or None, split=split)
    except Exception as e:  # offline, unknown repo, bad split: all user-fixable
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"could not load Hub dataset {spec}: {first}") from None
    if not isinstance(ds, datasets.Dataset):
        raise UserError(f"{spec}: expected a regular (not streaming) dataset split")
    return ds


def _load_saved(path: Path, split: str | None) -> datasets.Dataset:
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{path} is a folder but not a saved dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        return _pick_split(ds, split, str(path))
    return ds


def _pick_split(dd: datasets.DatasetDict, split: str | None, where: str) -> datasets.Dataset:
    if split is None or split not in dd:
        what = "name a split" if split is None else f"no split '{split}'"
        raise UserError(f"{where}: {what}; splits: {', '.join(dd)} (write {where}@SPLIT)")
    return dd[split]


# --- local files ---------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def _open_text(path: Path, encoding: str) -> io.TextIOBase:
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        encoding = "utf-8-sig"  # drop a byte-order mark (GLUE's MRPC dev.tsv has one)
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding=encoding, newline="")
    return open(path, encoding=encoding, newline="")


def _normalise_delimiter(delimiter: str | None) -> str | None:
    if delimiter is None:
        return None
    aliases = {"\\t": "\t", "tab": "\t", "\\s": " ", "space": " ", "comma": ","}
    return aliases.get(delimiter.lower(), delimiter)


def _read_file(
    path: Path, column_names: list[str] | None, delimiter: str | None, encoding: str
) -> tuple[list[dict], list[str]]:
    """Rows (dicts) and the column names of a local file."""
    kind = _suffix(path)
    delimiter = _normalise_delimiter(delimiter)
    if kind == ".parquet" and delimiter is None:
        try:
            ds = datasets.Dataset.from_parquet(str(path))
        except Exception as e:
            raise UserError(f"cannot read {path} as parquet: {e}") from None
        return ds.to_list(), ds.column_names
    try:
        with _open_text(path, encoding) as f:
            if kind in (".jsonl", ".json") and delimiter is None:
                rows = _read_json(f, path, kind)
                columns = list(dict.fromkeys(k for r in rows[:1000] for k in r))
                return rows, columns
            if delimiter is None:
                delimiter = {".csv": ",", ".tsv": "\t"}.get(kind)
            if delimiter is None:
                raise UserError(
                    f"{path}: cannot tell the format from the extension '{kind or '(none)'}'; use .csv, .tsv, "
                    ".jsonl, .json or .parquet, or give delimiter (and column_names if there is no header)"
                )
            return _read_delimited(f, path, delimiter, column_names)
    except UnicodeDecodeError as e:
        raise UserError(
            f"{path} is not valid {encoding} (byte {e.start}); set encoding, e.g. latin-1"
        ) from None
    except (OSError, EOFError) as e:
        raise UserError(f"cannot read {path}: {e}") from None


def _read_json(f: io.TextIOBase, path: Path, kind: str) -> list[dict]:
    if kind == ".jsonl":
        rows = []
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise UserError(f"{path} line {n}: not valid JSON ({e.msg})") from None
    else:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        if isinstance(data, dict) and all(isinstance(v, list) for v in data.values()):
            lists = list(data.values())
            if len(lists) == 1 and lists[0] and isinstance(lists[0][0], dict):  # {"data": [{...}, ...]}
                rows = lists[0]
            else:  # columns: {"text": [...], "label": [...]}
                rows = [dict(zip(data, values)) for values in zip(*lists)]
        else:
            rows = data
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise UserError(f"{path}: expected one JSON object per row (a list of objects, or JSON lines)")
    return rows


def _read_delimited(
    f: io.TextIOBase, path: Path, delimiter: str, column_names: list[str] | None
) -> tuple[list[dict], list[str]]:
    if delimiter == ",":
        lines: Iterable[list[str]] = csv.reader(f)  # real CSV: quoted fields may hold commas and newlines
        split = None
    else:
        lines = (line.rstrip("\r\n") for line in f)
        split = delimiter
    rows: list[dict] = []
    columns = list(column_names) if column_names else None
    for n, line in enumerate(lines, 1):
        if split is not None:
            if not line.strip():
                continue
            fields = line.split(split, len(columns) - 1 if columns else -1)
        else:
            if not line or not any(x.strip() for x in line):
                continue
            fields = line
        if columns is None:
            columns = [c.strip() for c in fields]
            continue
        if len(fields) < len(columns):
            raise UserError(
                f"{path} line {n}: {len(fields)} field(s), expected {len(columns)} ({', '.join(columns)}); "
                f"check delimiter / column_names"
            )
        rows.append(dict(zip(columns, (x.strip() for x in fields))))
    return rows, columns or []


# --- checks -------------------------------------------------------------------------------------------


def _check_columns(where: str, wanted: Sequence[str], found: Sequence[str]) -> None:
    for c in wanted:
        if c not in found:
            raise UserError(f"{where} has no column '{c}'; columns found: {', '.join(found) or '(none)'}")


def _check_labels_present(ds: datasets.Dataset, label_column: str, where: str) -> datasets.Dataset:
    if len(ds) == 0:
        raise UserError(f"{where} has no rows")
    empty = sum(1 for v in ds[label_column] if v is None or v == "")
    if empty:
        raise UserError(
            f"{where}: {empty} of {len(ds)} row(s) have an empty label in column '{label_column}'"
        )
    return ds


def _as_text(value: Any, is_label: bool = False) -> str | None:
    """A cell as a string; a missing text becomes "", a missing label None (reported later)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None if is_label else ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True
