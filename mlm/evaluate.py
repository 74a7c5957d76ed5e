"""`mlm evaluate MODEL --suite SUITE.yaml`: what pretraining buys, on a suite of classification tasks.

For every task of the suite, the checkpoint is fine-tuned with N seeds (median and spread reported), the same
architecture is trained from scratch with the same seeds, and TF-IDF + logistic regression is fitted on the
same labels. `label_fractions` repeats this on a stratified, seeded share of the training labels (the
label-efficiency curve). When MODEL is a pretraining output folder holding `checkpoint-N` folders (or a
comma-separated list of checkpoints), every checkpoint is also fine-tuned (pretrained method only) and
downstream accuracy is plotted against the pretraining tokens each one had seen.

Suite files (YAML) define the tasks; see suites/README.md. Outputs in `output_dir`: results.json, results.md,
results.png (bar chart), label_efficiency.png (with several label fractions), pretraining_curve.png (with
several checkpoints), mlm_step.json, and runs/ (one folder per fine-tuning run: its metrics are reused when
`mlm evaluate` runs again with the same settings, so an interrupted evaluation resumes where it stopped) and
data/ (each task's data as read, with labels transformed and test subsets drawn).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from data_prep.io import read_json, write_json

STEP = "evaluate"
METHODS = ("pretrained", "scratch", "tfidf")
SPLITS = ("dev", "test")  # dev is fine-tuning's validation split (evaluated every epoch), test is scored once
FILE_KEYS = (
    "path",
    "text_column",
    "text_pair_column",
    "label_column",
    "column_names",
    "delimiter",
    "encoding",
    "label_transform",
    "strip_html",
)
TASK_KEYS = (
    *FILE_KEYS[1:],
    "train",
    "dev",
    "test",
    "metrics",
    "max_seq_length",
    "max_train_samples",
    "max_eval_samples",
    "description",
)
SUITE_KEYS = ("name", "description", "seeds", "label_fractions", "finetune", "tasks")
LABEL_TRANSFORMS = ("none", "before_colon", "after_colon", "lower")
# fine-tuning settings a suite may fix (the rest are the step's defaults, or evaluate's own)
FINETUNE_KEYS = (
    "learning_rate",
    "num_train_epochs",
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "weight_decay",
    "warmup_ratio",
    "max_seq_length",
    "metric_for_best_model",
)
MAX_EPOCHS = 5.0


@dataclass
class EvaluateConfig:
    """Settings of `mlm evaluate`."""

    model: str = field(
        default="",
        metadata={
            "help": "checkpoint folder; or a pretraining output folder (its final/ model, plus every "
            "checkpoint-N for the pretraining curve); or a comma-separated list of checkpoints"
        },
    )
    suite: str = field(default="", metadata={"help": "suite YAML file listing the tasks; required"})
    output_dir: str | None = field(
        default=None, metadata={"help": "folder for results (default: runs/evaluate/SUITE_NAME)"}
    )
    seeds: int | None = field(
        default=None, metadata={"help": "fine-tuning seeds per task and method (default: the suite's, or 3)"}
    )
    seeds_at_full: int | None = field(
        default=None,
        metadata={"help": "seeds for label fraction 1.0, the costliest runs (default: same as seeds)"},
    )
    label_fractions: list[str] = field(
        default_factory=list,
        metadata={"help": "shares of the training labels, e.g. 0.01,0.1,1.0 (default: the suite's, or 1.0)"},
    )
    tasks: list[str] = field(
        default_factory=list, metadata={"help": "evaluate only these tasks of the suite (default: all)"}
    )
    no_scratch: bool = field(default=False, metadata={"help": "skip the from-scratch baseline"})
    no_tfidf: bool = field(default=False, metadata={"help": "skip the TF-IDF + logistic regression baseline"})
    curve_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "tasks scored for every intermediate checkpoint (default: all evaluated tasks)"},
    )
    curve_label_fractions: list[str] = field(
        default_factory=list,
        metadata={"help": "label fractions scored for intermediate checkpoints (default: the smallest)"},
    )
    max_checkpoints: int | None = field(
        default=None,
        metadata={
            "help": "at most this many intermediate checkpoints, evenly spaced (0: none; default: all)"
        },
    )
    force: bool = field(default=False, metadata={"help": "rerun fine-tuning runs that have results already"})
    use_cpu: bool = field(default=False, metadata={"help": "train on the CPU even when a GPU is available"})
    disable_tqdm: bool = field(default=True, metadata={"help": "hide the progress bars of each run"})

    def validate(self) -> None:
        if not str(self.model).strip():
            raise UserError("evaluate: MODEL (a checkpoint or pretraining output folder) is required")
        if not str(self.suite).strip():
            raise UserError("evaluate: --suite SUITE.yaml is required")
        for name in ("seeds", "seeds_at_full"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"evaluate: '{name}' must be >= 1, got {value}")
        if self.max_checkpoints is not None and self.max_checkpoints < 0:
            raise UserError(f"evaluate: 'max_checkpoints' must be >= 0, got {self.max_checkpoints}")
        parse_fractions(self.label_fractions, "label_fractions")
        parse_fractions(self.curve_label_fractions, "curve_label_fractions")


def _names(values: list[str]) -> list[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c'] (the CLI takes both `--tasks a b` and `--tasks a,b`)."""
    return [n.strip() for v in values or [] for n in str(v).split(",") if n.strip()]


def parse_fractions(values: list[str] | list[float], what: str) -> list[float]:
    """'0.01,0.1' / ['0.01', '1.0'] -> sorted distinct floats in (0, 1]."""
    out: list[float] = []
    for v in values or []:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                x = float(part)
            except ValueError:
                raise UserError(f"evaluate: {what}: {part.strip()!r} is not a number") from None
            if not 0 < x <= 1:
                raise UserError(f"evaluate: {what} must be in (0, 1], got {x}")
            out.append(x)
    return sorted(set(out))


# --- suites -------------------------------------------------------------------------------------------


@dataclass
class Task:
    name: str
    files: dict[str, dict[str, Any]]  # split -> file options (path resolved)
    metrics: list[str]
    pair: bool
    max_seq_length: int | None = None
    max_train_samples: int | None = None
    max_eval_samples: int | None = None

    @property
    def metric(self) -> str:
        return self.metrics[0]


@dataclass
class Suite:
    name: str
    path: Path
    seeds: int
    label_fractions: list[float]
    finetune: dict[str, Any]
    tasks: list[Task]


def _resolve_path(value: str, suite_path: Path, where: str) -> str:
    """A data path: absolute, or relative to the current folder, the suite's folder or the folder above it."""
    p = Path(os.path.expanduser(str(value)))
    if p.is_absolute():
        candidates = [p]
    else:
        candidates = [Path.cwd() / p, suite_path.parent / p, suite_path.parent.parent / p]
    for c in candidates:
        if c.exists():
            return str(c.resolve())
    raise UserError(
        f"{where}: data file not found: {value} (looked in {', '.join(str(c) for c in candidates)})"
    )


def _file_options(entry: Any, defaults: dict[str, Any], suite_path: Path, where: str) -> dict[str, Any]:
    if isinstance(entry, str):
        entry = {"path": entry}
    if not isinstance(entry, dict):
        raise UserError(f"{where}: expected a path or a mapping with 'path', got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(FILE_KEYS))
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(FILE_KEYS)}")
    opts = {k: defaults.get(k) for k in FILE_KEYS[1:]}
    opts.update(entry)
    if not opts.get("path"):
        raise UserError(f"{where}: 'path' is required")
    opts["path"] = _resolve_path(opts["path"], suite_path, where)
    opts["text_column"] = opts.get("text_column") or "text"
    opts["label_column"] = opts.get("label_column") or "label"
    opts["encoding"] = opts.get("encoding") or "utf-8"
    transform = opts.get("label_transform") or "none"
    if transform not in LABEL_TRANSFORMS:
        raise UserError(
            f"{where}: unknown label_transform {transform!r}; valid: {', '.join(LABEL_TRANSFORMS)}"
        )
    opts["label_transform"] = transform
    opts["strip_html"] = bool(opts.get("strip_html"))
    if opts.get("column_names") is not None:
        if isinstance(opts["column_names"], str):
            opts["column_names"] = [c.strip() for c in opts["column_names"].split(",")]
        opts["column_names"] = [str(c) for c in opts["column_names"]]
    return opts


def _positive_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{where} must be a positive integer, got {value!r}")
    return value


def load_suite(path: str | Path) -> Suite:
    """Read and check a suite file; raise UserError on anything wrong with it."""
    from mlm import metrics as metric_modules
    from mlm.config import load_yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"suite file not found: {path}")
    try:
        data = load_yaml(str(path))
    except UserError:
        raise
    except Exception as e:  # a YAML syntax error
        raise UserError(f"{path}: not a valid YAML file ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a suite is a mapping with keys {', '.join(SUITE_KEYS)}")
    unknown = sorted(set(data) - set(SUITE_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(SUITE_KEYS)}")
    seeds = _positive_int(data.get("seeds", 3), f"{path}: seeds") or 3
    fractions = parse_fractions(
        data["label_fractions"]
        if isinstance(data.get("label_fractions"), list)
        else [data.get("label_fractions") or 1.0],
        f"{path}: label_fractions",
    )
    ft = dict(data.get("finetune") or {})
    bad = sorted(set(ft) - set(FINETUNE_KEYS))
    if bad:
        raise UserError(
            f"{path}: finetune: unknown or per-task key(s) {', '.join(bad)}; valid keys: {', '.join(FINETUNE_KEYS)}"
        )
    epochs = float(ft.get("num_train_epochs", 3.0))
    if not 0 < epochs <= MAX_EPOCHS:
        raise UserError(f"{path}: finetune: num_train_epochs must be in (0, {MAX_EPOCHS:g}], got {epochs:g}")
    tasks_data = data.get("tasks")
    if not isinstance(tasks_data, dict) or not tasks_data:
        raise UserError(f"{path}: 'tasks' must map task names to their definitions (train:, dev:, test:...)")
    tasks = []
    for name, t in tasks_data.items():
        where = f"{path}: task '{name}'"
        if not isinstance(t, dict):
            raise UserError(f"{where}: expected a mapping with train:, dev: and/or test:")
        unknown = sorted(set(t) - set(TASK_KEYS))
        if unknown:
            raise UserError(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(TASK_KEYS)}"
            )
        if not t.get("train"):
            raise UserError(f"{where}: 'train' (the training data) is required")
        if not t.get("dev") and not t.get("test"):
            raise UserError(f"{where}: give 'dev' and/or 'test' data to score on")
        defaults = {k: t.get(k) for k in FILE_KEYS[1:]}
        files = {
            split: _file_options(t[split], defaults, path, f"{where}: {split}")
            for split in ("train", *SPLITS)
            if t.get(split)
        }
        metric_names = t.get("metrics") or ["accuracy"]
        if isinstance(metric_names, str):
            metric_names = [m.strip() for m in metric_names.split(",") if m.strip()]
        metric_modules.check_metric_names(metric_names, where=f"{where}: metrics")
        pairs = {bool(f.get("text_pair_column")) for f in files.values()}
        if len(pairs) > 1:
            raise UserError(f"{where}: text_pair_column must be set for all of its files or for none")
        tasks.append(
            Task(
                name=str(name),
                files=files,
                metrics=list(metric_names),
                pair=pairs.pop(),
                max_seq_length=_positive_int(t.get("max_seq_length"), f"{where}: max_seq_length"),
                max_train_samples=_positive_int(t.get("max_train_samples"), f"{where}: max_train_samples"),
                max_eval_samples=_positive_int(t.get("max_eval_samples"), f"{where}: max_eval_samples"),
            )
        )
    return Suite(
        name=str(data.get("name") or path.stem),
        path=path,
        seeds=seeds,
        label_fractions=fractions,
        finetune=ft,
        tasks=tasks,
    )


# --- data ---------------------------------------------------------------------------------------------


def _transform_label(value: str, how: str) -> str:
    if how == "before_colon":
        return value.split(":", 1)[0]
    if how == "after_colon":
        return value.split(":", 1)[-1]
    if how == "lower":
        return value.lower()
    return value


def _load_split(opts: dict[str, Any]):
    """One file as a Dataset with columns text [, text_pair], label (strings)."""
    import datasets

    from mlm import labelled_data

    ds = labelled_data.load_labelled(
        opts["path"],
        text_column=opts["text_column"],
        text_pair_column=opts.get("text_pair_column"),
        label_column=opts["label_column"],
        column_names=opts.get("column_names"),
        delimiter=opts.get("delimiter"),
        encoding=opts["encoding"],
    )
    clean = _html_cleaner() if opts.get("strip_html") else (lambda t: t)
    data = {"text": [clean(t) for t in ds[opts["text_column"]]]}
    if opts.get("text_pair_column"):
        data["text_pair"] = [clean(t) for t in ds[opts["text_pair_column"]]]
    data["label"] = [_transform_label(str(v), opts["label_transform"]) for v in ds[opts["label_column"]]]
    features = datasets.Features({k: datasets.Value("string") for k in data})
    return datasets.Dataset.from_dict(data, features=features)


def _html_cleaner():
    from data_prep.prepare import clean_text

    return lambda text: clean_text(text or "", strip_html=True)


def _file_key(opts: dict[str, Any]) -> dict[str, Any]:
    st = Path(opts["path"]).stat()
    return {**opts, "size": st.st_size, "mtime": int(st.st_mtime)}


def prepare_task_data(task: Task, folder: Path) -> tuple[Path, str, dict[str, int]]:
    """Write the task's splits as a DatasetDict in `folder` (reused while the files are unchanged).

    Returns (folder, a fingerprint of the data, rows per split)."""
    import datasets

    from mlm import labelled_data

    key = {"files": {s: _file_key(o) for s, o in task.files.items()}, "max_eval": task.max_eval_samples}
    fingerprint = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    meta_file = folder / "evaluate_data.json"
    if meta_file.is_file() and read_json(meta_file).get("fingerprint") == fingerprint:
        return folder, fingerprint, read_json(meta_file)["rows"]
    splits = {split: _load_split(opts) for split, opts in task.files.items()}
    label_map = labelled_data.build_label_map(splits["train"]["label"])
    if len(label_map) < 2:
        raise UserError(
            f"task '{task.name}': the training data has {len(label_map)} label(s); need at least 2"
        )
    for split in SPLITS:
        if split in splits:
            labelled_data.check_labels(splits[split], "label", label_map, f"task '{task.name}' {split} data")
            if task.max_eval_samples and len(splits[split]) > task.max_eval_samples:
                splits[split] = labelled_data.stratified_subset(
                    splits[split], "label", max_samples=task.max_eval_samples, seed=0
                )
    dd = datasets.DatasetDict({("validation" if s == "dev" else s): d for s, d in splits.items()})
    folder.parent.mkdir(parents=True, exist_ok=True)
    from data_prep.io import atomic_output_dir

    rows = {s: len(d) for s, d in splits.items()}
    with atomic_output_dir(folder) as tmp:
        dd.save_to_disk(str(tmp))
        write_json(
            tmp / "evaluate_data.json", {"fingerprint": fingerprint, "rows": rows, "labels": label_map}
        )
    return folder, fingerprint, rows


# --- checkpoints --------------------------------------------------------------------------------------


@dataclass
class Checkpoint:
    path: str
    name: str
    step: int | None
    tokens_seen: int | None


def _checkpoint_info(path: Path) -> Checkpoint:
    """Step and pretraining tokens seen, from run_info.json (or trainer_state.json)."""
    step = tokens = None
    if (path / "run_info.json").is_file():
        training = read_json(path / "run_info.json").get("training") or {}
        step, tokens = training.get("steps"), training.get("tokens_seen")
    if step is None and (path / "trainer_state.json").is_file():
        state = read_json(path / "trainer_state.json")
        step = state.get("global_step")
        batch = state.get("train_batch_size")
        seq = None
        if (path / "config.json").is_file():
            seq = read_json(path / "config.json").get("max_position_embeddings")
        tokens = step * batch * seq if step is not None and batch and seq else None
    if step is None:
        m = re.search(r"checkpoint-(\d+)$", path.name)
        step = int(m.group(1)) if m else None
    return Checkpoint(path=str(path), name=path.name, step=step, tokens_seen=tokens)


def _is_model(path: Path) -> bool:
    return (path / "config.json").is_file()


def _whole_checkpoint(path: Path) -> bool:
    """A checkpoint-N to score: whole by its completeness record when it has one (a run cut off while saving
    leaves a checkpoint without it, or with files of other sizes), else a model folder with weights."""
    from mlm.streaming import COMPLETE_FILE, read_complete

    if (path / COMPLETE_FILE).exists():
        return read_complete(path) is not None
    weights = any(path.glob("*.safetensors")) or (path / "pytorch_model.bin").is_file()
    return _is_model(path) and weights


def resolve_models(model: str) -> tuple[Checkpoint, list[Checkpoint]]:
    """(main checkpoint, intermediate checkpoints in step order) for MODEL."""
    parts = [p.strip() for p in str(model).split(",") if p.strip()]
    paths = [Path(os.path.expanduser(p)) for p in parts]
    for p in paths:
        if not p.exists():
            raise UserError(f"model not found: {p}")
    if len(paths) == 1 and not _is_model(paths[0]):
        run = paths[0]
        found = sorted(
            (c for c in run.glob("checkpoint-*") if c.is_dir() and _whole_checkpoint(c)),
            key=lambda c: _checkpoint_info(c).step or 0,
        )
        final = run / "final"
        if not _is_model(final) and not found:
            raise UserError(
                f"{run} is neither a model folder (no config.json) nor a pretraining output folder "
                "(no final/ or checkpoint-N/)"
            )
        paths = [*found, final] if _is_model(final) else found
    else:
        for p in paths:
            if not _is_model(p):
                raise UserError(f"model folder {p} has no config.json: it is not a saved model")
    infos = [_checkpoint_info(p) for p in paths]
    main = infos[-1]
    # a checkpoint of the same step as the final model is the same weights: score it once
    others = [c for c in infos[:-1] if c.step is None or c.step != main.step]
    if main.name == "final":
        main.name = "final"
    return main, others


def _pick_evenly(items: list, n: int | None) -> list:
    if n is None or len(items) <= n:
        return items
    if n == 0:
        return []
    if n == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]


# --- runs ---------------------------------------------------------------------------------------------


def _finetune_config(cfg: EvaluateConfig, suite: Suite, task: Task, data_dir: Path, model: str, **kw):
    from mlm.finetune import FinetuneConfig

    settings = {
        "learning_rate": 1e-4,
        "num_train_epochs": 3.0,
        "per_device_train_batch_size": 32,
        "max_seq_length": 128,
        **suite.finetune,
    }
    if task.max_seq_length:
        settings["max_seq_length"] = task.max_seq_length
    splits = {"train_file": f"{data_dir}@train"}
    if "dev" in task.files:
        splits["validation_file"] = f"{data_dir}@validation"
    if "test" in task.files:
        splits["test_file"] = f"{data_dir}@test"
    if settings.get("metric_for_best_model") and "dev" not in task.files:
        settings.pop("metric_for_best_model")
    return FinetuneConfig(
        model=model,
        text_column="text",
        text_pair_column="text_pair" if task.pair else None,
        label_column="label",
        metrics=list(task.metrics),
        max_train_samples=task.max_train_samples,
        save_model=False,
        use_cpu=cfg.use_cpu,
        disable_tqdm=cfg.disable_tqdm,
        **splits,
        **settings,
        **kw,
    )


def _run_key(obj: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cached(folder: Path, key: str) -> dict | None:
    f = folder / "evaluate_run.json"
    if f.is_file() and (folder / "metrics.json").is_file():
        meta = read_json(f)
        if meta.get("key") == key:
            return read_json(folder / "metrics.json")
    return None


def _finetune_run(ft_cfg, folder: Path, data_fp: str, force: bool, log) -> dict:
    from mlm.finetune import finetune

    fields = dataclasses.asdict(ft_cfg)
    fields.pop("output_dir")
    fields.pop("disable_tqdm")
    key = _run_key({"config": fields, "data": data_fp, "model": _model_stamp(ft_cfg.model)})
    if not force:
        hit = _cached(folder, key)
        if hit is not None:
            return hit
    ft_cfg.output_dir = str(folder)
    t = time.perf_counter()
    result = finetune(ft_cfg)
    write_json(folder / "evaluate_run.json", {"key": key})
    log(f"    {folder.relative_to(folder.parents[2])}: {_brief(result)} ({time.perf_counter() - t:.0f} s)")
    return result


def _model_stamp(model: str) -> Any:
    p = Path(model)
    weights = [w for w in ("model.safetensors", "pytorch_model.bin") if (p / w).is_file()]
    if not weights:
        return str(p.resolve())
    st = (p / weights[0]).stat()
    return [str(p.resolve()), st.st_size, int(st.st_mtime)]


def _brief(result: dict) -> str:
    parts = []
    for split, name in (("validation", "dev"), ("test", "test")):
        values = result.get(split) or {}
        scores = {k: v for k, v in values.items() if k not in ("loss", "samples", "runtime")}
        if scores:
            parts.append(name + " " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    return "; ".join(parts)


def _tfidf_run(
    data_dir: Path, task: Task, fraction: float, seed: int, folder: Path, data_fp: str, force: bool
):
    import datasets

    from mlm import labelled_data
    from mlm.baselines import tfidf_baseline

    key = _run_key(
        {
            "method": "tfidf",
            "fraction": fraction,
            "seed": seed,
            "max": task.max_train_samples,
            "data": data_fp,
        }
    )
    if not force:
        hit = _cached(folder, key)
        if hit is not None:
            return hit
    dd = datasets.load_from_disk(str(data_dir))
    train = labelled_data.stratified_subset(
        dd["train"], "label", fraction=fraction, max_samples=task.max_train_samples, seed=seed
    )
    result: dict[str, Any] = {"train_samples": len(train), "label_fraction": fraction, "seed": seed}
    for split in ("validation", "test"):
        if split in dd:
            result[split] = tfidf_baseline(
                train,
                dd[split],
                "text",
                "label",
                text_pair_column="text_pair" if task.pair else None,
                seed=seed,
                metric_names=task.metrics,
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "metrics.json", result)
    write_json(folder / "evaluate_run.json", {"key": key})
    return result


def _tfidf_is_deterministic(task: Task, fraction: float) -> bool:
    """All rows, no subset: every seed sees the same labels and lbfgs gives the same model."""
    return fraction >= 1.0 and task.max_train_samples is None


def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread (min, max, standard deviation) of one metric over seeds."""
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "std": float(statistics.pstdev(values)) if len(values) > 1 else 0.0,
        "values": [float(v) for v in values],
    }


def _rows_from_runs(
    task: Task,
    method: str,
    fraction: float,
    runs: list[dict],
    checkpoint: Checkpoint | None,
    intermediate: bool = False,
) -> list[dict]:
    rows = []
    for split, name in (("validation", "dev"), ("test", "test")):
        if not all(split in r for r in runs) or not runs:
            continue
        row = {
            "task": task.name,
            "split": name,
            "method": method,
            "label_fraction": fraction,
            "train_samples": int(statistics.median(r.get("train_samples", 0) for r in runs)),
            "metric": task.metric,
            "seeds": [r.get("seed") for r in runs],
            "metrics": {m: summarize([float(r[split][m]) for r in runs]) for m in task.metrics},
        }
        if checkpoint is not None:
            row.update(checkpoint=checkpoint.name, step=checkpoint.step, tokens_seen=checkpoint.tokens_seen)
        row["intermediate"] = intermediate
        rows.append(row)
    return rows


def evaluate(cfg: EvaluateConfig, log=print) -> dict[str, Any]:
    """Run the suite; write results.json / results.md / PNGs into output_dir; return the results."""
    cfg.validate()
    suite = load_suite(cfg.suite)
    main, others = resolve_models(cfg.model)
    fractions = parse_fractions(cfg.label_fractions, "label_fractions") or suite.label_fractions
    seeds = list(range(cfg.seeds or suite.seeds))
    seeds_full = list(range(cfg.seeds_at_full)) if cfg.seeds_at_full else seeds
    tasks = suite.tasks
    wanted, curve_wanted = _names(cfg.tasks), _names(cfg.curve_tasks)
    if wanted:
        names = [t.name for t in suite.tasks]
        unknown = [t for t in wanted if t not in names]
        if unknown:
            raise UserError(
                f"evaluate: unknown task(s) {', '.join(unknown)}; the suite has: {', '.join(names)}"
            )
        tasks = [t for t in suite.tasks if t.name in wanted]
    curve_tasks = curve_wanted or [t.name for t in tasks]
    unknown = [t for t in curve_tasks if t not in [x.name for x in tasks]]
    if unknown:
        raise UserError(f"evaluate: curve_tasks {', '.join(unknown)} are not among the evaluated tasks")
    curve_fractions = parse_fractions(cfg.curve_label_fractions, "curve_label_fractions") or fractions[:1]
    others = _pick_evenly(others, cfg.max_checkpoints)

    out = Path(cfg.output_dir or f"runs/evaluate/{suite.name}")
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows: list[dict] = []
    for task in tasks:
        log(f"[evaluate] task {task.name}")
        data_dir, data_fp, n_rows = prepare_task_data(task, out / "data" / task.name)
        log(f"    data: {', '.join(f'{s} {n:,}' for s, n in n_rows.items())}")
        for fraction in fractions:
            fseeds = seeds_full if fraction >= 1.0 else seeds
            tag = f"f{fraction:g}"
            methods = [
                m for m in METHODS if not (m == "scratch" and cfg.no_scratch or m == "tfidf" and cfg.no_tfidf)
            ]
            for method in methods:
                runs = []
                for seed in fseeds:
                    folder = out / "runs" / task.name / f"{method}-{tag}-seed{seed}"
                    if method == "tfidf":
                        if runs and _tfidf_is_deterministic(task, fraction):
                            break
                        runs.append(_tfidf_run(data_dir, task, fraction, seed, folder, data_fp, cfg.force))
                        continue
                    ft = _finetune_config(
                        cfg, suite, task, data_dir, main.path,
                        seed=seed, label_fraction=fraction, from_scratch=method == "scratch",
                    )  # fmt: skip
                    runs.append(_finetune_run(ft, folder, data_fp, cfg.force, log))
                rows += _rows_from_runs(
                    task, method, fraction, runs, main if method == "pretrained" else None
                )
        if task.name in curve_tasks:
            for ck in others:
                for fraction in curve_fractions:
                    fseeds = seeds_full if fraction >= 1.0 else seeds
                    runs = []
                    for seed in fseeds:
                        folder = out / "runs" / task.name / f"{ck.name}-f{fraction:g}-seed{seed}"
                        ft = _finetune_config(
                            cfg, suite, task, data_dir, ck.path, seed=seed, label_fraction=fraction
                        )
                        runs.append(_finetune_run(ft, folder, data_fp, cfg.force, log))
                    rows += _rows_from_runs(task, "pretrained", fraction, runs, ck, intermediate=True)

    results = {
        "model": main.path,
        "suite": str(suite.path),
        "suite_name": suite.name,
        "checkpoints": [dataclasses.asdict(c) for c in [*others, main]],
        "label_fractions": fractions,
        "seeds": seeds,
        "seeds_at_full": seeds_full,
        "finetune": {
            k: getattr(_finetune_config(cfg, suite, tasks[0], out, main.path), k) for k in FINETUNE_KEYS
        },
        "rows": rows,
        "runtime_s": round(time.perf_counter() - started, 1),
    }
    results["plots"] = write_plots(results, out)
    write_json(out / "results.json", results)
    text = results_markdown(results)
    (out / ".results.md.tmp").write_text(text + "\n")
    os.replace(out / ".results.md.tmp", out / "results.md")
    from data_prep.steps import write_step_metadata

    write_step_metadata(
        out, STEP, dataclasses.asdict(cfg), {"model": main.path, "suite": str(Path(cfg.suite).resolve())}
    )
    log("\n" + text)
    return results


# --- tables and plots ---------------------------------------------------------------------------------

METHOD_LABELS = {"pretrained": "pretrained", "scratch": "from scratch", "tfidf": "TF-IDF + LogReg"}
COLORS = {"pretrained": "tab:blue", "scratch": "tab:orange", "tfidf": "tab:gray"}


def _main_rows(results: dict) -> list[dict]:
    """Rows of the main model and the baselines (not the intermediate checkpoints)."""
    return [r for r in results["rows"] if not r.get("intermediate")]


def _cell(summary: dict | None) -> str:
    if not summary:
        return "-"
    s = f"{summary['median']:.4f}"
    if len(summary["values"]) > 1:
        s += f" ({summary['min']:.4f}–{summary['max']:.4f})"
    return s


def results_markdown(results: dict) -> str:
    lines = [
        f"# Evaluation: {results['model']} on suite {results['suite_name']}",
        "",
        f"Median over seeds (min–max in brackets); seeds {len(results['seeds'])} "
        f"({len(results['seeds_at_full'])} at label fraction 1.0). Fine-tuning: "
        + ", ".join(f"{k}={v}" for k, v in results["finetune"].items() if v is not None)
        + ".",
        "",
        "| task | split | metric | labels | pretrained | from scratch | TF-IDF + LogReg |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = _main_rows(results)
    keys = sorted(
        {(r["task"], r["split"], r["label_fraction"]) for r in rows},
        key=lambda k: ([r["task"] for r in rows].index(k[0]), k[1], k[2]),
    )
    for task, split, fraction in keys:
        group = {
            r["method"]: r
            for r in rows
            if (r["task"], r["split"], r["label_fraction"]) == (task, split, fraction)
        }
        any_row = next(iter(group.values()))
        for metric in any_row["metrics"]:
            cells = [_cell(group[m]["metrics"].get(metric)) if m in group else "-" for m in METHODS]
            labels = f"{any_row['train_samples']:,} ({fraction:.0%})"
            lines.append(f"| {task} | {split} | {metric} | {labels} | " + " | ".join(cells) + " |")
    curve = [r for r in results["rows"] if r["method"] == "pretrained" and r not in rows]
    if curve:
        lines += [
            "",
            "## Pretraining curve",
            "",
            "| checkpoint | step | tokens seen | task | split | labels | metric | pretrained |",
            "|---|---|---|---|---|---|---|---|",
        ]
        main_curve = [r for r in rows if r["method"] == "pretrained"]
        for r in sorted(
            curve + main_curve, key=lambda r: (r["task"], r["split"], r["label_fraction"], r.get("step") or 0)
        ):
            if not any(
                (c["task"], c["split"], c["label_fraction"]) == (r["task"], r["split"], r["label_fraction"])
                for c in curve
            ):
                continue
            tokens = f"{r['tokens_seen']:,}" if r.get("tokens_seen") else "-"
            lines.append(
                f"| {r.get('checkpoint')} | {r.get('step') or '-'} | {tokens} | {r['task']} | {r['split']} | "
                f"{r['train_samples']:,} ({r['label_fraction']:.0%}) | {r['metric']} | "
                f"{_cell(r['metrics'][r['metric']])} |"
            )
    plots = results.get("plots") or {}
    if plots:
        lines.append("")
        lines += [f"![{name}]({Path(p).name})" for name, p in plots.items()]
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grid(n: int, width: float = 4.2, height: float = 3.4):
    plt = _plt()
    cols = min(n, 3)
    rows_n = math.ceil(n / cols)
    fig, axes = plt.subplots(rows_n, cols, figsize=(width * cols, height * rows_n), dpi=110, squeeze=False)
    flat = [a for row in axes for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return plt, fig, flat[:n]


def write_plots(results: dict, out: Path) -> dict[str, str]:
    plots = {}
    for name, fn in (
        ("results", plot_bars),
        ("label_efficiency", plot_label_efficiency),
        ("pretraining_curve", plot_pretraining_curve),
    ):
        path = fn(results, out / f"{name}.png")
        if path:
            plots[name] = str(path)
    return plots


def plot_bars(results: dict, path: Path) -> Path | None:
    """Primary metric per task and split at the largest label fraction: one bar per method, min–max bars."""
    rows = _main_rows(results)
    if not rows:
        return None
    top = max(r["label_fraction"] for r in rows)
    rows = [r for r in rows if r["label_fraction"] == top]
    groups = list(dict.fromkeys((r["task"], r["split"]) for r in rows))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(groups) + 2), 4), dpi=110)
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs, ys, lo, hi = [], [], [], []
        for j, (task, split) in enumerate(groups):
            r = next((r for r in rows if (r["task"], r["split"], r["method"]) == (task, split, method)), None)
            if r is None:
                continue
            s = r["metrics"][r["metric"]]
            xs.append(j + (i - 1) * width)
            ys.append(s["median"])
            lo.append(s["median"] - s["min"])
            hi.append(s["max"] - s["median"])
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=METHOD_LABELS[method], color=COLORS[method])
    metric_of = {(r["task"], r["split"]): r["metric"] for r in rows}
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{t}\n{s} ({metric_of[(t, s)]})" for t, s in groups], fontsize=8)
    ax.set_ylabel("score (median over seeds)")
    ax.set_title(f"{results['suite_name']}: {Path(results['model']).name}, label fraction {top:g}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_label_efficiency(results: dict, path: Path) -> Path | None:
    """Score against the number of training labels (log x), one panel per task and split."""
    rows = _main_rows(results)
    if len({r["label_fraction"] for r in rows}) < 2:
        return None
    groups = list(dict.fromkeys((r["task"], r["split"]) for r in rows))
    plt, fig, axes = _grid(len(groups))
    for ax, (task, split) in zip(axes, groups):
        metric = None
        for method in METHODS:
            pts = sorted(
                (r for r in rows if (r["task"], r["split"], r["method"]) == (task, split, method)),
                key=lambda r: r["train_samples"],
            )
            if not pts:
                continue
            metric = pts[0]["metric"]
            xs = [r["train_samples"] for r in pts]
            s = [r["metrics"][metric] for r in pts]
            ax.plot(xs, [v["median"] for v in s], "o-", color=COLORS[method], label=METHOD_LABELS[method])
            ax.fill_between(
                xs, [v["min"] for v in s], [v["max"] for v in s], color=COLORS[method], alpha=0.15
            )
        ax.set_xscale("log")
        ax.set_xlabel("training labels")
        ax.set_ylabel(metric or "score")
        ax.set_title(f"{task} ({split})")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"Label efficiency: {Path(results['model']).parent.name}/{Path(results['model']).name}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_pretraining_curve(results: dict, path: Path) -> Path | None:
    """Downstream score against pretraining tokens seen, for every checkpoint (scratch = dashed line)."""
    curve = [r for r in results["rows"] if r["method"] == "pretrained" and r.get("checkpoint")]
    keys = list(dict.fromkeys((r["task"], r["split"], r["label_fraction"]) for r in curve))
    keys = [
        k
        for k in keys
        if len({r.get("step") for r in curve if (r["task"], r["split"], r["label_fraction"]) == k}) > 1
    ]
    if not keys:
        return None
    groups = list(dict.fromkeys((t, s) for t, s, _ in keys))
    plt, fig, axes = _grid(len(groups))
    use_tokens = all(r.get("tokens_seen") for r in curve)
    for ax, (task, split) in zip(axes, groups):
        metric = None
        for n, (t, s, fraction) in enumerate(k for k in keys if k[:2] == (task, split)):
            pts = sorted(
                (r for r in curve if (r["task"], r["split"], r["label_fraction"]) == (t, s, fraction)),
                key=lambda r: r.get("step") or 0,
            )
            metric = pts[0]["metric"]
            xs = [r["tokens_seen"] if use_tokens else r.get("step") for r in pts]
            ys = [r["metrics"][metric]["median"] for r in pts]
            color = f"C{n}"
            ax.plot(xs, ys, "o-", color=color, label=f"pretrained, {pts[-1]['train_samples']:,} labels")
            ax.fill_between(
                xs, [r["metrics"][metric]["min"] for r in pts], [r["metrics"][metric]["max"] for r in pts],
                color=color, alpha=0.15,
            )  # fmt: skip
            for method, style in (("scratch", "--"), ("tfidf", ":")):
                base = next(
                    (
                        r
                        for r in results["rows"]
                        if (r["task"], r["split"], r["label_fraction"], r["method"])
                        == (t, s, fraction, method)
                    ),
                    None,
                )
                if base:
                    ax.axhline(
                        base["metrics"][metric]["median"], color=color, linestyle=style, linewidth=1,
                        label=f"{METHOD_LABELS[method]}, {base['train_samples']:,} labels",
                    )  # fmt: skip
        ax.set_xlabel("pretraining tokens seen" if use_tokens else "pretraining step")
        ax.set_ylabel(metric or "score")
        ax.set_title(f"{task} ({split})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Downstream score along pretraining")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
