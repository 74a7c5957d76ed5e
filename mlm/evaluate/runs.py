"""One run: fine-tune a model (or fit TF-IDF) on a task's data with one seed; reuse it when unchanged.

A run's folder holds `metrics.json` and `evaluate_run.json`, the fingerprint of everything the result depends
on (config, data, model weights); `mlm evaluate` run again reuses the metrics while it matches.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from data_prep import cache
from data_prep.io import read_json, write_json
from data_prep.steps import config_values, file_fingerprint
from mlm.config import config_from_dict
from mlm.evaluate.data import LABEL, TEXT, TEXT_PAIR, TaskData
from mlm.evaluate.plan import Outcome, Plan, Run
from mlm.evaluate.progress import quiet
from mlm.evaluate.suite import Task

if TYPE_CHECKING:
    from mlm.finetune import FinetuneConfig

RUN_RECORD = "evaluate_run.json"
METRICS_FILE = "metrics.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")


def execute(plan: Plan, run: Run, data: TaskData) -> Outcome:
    """Do `run` (or reuse its earlier result); library output is silenced unless the config is verbose."""
    started = time.perf_counter()
    ft = None if run.group.method == "tfidf" else finetune_config(plan, run, data)
    key = _tfidf_key(run, data) if ft is None else _finetune_key(ft, data)
    if not plan.cfg.force:
        reused = _reuse(run.folder, key)
        if reused is not None:
            return Outcome(reused, True, time.perf_counter() - started)
    with quiet(plan.cfg.verbose):
        result = _tfidf(run, data) if ft is None else _finetune(ft)
    cache.store(run.folder / RUN_RECORD, key)
    return Outcome(result, False, time.perf_counter() - started)


def _reuse(folder: Path, key: str) -> dict | None:
    if cache.lookup(folder / RUN_RECORD, key) is None or not (folder / METRICS_FILE).is_file():
        return None
    return read_json(folder / METRICS_FILE)


def suite_settings(plan: Plan, task: Task) -> dict[str, Any]:
    """The fine-tuning settings the suite (and the task) set; FinetuneConfig's defaults fill in the rest."""
    settings = dict(plan.suite.finetune)
    if task.max_seq_length:
        settings["max_seq_length"] = task.max_seq_length
    if "dev" not in task.files:  # nothing to pick the best epoch on
        settings.pop("metric_for_best_model", None)
    return settings


def finetune_settings(plan: Plan, task: Task) -> dict[str, Any]:
    """Every setting of FinetuneConfig as `task`'s runs use it: the suite's, else FinetuneConfig's default."""
    from mlm.finetune import FinetuneConfig

    return config_values(config_from_dict(FinetuneConfig, suite_settings(plan, task), "finetune"))


def finetune_config(plan: Plan, run: Run, data: TaskData) -> FinetuneConfig:
    """The FinetuneConfig of one run: the suite's settings, the task's data, the run's model and seed."""
    from mlm.finetune import FinetuneConfig

    group, task = run.group, run.group.task
    splits = {"train_file": f"{data.folder}@train"}
    if "dev" in task.files:
        splits["validation_file"] = f"{data.folder}@validation"
    if "test" in task.files:
        splits["test_file"] = f"{data.folder}@test"
    own = {
        "model_name_or_path": group.model.path,
        "output_dir": str(run.folder),
        "text_column": TEXT,
        "text_pair_column": TEXT_PAIR if task.pair else None,
        "label_column": LABEL,
        "metrics": list(task.metrics),
        "problem_type": task.problem_type,
        "max_train_samples": task.max_train_samples,
        "label_fraction": group.fraction,
        "seed": run.seed,
        "from_scratch": group.method == "scratch",
        "save_model": plan.cfg.save_models and group.method == "pretrained" and not group.intermediate,
        "use_cpu": plan.cfg.use_cpu,
        "disable_tqdm": plan.cfg.disable_tqdm,
    }
    where = f"{plan.suite.path}: task '{task.name}'"
    return config_from_dict(FinetuneConfig, {**suite_settings(plan, task), **splits, **own}, where)


def _finetune_key(ft: FinetuneConfig, data: TaskData) -> str:
    config = config_values(ft)
    for name in ("output_dir", "disable_tqdm"):  # where it goes and how it shows change no result
        config.pop(name)
    return cache.fingerprint(
        {"config": config, "data": data.fingerprint, "model": _model_stamp(ft.model_name_or_path)}
    )


def _model_stamp(model: str) -> Any:
    """The model's weights file (path, size, time), so that a retrained model is not taken for the old one."""
    folder = Path(model)
    for name in WEIGHTS:
        if (folder / name).is_file():
            return file_fingerprint(folder / name)
    return str(folder.resolve()) if folder.exists() else model  # a Hub id: by its name


def _finetune(ft: FinetuneConfig) -> dict[str, Any]:
    from mlm.finetune import finetune

    return finetune(ft)


def _tfidf_key(run: Run, data: TaskData) -> str:
    task = run.group.task
    return cache.fingerprint(
        {
            "method": "tfidf",
            "fraction": run.group.fraction,
            "seed": run.seed,
            "max": task.max_train_samples,
            "metrics": task.metrics,
            "data": data.fingerprint,
        }
    )


def _tfidf(run: Run, data: TaskData) -> dict[str, Any]:
    """TF-IDF + logistic regression on the run's share of the training labels; writes metrics.json."""
    import datasets

    from mlm import labelled_data
    from mlm.baselines import tfidf_baseline

    task, fraction, seed = run.group.task, run.group.fraction, run.seed
    dd = datasets.load_from_disk(str(data.folder))
    train = labelled_data.stratified_subset(
        dd["train"], LABEL, fraction=fraction, max_samples=task.max_train_samples, seed=seed
    )
    result: dict[str, Any] = {"train_samples": len(train), "label_fraction": fraction, "seed": seed}
    for split in ("validation", "test"):
        if split in dd:
            result[split] = tfidf_baseline(
                train, dd[split], TEXT, LABEL,
                text_pair_column=TEXT_PAIR if task.pair else None, seed=seed, metric_names=task.metrics,
            )  # fmt: skip
    run.folder.mkdir(parents=True, exist_ok=True)
    write_json(run.folder / METRICS_FILE, result)
    return result
