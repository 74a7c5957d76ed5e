"""Each task's data as its runs read it: one DatasetDict (text [, text_pair], label), saved once per task.

Labels are transformed as the suite says and dev/test subsets drawn here, so every method and seed sees the
same rows; the folder is reused while the files and options are unchanged (`data_prep.cache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep import cache
from data_prep.errors import UserError
from data_prep.outputs import output_folder
from data_prep.steps import file_fingerprint
from mlm.evaluate.suite import SPLITS, FileOptions, Task

DATA_RECORD = "evaluate_data.json"  # in the task's data folder: fingerprint, rows per split, label names
TEXT, TEXT_PAIR, LABEL = "text", "text_pair", "label"  # the columns of the saved data


@dataclass
class TaskData:
    """A task's saved data: its folder (splits train, validation, test), fingerprint and rows per split."""

    folder: Path
    fingerprint: str
    rows: dict[str, int]


def prepare_task_data(task: Task, folder: Path) -> TaskData:
    """Write the task's splits as a DatasetDict in `folder`, or reuse it while the files are unchanged."""
    import datasets

    key = cache.fingerprint(
        {"files": {s: _file_key(o) for s, o in task.files.items()}, "max_eval": task.max_eval_samples}
    )
    done = cache.lookup(folder / DATA_RECORD, key)
    if done is not None:
        return TaskData(folder, key, done["rows"])
    splits, label_map = _read_splits(task)
    rows = {s: len(d) for s, d in splits.items()}
    dd = datasets.DatasetDict({("validation" if s == "dev" else s): d for s, d in splits.items()})
    paths = {"data": [o.path for o in task.files.values()]}
    with output_folder(
        folder, "evaluate", paths, own=lambda p: (p / DATA_RECORD).is_file(), main=True
    ) as tmp:
        dd.save_to_disk(str(tmp))
        cache.store(tmp / DATA_RECORD, key, rows=rows, labels=label_map)
    return TaskData(folder, key, rows)


def _file_key(opts: FileOptions) -> dict[str, Any]:
    named = opts.path.startswith(("hf:", "builtin:"))  # a Hub dataset or built-in task: known by its name
    return {**dataclasses.asdict(opts), "file": {"spec": opts.path} if named else file_fingerprint(opts.path)}


def _read_splits(task: Task) -> tuple[dict[str, Any], list[str]]:
    """(split -> Dataset, label names): labels checked against train's, dev/test subsets drawn."""
    from mlm import labelled_data

    splits = {split: _load_split(opts, task.problem_type) for split, opts in task.files.items()}
    if task.problem_type == "regression":
        return _eval_subsets(task, splits), []
    label_map = labelled_data.build_label_map(splits["train"][LABEL])
    if len(label_map) < 2:
        raise UserError(
            f"task '{task.name}': the training data has {len(label_map)} label(s); need at least 2"
        )
    for split in SPLITS:
        if split in splits:
            labelled_data.check_labels(splits[split], LABEL, label_map, f"task '{task.name}' {split} data")
    return _eval_subsets(task, splits), label_map


def _eval_subsets(task: Task, splits: dict[str, Any]) -> dict[str, Any]:
    """dev/test cut to `max_eval_samples` rows (stratified by label for single-label tasks, seed 0)."""
    from mlm import labelled_data

    for split in SPLITS:
        if split in splits and task.max_eval_samples and len(splits[split]) > task.max_eval_samples:
            splits[split] = labelled_data.stratified_subset(
                splits[split], LABEL, max_samples=task.max_eval_samples, seed=0, stratify=task.single_label
            )
    return splits


def _load_split(opts: FileOptions, problem_type: str):
    """One file as a Dataset with string columns text [, text_pair] and the label column `problem_type`
    wants (a string, a list of strings, or a number)."""
    import datasets

    from mlm import labelled_data

    ds = labelled_data.load_labelled_with(opts.path, opts, problem_type)
    clean = _html_cleaner() if opts.strip_html else (lambda t: t)
    data = {TEXT: [clean(t) for t in ds[opts.text_column]]}
    if opts.text_pair_column:
        data[TEXT_PAIR] = [clean(t) for t in ds[opts.text_pair_column]]
    features = datasets.Features({k: datasets.Value("string") for k in data})
    if problem_type == "single_label_classification":
        data[LABEL] = [transform_label(str(v), opts.label_transform) for v in ds[opts.label_column]]
    else:
        data[LABEL] = ds[opts.label_column]
    features[LABEL] = datasets.Value("string") if problem_type == "single_label_classification" else (
        ds.features[opts.label_column])  # fmt: skip
    return datasets.Dataset.from_dict(data, features=features)


def _html_cleaner() -> Callable[[str | None], str]:
    from data_prep.prepare import clean_text

    return lambda text: clean_text(text or "", strip_html=True)


def transform_label(value: str, how: str) -> str:
    """A label as the suite's `label_transform` says (`NUM:dist` -> `NUM` with before_colon)."""
    if how == "before_colon":
        return value.split(":", 1)[0]
    if how == "after_colon":
        return value.split(":", 1)[-1]
    if how == "lower":
        return value.lower()
    return value
