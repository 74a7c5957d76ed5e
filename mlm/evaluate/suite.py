"""Suite files: their YAML schema (dataclasses filled by `mlm.config.config_from_dict`) and `load_suite`.

A suite's keys, a task's keys and a data file's keys are dataclass fields, so unknown keys, wrong types and
missing required keys end with the same one-line `UserError` as a recipe's. suites/README.md describes them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from mlm.config import closest, config_from_dict, load_yaml
from mlm.evaluate.config import parse_fractions

SPLITS = ("dev", "test")  # dev is fine-tuning's validation split (evaluated every epoch), test is scored once
LABEL_TRANSFORMS = ("none", "before_colon", "after_colon", "lower")
MAX_EPOCHS = 50.0  # a guard against a typo (300 for 3), not a recommendation
# the fine-tuning settings that each run sets itself (a suite's `finetune:` section may set any other)
PER_RUN_KEYS = ("model_name_or_path", "output_dir", "train_file", "validation_file", "test_file", "text_column",
                "text_pair_column", "label_column", "metrics", "max_train_samples", "label_fraction", "seed",
                "from_scratch", "save_model")  # fmt: skip


@dataclass
class FileOptions:
    """How to read one data file (`train:`, `dev:`, `test:`); set on a task, a key applies to its files."""

    path: str
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    column_names: list[str] | None = None
    delimiter: str | None = None
    encoding: str = "utf-8"
    encoding_errors: str = "strict"
    on_bad_lines: str = "error"
    label_transform: str = "none"
    strip_html: bool = False

    def check(self, where: str) -> None:
        """Raise UserError on an empty path or an unknown label transform."""
        if not self.path.strip():
            raise UserError(f"{where}: 'path' is required")
        if self.label_transform not in LABEL_TRANSFORMS:
            raise UserError(
                f"{where}: unknown label_transform {self.label_transform!r}; "
                f"valid: {', '.join(LABEL_TRANSFORMS)}"
            )


@dataclass
class TaskSpec:
    """A task as a suite writes it: data files, metrics and limits; any FileOptions key besides these
    applies to all of its files."""

    train: object | None = None  # a path, or a mapping of FileOptions
    dev: object | None = None
    test: object | None = None
    problem_type: str = "single_label_classification"
    metrics: list[str] | None = None  # default: the problem type's (accuracy for single labels)
    max_seq_length: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    description: str | None = None

    def check(self, where: str) -> None:
        """Raise UserError on missing data, an unknown problem type or metric, or a limit below 1."""
        from mlm import metrics

        if not self.train:
            raise UserError(f"{where}: 'train' (the training data) is required")
        if not self.dev and not self.test:
            raise UserError(f"{where}: give 'dev' and/or 'test' data to score on")
        if self.problem_type not in metrics.PROBLEM_TYPES:
            raise UserError(f"{where}: unknown problem_type {self.problem_type!r}; valid: "
                            f"{', '.join(metrics.PROBLEM_TYPES)}")  # fmt: skip
        metrics.check_metric_names(self.task_metrics, f"{where}: metrics", self.problem_type)
        _check_positive(self, ("max_seq_length", "max_train_samples", "max_eval_samples"), where)

    @property
    def task_metrics(self) -> list[str]:
        """`metrics`, else the single-label default (accuracy) or the problem type's own defaults."""
        from mlm import metrics

        if self.metrics is not None:
            return list(self.metrics)
        single = self.problem_type == "single_label_classification"
        return ["accuracy"] if single else list(metrics.DEFAULT_METRICS[self.problem_type])


@dataclass
class SuiteSpec:
    """A suite file's top-level keys."""

    tasks: dict
    name: str | None = None
    description: str | None = None
    seeds: int = 3
    label_fractions: list[str] = field(default_factory=lambda: ["1.0"])
    finetune: dict | None = None  # FINETUNE_KEYS of FinetuneConfig

    def check(self, where: str) -> None:
        """Raise UserError on no tasks or fewer than one seed."""
        if not self.tasks:
            raise UserError(
                f"{where}: 'tasks' must map task names to their definitions (train:, dev:, test:...)"
            )
        _check_positive(self, ("seeds",), where)


def _check_positive(spec: Any, names: Iterable[str], where: str) -> None:
    for name in names:
        value = getattr(spec, name)
        if value is not None and value < 1:
            raise UserError(f"{where}: {name} must be a positive integer, got {value!r}")


@dataclass
class Task:
    """A task ready to run: data files (paths resolved), metrics (the first is the headline), limits."""

    name: str
    files: dict[str, FileOptions]  # split (train, dev, test) -> how to read it
    metrics: list[str]
    problem_type: str = "single_label_classification"
    max_seq_length: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    @property
    def metric(self) -> str:
        return self.metrics[0]

    @property
    def pair(self) -> bool:
        """A sentence-pair task (its files have a text_pair_column)."""
        return bool(self.files["train"].text_pair_column)

    @property
    def single_label(self) -> bool:
        """One class per text (the only kind the TF-IDF baseline and label stratification know)."""
        return self.problem_type == "single_label_classification"


@dataclass
class Suite:
    """A suite ready to run."""

    name: str
    path: Path
    seeds: int
    label_fractions: list[float]
    finetune: dict[
        str, Any
    ]  # the fine-tuning settings the suite sets (FinetuneConfig's defaults for the rest)
    tasks: list[Task]


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; raise UserError on anything wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    spec = config_from_dict(SuiteSpec, load_yaml(path), str(path))
    spec.check(str(path))
    return Suite(
        name=str(spec.name or path.stem),
        path=path,
        seeds=spec.seeds,
        label_fractions=parse_fractions(spec.label_fractions, f"{path}: label_fractions"),
        finetune=_finetune_settings(spec.finetune, f"{path}: finetune"),
        tasks=[_task(str(name), t, path) for name, t in spec.tasks.items()],
    )


def _finetune_settings(data: dict | None, where: str) -> dict[str, Any]:
    """The suite's `finetune:` keys, typed as FinetuneConfig types them."""
    from mlm.finetune import FinetuneConfig

    data = dict(data or {})
    per_run = sorted(set(data) & set(PER_RUN_KEYS))
    if per_run:
        raise UserError(f"{where}: {', '.join(per_run)} is set by each run (from the task and the models)")
    cfg = config_from_dict(FinetuneConfig, data, where)
    settings = {k: getattr(cfg, k) for k in data}
    epochs = settings.get("num_train_epochs")
    if epochs is not None and not 0 < epochs <= MAX_EPOCHS:
        raise UserError(f"{where}: num_train_epochs must be in (0, {MAX_EPOCHS:g}], got {epochs:g}")
    return settings


def _task(name: str, data: Any, suite_path: Path) -> Task:
    where = f"{suite_path}: task '{name}'"
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with train:, dev: and/or test:")
    task_keys = {f.name for f in dataclasses.fields(TaskSpec)}
    shared = {k: v for k, v in data.items() if k not in task_keys}
    file_keys = {f.name for f in dataclasses.fields(FileOptions)} - {"path"}
    unknown = sorted(set(shared) - file_keys)
    if unknown:
        hints = "; ".join(f"'{k}'{closest(k, [*task_keys, *file_keys])}" for k in unknown)
        raise UserError(f"{where}: unknown key(s) {hints}")
    spec = config_from_dict(TaskSpec, {k: v for k, v in data.items() if k in task_keys}, where)
    spec.check(where)
    files = {
        split: _file_options(getattr(spec, split), shared, suite_path, f"{where}: {split}")
        for split in ("train", *SPLITS)
        if getattr(spec, split)
    }
    if len({bool(f.text_pair_column) for f in files.values()}) > 1:
        raise UserError(f"{where}: text_pair_column must be set for all of its files or for none")
    return Task(
        name=name,
        files=files,
        metrics=spec.task_metrics,
        problem_type=spec.problem_type,
        max_seq_length=spec.max_seq_length,
        max_train_samples=spec.max_train_samples,
        max_eval_samples=spec.max_eval_samples,
    )


def _file_options(entry: Any, shared: dict[str, Any], suite_path: Path, where: str) -> FileOptions:
    """One `train:` / `dev:` / `test:` entry (a path or a mapping) over the task's shared file options."""
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a path or a mapping with 'path', got {type(entry).__name__}")
    opts = config_from_dict(FileOptions, {**shared, **entry}, where)
    opts.check(where)
    opts.path = resolve_path(opts.path, suite_path, where)
    return opts


def resolve_path(value: str, suite_path: Path, where: str) -> str:
    """A data path: absolute, or relative to the current folder, the suite's folder or the folder above it;
    a Hub dataset (`hf:NAME...`) or built-in task (`builtin:NAME...`) as it is."""
    if str(value).startswith(("hf:", "builtin:")):
        return str(value)
    p = Path(os.path.expanduser(str(value)))
    candidates = (
        [p] if p.is_absolute() else [Path.cwd() / p, suite_path.parent / p, suite_path.parent.parent / p]
    )
    for c in candidates:
        if c.exists():
            return str(c.resolve())
    raise UserError(
        f"{where}: data file not found: {value} (looked in {', '.join(str(c) for c in candidates)})"
    )
