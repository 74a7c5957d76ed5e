"""Labelled classification data: load it with its text and label columns, label maps, stratified subsets.

Reading the data (local files, saved datasets, `hf:NAME[:CONFIG]@SPLIT`, `builtin:pydocs@SPLIT`, their
formats and errors) is `data_prep.read`; this module makes the columns strings and checks the labels.
The returned dataset keeps only the text column(s) and the label column, under their original names; texts
are strings, and so are labels, except for multi-label classification (a list of strings per row: a JSON list,
or labels separated by commas in a text cell) and regression (a number per row). `build_label_map` fixes the
label order; `check_labels` rejects dev/test labels that training never saw. A split whose texts are all empty is refused, one with more than half of them
empty warned about; `missing_labels` names the classes a training subset has no example of.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import datasets
import numpy as np

from data_prep.errors import UserError
from data_prep.read import ReadOptions, read_columns
from data_prep.text import has_visible_text
from mlm.metrics.problems import MULTI_LABEL, REGRESSION, SINGLE_LABEL


class LabelledFileFields(Protocol):
    """How a config says to read a labelled file: `FinetuneConfig` and a suite's `FileOptions` both do."""

    text_column: str
    text_pair_column: str | None
    label_column: str
    column_names: list[str] | None
    delimiter: str | None
    encoding: str
    encoding_errors: str
    on_bad_lines: str


READ_FIELDS = tuple(LabelledFileFields.__annotations__)


def load_labelled_with(
    spec: str, fields: LabelledFileFields, problem_type: str = SINGLE_LABEL
) -> datasets.Dataset:
    """`load_labelled` with the columns and read options that `fields` (a config) holds."""
    return load_labelled(spec, **{n: getattr(fields, n) for n in READ_FIELDS}, problem_type=problem_type)


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
    encoding_errors: str = "strict",
    on_bad_lines: str = "error",
    problem_type: str = SINGLE_LABEL,
) -> datasets.Dataset:
    """Load a labelled dataset with columns `text_column` [, `text_pair_column`], `label_column` (str; for
    `problem_type` multi_label_classification a list of str, for regression a float).

    Specs and formats are those of `data_prep.read.read_columns`. `column_names` names the columns of a
    header-less CSV/TSV/delimited file (e.g. CoLA: source, label, orig, sentence); a file whose suffix is not
    a known format needs `delimiter`. `split` picks a split of a Hub dataset, the built-in task or a saved
    DatasetDict when the spec has no ``@SPLIT``. `on_bad_lines`: "error" or "skip" malformed CSV/TSV rows.
    """
    spec = str(spec_or_path).strip()
    if not spec:
        raise UserError("empty data spec: give a file path, hf:NAME@SPLIT or builtin:pydocs@SPLIT")
    wanted = list(dict.fromkeys(c for c in (text_column, text_pair_column, label_column) if c))
    opts = ReadOptions(
        encoding=encoding,
        encoding_errors=encoding_errors,
        on_bad_lines=on_bad_lines,
        delimiter=delimiter,
        column_names=tuple(column_names) if column_names else None,
    )
    columns, where = read_columns(spec, wanted, opts, split=split)
    data = {c: [_as_text(v) for v in columns[c]] for c in wanted if c != label_column}
    data[label_column] = _labels(columns[label_column], problem_type, where)
    ds = _check_labels_present(_from_columns(data, wanted, label_column, problem_type), label_column, where)
    for column in (text_column, text_pair_column):
        if column:
            _check_texts_present(data[column], column, where)
    return ds


def _from_columns(
    data: dict[str, list], wanted: Sequence[str], label_column: str, problem_type: str
) -> datasets.Dataset:
    label = {
        SINGLE_LABEL: datasets.Value("string"),
        MULTI_LABEL: datasets.Sequence(datasets.Value("string")),
        REGRESSION: datasets.Value("float64"),
    }[problem_type]
    features = datasets.Features(
        {c: label if c == label_column else datasets.Value("string") for c in wanted}
    )
    return datasets.Dataset.from_dict({c: data[c] for c in wanted}, features=features)


def _labels(values: Sequence[Any], problem_type: str, where: str) -> list:
    """The label cells as `problem_type` wants them; a missing label is None (reported later)."""
    if problem_type == MULTI_LABEL:
        return [_label_list(v, where) for v in values]
    if problem_type == REGRESSION:
        return [_number(v, i, where) for i, v in enumerate(values)]
    return [_as_text(v, is_label=True) for v in values]


def _label_list(value: Any, where: str) -> list[str] | None:
    """A multi-label cell: a list, a JSON list in a string, or labels separated by commas."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UserError(f"{where}: label cell {value!r} is not a valid JSON list") from None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, (list, tuple, np.ndarray)):
        value = [value]
    return list(dict.fromkeys(t for t in (_as_text(v) for v in value) if t))


def _number(value: Any, row: int, where: str) -> float | None:
    """A regression label: a number, or a string that reads as one."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserError(
            f"{where}: label {value!r} of row {row + 1} is not a number (problem_type regression)"
        ) from None
    if not math.isfinite(number):
        return None
    return number


def build_label_map(labels: Iterable[Any]) -> list[str]:
    """Sorted distinct labels (as strings): numerically when all look like integers, else alphabetically.
    Lists of labels (multi-label rows) are flattened."""
    distinct = {str(v) for v in _flat(labels) if v is not None and str(v) != ""}
    if all(_is_int(v) for v in distinct):
        return sorted(distinct, key=lambda v: (int(v), v))
    return sorted(distinct)


def check_labels(ds: datasets.Dataset, label_column: str, label_map: Sequence[str], where: str) -> None:
    """Raise UserError if `ds` has a label outside `label_map` (labels the training data never had)."""
    known = set(label_map)
    unseen = sorted({str(v) for v in _flat(ds[label_column])} - known)
    if unseen:
        raise UserError(
            f"{where}: label {', '.join(map(repr, unseen[:5]))}{' ...' if len(unseen) > 5 else ''} "
            f"not seen in the training data; known labels: {', '.join(label_map)}"
        )


def missing_labels(ds: datasets.Dataset, label_column: str, label_map: Sequence[str]) -> list[str]:
    """The labels of `label_map` that no row of `ds` has (e.g. after subsetting the training data)."""
    present = {str(v) for v in ds[label_column]}
    return [name for name in label_map if name not in present]


def warn_missing_labels(
    ds: datasets.Dataset, label_column: str, label_map: Sequence[str], where: str
) -> None:
    """Warn on stderr when a training subset has no example of some classes.

    A warning, not an error: a subset smaller than the number of classes is a fair few-shot experiment (a
    point of a label-efficiency curve); the model keeps an output for every class and dev/test are scored
    on all of them, but the classes it never saw cannot be learned, and the user must know."""
    missing = missing_labels(ds, label_column, label_map)
    if missing:
        names = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
        print(
            f"warning: {where}: the {len(ds)} training example(s) kept (label_fraction, max_train_samples) "
            f"have no example of {len(missing)} of the {len(label_map)} classes ({names}); keep at least "
            f"{len(label_map)} to train on every class",
            file=sys.stderr,
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
    stratify: bool = True,
) -> datasets.Dataset:
    """A seeded subset keeping each label's share: `fraction` of the rows, then at most `max_samples`.

    Every label keeps at least one row while the budget allows. Rows keep their original order.
    `stratify=False` (multi-label rows, regression): a plain seeded random subset of the same size.
    """
    n = len(ds)
    target = n if fraction >= 1.0 else int(round(n * fraction))
    if max_samples is not None:
        target = min(target, max_samples)
    target = max(target, 1) if n else 0
    if target >= n:
        return ds
    rng = np.random.default_rng(seed)
    if not stratify:
        return ds.select(np.sort(rng.permutation(n)[:target]).tolist())
    labels = np.asarray([str(v) for v in ds[label_column]])
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


# --- checks -------------------------------------------------------------------------------------------


def _check_labels_present(ds: datasets.Dataset, label_column: str, where: str) -> datasets.Dataset:
    if len(ds) == 0:
        raise UserError(f"{where} has no rows")
    empty = sum(1 for v in ds[label_column] if v is None or v == "")
    if empty:
        raise UserError(
            f"{where}: {empty} of {len(ds)} row(s) have an empty label in column '{label_column}'"
        )
    return ds


def _flat(labels: Iterable[Any]) -> Iterable[Any]:
    for v in labels:
        if isinstance(v, (list, tuple)):
            yield from v
        else:
            yield v


def example_text(ds: datasets.Dataset, text_column: str, limit: int = 500) -> str | None:
    """The first text of `ds` with something visible in it, on one line, cut at a space to at most `limit`
    characters: what a model card shows as its widget example. None when there is none."""
    for batch in ds.select_columns([text_column]).iter(batch_size=256):
        for text in batch[text_column]:
            if isinstance(text, str) and has_visible_text(text):
                line = " ".join(text.split())
                return line if len(line) <= limit else line[:limit].rsplit(" ", 1)[0]
    return None


def _check_texts_present(texts: list[str], column: str, where: str) -> None:
    """All texts empty (or with nothing visible) is a UserError; more than half of them, a warning."""
    empty = sum(1 for t in texts if not has_visible_text(t))
    if empty == len(texts):
        raise UserError(
            f"{where}: all {len(texts)} texts in column '{column}' are empty; is '{column}' the text column?"
        )
    if 2 * empty > len(texts):
        print(
            f"warning: {where}: {empty} of {len(texts)} texts in column '{column}' are empty",
            file=sys.stderr,
        )


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
