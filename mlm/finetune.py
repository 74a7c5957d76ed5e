"""Fine-tune a (pretrained or from-scratch) encoder as a text classifier with `transformers.Trainer`.

`finetune(cfg)` reads labelled train / validation / test data (single texts or pairs), trains
`AutoModelForSequenceClassification`, evaluates with the metric modules of `mlm.metrics`, and writes
`output_dir` atomically: `metrics.json`, `predictions.jsonl`, `log_history.json`, `mlm_step.json` and (unless
`save_model` is false) the model and tokenizer, loadable with `AutoModelForSequenceClassification`, with its run
record (`run_info.json`, a `RunRecord` of kind "finetune") and model card (`README.md`).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
import transformers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from data_prep.errors import UserError
from data_prep.io import atomic_output_dir, write_json
from data_prep.read import ReadOptions
from data_prep.steps import write_step_metadata
from mlm import labelled_data, metrics
from mlm.distributed import destroy_process_group_at_exit
from mlm.model_card import write_model_card
from mlm.options import TrainerOptions, as_group, training_arguments, validate_groups, with_defaults
from mlm.run_record import (
    CorpusFacts,
    FinetuneFacts,
    ModelFacts,
    ObjectiveFacts,
    RunRecord,
    TrainingFacts,
    describe_hardware,
    spec_parts,
)

logger = logging.getLogger(__name__)

STEP = "finetune"


@dataclass
@with_defaults(learning_rate=1e-4)
class FinetuneConfig(TrainerOptions):
    """Settings of `mlm finetune` (a recipe's `finetune:` section)."""

    model: str = field(
        default="", metadata={"help": "pretrained checkpoint folder (or Hub name) to start from; required"}
    )
    output_dir: str = field(
        default="", metadata={"help": "folder to write the classifier and its metrics; required"}
    )
    train_file: str = field(
        default="",
        metadata={
            "help": "training data: a .csv/.tsv/.jsonl/.json/.parquet file (.gz ok), hf:NAME@SPLIT or "
            "builtin:pydocs@train; required"
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "validation data (same forms as train_file), evaluated every epoch"}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "test data (same forms as train_file), evaluated once at the end"}
    )
    tokenizer: str | None = field(default=None, metadata={"help": "tokenizer folder (default: the model's)"})
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    text_pair_column: str | None = field(
        default=None,
        metadata={"help": "column holding the second text of sentence-pair tasks (MRPC, RTE...)"},
    )
    label_column: str = field(default="label", metadata={"help": "column holding the label"})
    column_names: list[str] | None = field(
        default=None,
        metadata={"help": "column names of header-less CSV/TSV files, e.g. CoLA: source label orig sentence"},
    )
    delimiter: str | None = field(
        default=None,
        metadata={"help": "field delimiter for files whose extension is not .csv/.tsv ('\\t', ' ')"},
    )
    encoding: str = field(
        default="utf-8", metadata={"help": "text encoding of the data files (e.g. latin-1)"}
    )
    encoding_errors: str = field(
        default="strict", metadata={"help": "undecodable bytes: 'strict' (fail) or 'replace'"}
    )
    on_bad_lines: str = field(
        default="error",
        metadata={"help": "malformed CSV/TSV rows: 'error' (fail) or 'skip' (with a warning)"},
    )
    from_scratch: bool = field(
        default=False,
        metadata={
            "help": "same architecture as `model` but randomly initialised: the no-pretraining baseline"
        },
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "longer inputs are truncated to this many tokens"}
    )
    metrics: list[str] = field(
        default_factory=lambda: ["accuracy", "f1_macro"],
        metadata={
            "help": "metrics to report: accuracy, f1 (binary, positive = 2nd label), f1_macro, "
            "f1_micro, f1_weighted, matthews_correlation"
        },
    )
    metric_for_best_model: str | None = field(
        default=None,
        metadata={
            "help": "keep the weights of the epoch/evaluation with the best validation value of this "
            "metric (or 'loss'); default: keep the last"
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use at most this many training examples (stratified, seeded)"}
    )
    label_fraction: float = field(
        default=1.0,
        metadata={"help": "use this fraction of the training examples (stratified by label, seeded)"},
    )
    eval_steps: int | None = field(
        default=None, metadata={"help": "evaluate on validation every N steps (default: once per epoch)"}
    )
    save_model: bool = field(default=True, metadata={"help": "write the fine-tuned model and tokenizer"})
    fp16: bool | None = field(
        default=None, metadata={"help": "fp16 mixed precision (default: auto, bf16 preferred)"}
    )

    def validate(self) -> None:
        """Raise UserError on a missing or out-of-range setting."""
        for name in ("model", "output_dir", "train_file"):
            if not str(getattr(self, name) or "").strip():
                raise UserError(f"finetune: '{name}' is required")
        try:
            validate_groups(self)
            ReadOptions(
                encoding=self.encoding, encoding_errors=self.encoding_errors, on_bad_lines=self.on_bad_lines
            )
        except UserError as e:
            raise UserError(f"finetune: {e}") from None
        for name in ("max_seq_length", "max_train_samples", "eval_steps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UserError(f"finetune: '{name}' must be positive, got {value}")
        if not self.num_train_epochs > 0 and self.max_steps <= 0:
            raise UserError(f"finetune: 'num_train_epochs' must be positive, got {self.num_train_epochs}")
        if not 0 < self.label_fraction <= 1:
            raise UserError(f"finetune: 'label_fraction' must be in (0, 1], got {self.label_fraction}")
        if not self.metrics:
            raise UserError("finetune: 'metrics' must name at least one metric")
        metrics.check_metric_names(self.metrics, where="finetune: metrics")
        if self.metric_for_best_model is not None:
            valid = [*self.metrics, "loss"]
            if self.metric_for_best_model not in valid:
                raise UserError(
                    f"finetune: metric_for_best_model '{self.metric_for_best_model}' must be one of the "
                    f"reported metrics: {', '.join(valid)}"
                )
            if not self.validation_file:
                raise UserError("finetune: metric_for_best_model needs a validation_file")
        if self.fp16 and self.bf16:
            raise UserError("finetune: set at most one of fp16 and bf16")


# --- data ---------------------------------------------------------------------------------------------


def load_split(cfg: FinetuneConfig, spec: str) -> datasets.Dataset:
    """One labelled split (`spec`: a file, `hf:NAME@SPLIT` or `builtin:`) read with the config's options."""
    return labelled_data.load_labelled(
        spec,
        text_column=cfg.text_column,
        text_pair_column=cfg.text_pair_column,
        label_column=cfg.label_column,
        column_names=cfg.column_names,
        delimiter=cfg.delimiter,
        encoding=cfg.encoding,
        encoding_errors=cfg.encoding_errors,
        on_bad_lines=cfg.on_bad_lines,
    )


def tokenize_split(
    ds: datasets.Dataset, cfg: FinetuneConfig, tokenizer: Any, label_map: list[str]
) -> datasets.Dataset:
    """input_ids (+ token_type_ids, attention_mask) truncated to max_seq_length, and integer `labels`."""
    index = {name: i for i, name in enumerate(label_map)}

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pair = batch[cfg.text_pair_column] if cfg.text_pair_column else None
        enc = tokenizer(
            batch[cfg.text_column],
            pair,
            truncation=True,
            max_length=cfg.max_seq_length,
            # segment ids tell BERT which text is which, even if the tokenizer does not return them by default
            return_token_type_ids=True if pair is not None else None,
        )
        enc["labels"] = [index[v] for v in batch[cfg.label_column]]
        return dict(enc)

    return ds.map(encode, batched=True, remove_columns=ds.column_names, desc=None)


# --- model --------------------------------------------------------------------------------------------


def _not_found(name: str, what: str, err: Exception) -> UserError:
    if (Path(name) / "final" / "config.json").is_file() and not (Path(name) / "config.json").is_file():
        return UserError(
            f"{what} {name} is a pretraining run folder; use its final model: {Path(name) / 'final'}"
        )
    folder = Path(name)
    if what == "tokenizer" and folder.is_dir() and not any(folder.glob("tokenizer*.json")):
        return UserError(
            f"tokenizer folder {name} has no tokenizer.json / tokenizer_config.json; set 'tokenizer'"
        )
    if what == "model" and folder.is_dir() and not (folder / "config.json").is_file():
        return UserError(f"model folder {name} has no config.json: it is not a saved model")
    if folder.exists():
        return UserError(f"{what} {name} could not be loaded: {str(err).strip().splitlines()[0]}")
    return UserError(f"{what} {name} not found: not a local folder and not reachable on the Hub (offline)")


def load_tokenizer(name: str, token_types: bool = False) -> Any:
    """Load a tokenizer; `token_types` makes it return token_type_ids by default (saved with it too)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        names = list(tokenizer.model_input_names)
        if token_types and "token_type_ids" not in names:
            names.insert(1 if names[:1] == ["input_ids"] else len(names), "token_type_ids")
            tokenizer = AutoTokenizer.from_pretrained(name, model_input_names=names)
        return tokenizer
    except (OSError, ValueError) as e:
        raise _not_found(name, "tokenizer", e) from None


def load_classifier_config(name: str, label_map: list[str]) -> transformers.PretrainedConfig:
    """The checkpoint's config with a classification head for `label_map`."""
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise _not_found(name, "model", e) from None
    config.num_labels = len(label_map)
    config.id2label = dict(enumerate(label_map))
    config.label2id = {name: i for i, name in enumerate(label_map)}
    config.problem_type = "single_label_classification"
    return config


def _check_compatible(cfg: FinetuneConfig, config: transformers.PretrainedConfig, tokenizer: Any) -> None:
    max_positions = getattr(config, "max_position_embeddings", None)
    if max_positions is not None and cfg.max_seq_length > max_positions:
        raise UserError(
            f"max_seq_length {cfg.max_seq_length} is larger than model {cfg.model}'s max_position_embeddings "
            f"{max_positions}"
        )
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise UserError(
            f"tokenizer {cfg.tokenizer or cfg.model} has {len(tokenizer)} tokens but model {cfg.model} has a "
            f"vocabulary of {vocab}: they do not belong together"
        )


def build_classifier(cfg: FinetuneConfig, config: transformers.PretrainedConfig) -> PreTrainedModel:
    """The pretrained encoder with a fresh head, or the same architecture from scratch (seeded)."""
    transformers.set_seed(cfg.seed)
    if cfg.from_scratch:
        return AutoModelForSequenceClassification.from_config(config)
    try:
        return AutoModelForSequenceClassification.from_pretrained(cfg.model, config=config)
    except (OSError, ValueError) as e:
        raise _not_found(cfg.model, "model", e) from None


# --- training -----------------------------------------------------------------------------------------


class _KeepBest(TrainerCallback):
    """Keep (in CPU memory) the weights of the evaluation with the best `metric`."""

    def __init__(self, metric: str):
        self.key = f"eval_{metric}"
        self.greater = metric != "loss"
        self.best: float | None = None
        self.step: int | None = None
        self.epoch: float | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_evaluate(self, args, state, control, metrics=None, model=None, **kwargs):
        value = (metrics or {}).get(self.key)
        if value is None or model is None:
            return
        if self.best is None or (value > self.best if self.greater else value < self.best):
            self.best, self.step, self.epoch = float(value), state.global_step, state.epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def _precision(cfg: FinetuneConfig) -> tuple[bool, bool]:
    """(fp16, bf16): explicit settings win; auto = bf16 on a GPU that has it, else fp16 on a GPU."""
    gpu = torch.cuda.is_available() and not cfg.use_cpu
    if cfg.fp16 and not gpu:
        raise UserError("finetune: fp16 needs a CUDA GPU; leave fp16 unset on the CPU")
    if cfg.fp16 is not None or cfg.bf16 is not None:
        return bool(cfg.fp16), bool(cfg.bf16)
    if not gpu:
        return False, False
    bf16 = torch.cuda.is_bf16_supported()
    return not bf16, bf16


def _training_args(
    cfg: FinetuneConfig, scratch: Path, n_train: int, has_validation: bool
) -> TrainingArguments:
    fp16, bf16 = _precision(cfg)
    steps_per_epoch = math.ceil(n_train / cfg.per_device_train_batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.num_train_epochs))
    if not has_validation:
        eval_strategy = "no"
    elif cfg.eval_steps:
        eval_strategy = "steps"
    else:
        eval_strategy = "epoch"
    kwargs = training_arguments(
        as_group(cfg, TrainerOptions),
        output_dir=str(scratch),
        eval_strategy=eval_strategy,
        eval_steps=cfg.eval_steps,
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=cfg.logging_steps or max(1, total_steps // 20),
        fp16=fp16,
        bf16=bf16,
    )
    try:
        return TrainingArguments(**kwargs)
    except ValueError as e:  # e.g. bf16 on hardware without it
        raise UserError(f"finetune: invalid training settings: {str(e).strip().splitlines()[0]}") from None


def _metric_fn(names: list[str]):
    def compute(pred: transformers.EvalPrediction) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        return metrics.compute_metrics(names, np.argmax(logits, axis=-1), pred.label_ids)

    return compute


def _clean(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    """Drop the `eval_` / `test_` prefix Trainer puts on metric names."""
    return {k[len(prefix) + 1 :] if k.startswith(prefix + "_") else k: v for k, v in values.items()}


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _truncated_fraction(ds: datasets.Dataset, max_len: int) -> float:
    lengths = [len(x) for x in ds["input_ids"]]
    return float(np.mean([n >= max_len for n in lengths])) if lengths else 0.0


def write_predictions(path: Path, logits: np.ndarray, labels: np.ndarray, label_map: list[str]) -> None:
    """predictions.jsonl: each example's label, prediction and class probabilities."""
    probs = _softmax(logits.astype(np.float64))
    with open(path, "w", encoding="utf-8") as f:
        for i, (p, y) in enumerate(zip(probs, labels)):
            row = {
                "index": i,
                "label": label_map[int(y)],
                "prediction": label_map[int(p.argmax())],
                "probabilities": {name: round(float(q), 6) for name, q in zip(label_map, p)},
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _write_step(folder: Path, cfg: FinetuneConfig) -> None:
    inputs = {
        k: getattr(cfg, k) for k in ("model", "tokenizer", "train_file", "validation_file", "test_file")
    }
    write_step_metadata(folder, STEP, cfg, inputs)


# --- the steps of a run -------------------------------------------------------------------------------


@dataclass
class _Task:
    """The labelled data of a run: all training examples, the subset trained on, validation/test by role."""

    train_full: datasets.Dataset
    train: datasets.Dataset
    evals: dict[str, datasets.Dataset]
    label_map: list[str]


def _load_task(cfg: FinetuneConfig) -> _Task:
    """Read and check the labelled data (before any model is loaded, so these cheap checks fail first)."""
    train_full = load_split(cfg, cfg.train_file)
    label_map = labelled_data.build_label_map(train_full[cfg.label_column])
    if len(label_map) < 2:
        raise UserError(f"{cfg.train_file}: found {len(label_map)} label(s); classification needs at least 2")
    if any(m in metrics.BINARY_ONLY for m in cfg.metrics) and len(label_map) != 2:
        raise UserError(
            f"finetune: metric 'f1' is binary but {cfg.train_file} has {len(label_map)} labels; use f1_macro"
        )
    evals: dict[str, datasets.Dataset] = {}
    for split, spec in (("validation", cfg.validation_file), ("test", cfg.test_file)):
        if spec:
            evals[split] = load_split(cfg, spec)
            labelled_data.check_labels(evals[split], cfg.label_column, label_map, spec)
    train = labelled_data.stratified_subset(
        train_full,
        cfg.label_column,
        fraction=cfg.label_fraction,
        max_samples=cfg.max_train_samples,
        seed=cfg.seed,
    )
    labelled_data.warn_missing_labels(train, cfg.label_column, label_map, cfg.train_file)
    return _Task(train_full, train, evals, label_map)


def _load_model(cfg: FinetuneConfig, label_map: list[str]) -> tuple[PreTrainedModel, Any]:
    """The classifier (pretrained or from scratch) and its tokenizer, checked to belong together."""
    config = load_classifier_config(cfg.model, label_map)
    # BERT-style models have segment embeddings: make the tokenizer (and the saved copy) emit their ids, so
    # pairs are encoded the same way in training and at inference
    tokenizer = load_tokenizer(cfg.tokenizer or cfg.model, getattr(config, "type_vocab_size", 1) > 1)
    _check_compatible(cfg, config, tokenizer)
    return build_classifier(cfg, config), tokenizer


def _train(
    cfg: FinetuneConfig, model: PreTrainedModel, tokenizer: Any, train_tok: datasets.Dataset,
    evals_tok: dict[str, datasets.Dataset], scratch: Path,
) -> tuple[Trainer, Any, _KeepBest | None]:  # fmt: skip
    """Train with `Trainer`; with `metric_for_best_model`, end with the best evaluation's weights."""
    args = _training_args(cfg, scratch, len(train_tok), "validation" in evals_tok)
    keep_best = _KeepBest(cfg.metric_for_best_model) if cfg.metric_for_best_model else None
    destroy_process_group_at_exit()  # TrainingArguments may have started one (torchrun)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_tok,
        eval_dataset=evals_tok.get("validation"),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(
            tokenizer, pad_to_multiple_of=8 if args.fp16 or args.bf16 else None
        ),
        compute_metrics=_metric_fn(cfg.metrics),
        callbacks=[keep_best] if keep_best else None,
    )
    train_out = trainer.train()
    if keep_best is not None and keep_best.state is not None:
        trainer.model.load_state_dict(keep_best.state)
    return trainer, train_out, keep_best


def _training_results(
    cfg: FinetuneConfig, task: _Task, train_tok: datasets.Dataset, train_out: Any, keep_best: _KeepBest | None
) -> dict[str, Any]:
    """What metrics.json says of the run and its training."""
    results: dict[str, Any] = {
        "model": cfg.model,
        "tokenizer": cfg.tokenizer or cfg.model,
        "from_scratch": cfg.from_scratch,
        "num_labels": len(task.label_map),
        "labels": task.label_map,
        "train_samples": len(task.train),
        "train_samples_available": len(task.train_full),
        "train_labels_missing": labelled_data.missing_labels(task.train, cfg.label_column, task.label_map),
        "label_fraction": cfg.label_fraction,
        "seed": cfg.seed,
        "max_seq_length": cfg.max_seq_length,
        "train_truncated_fraction": _truncated_fraction(train_tok, cfg.max_seq_length),
        "train": {
            "runtime": train_out.metrics.get("train_runtime"),
            "samples": len(task.train),
            "samples_per_second": train_out.metrics.get("train_samples_per_second"),
            "steps": train_out.global_step,
            "epochs": train_out.metrics.get("epoch"),
            "loss": train_out.training_loss,
        },
    }
    if keep_best is not None:
        results["best"] = {
            "metric": cfg.metric_for_best_model,
            "value": keep_best.best,
            "step": keep_best.step,
            "epoch": keep_best.epoch,
        }
    return results


def _evaluate_splits(
    cfg: FinetuneConfig,
    trainer: Trainer,
    evals_tok: dict[str, datasets.Dataset],
    label_map: list[str],
    out: Path,
) -> dict[str, Any]:
    """Metrics of each evaluation split; predictions.jsonl for the test split (else validation)."""
    results: dict[str, Any] = {}
    for split, ds in evals_tok.items():
        prefix = "eval" if split == "validation" else "test"
        pred = trainer.predict(ds, metric_key_prefix=prefix)
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        values = _clean(prefix, pred.metrics)
        results[split] = {
            **{m: values[m] for m in cfg.metrics},
            "loss": values.get("loss"),
            "samples": len(ds),
            "runtime": values.get("runtime"),
        }
        if split == "test" or "test" not in evals_tok:
            results["predictions_of"] = split
            write_predictions(out / "predictions.jsonl", logits, pred.label_ids, label_map)
    results.setdefault("predictions_of", None)
    return results


def _split_names(cfg: FinetuneConfig) -> dict[str, str]:
    """Role (validation, test) -> the split's real name: the `@SPLIT` of a Hub or built-in spec, else the role."""
    specs = {"validation": cfg.validation_file, "test": cfg.test_file}
    names = {role: spec_parts(spec)[1] or role for role, spec in specs.items() if spec}
    return names if len(set(names.values())) == len(names) else {role: role for role in names}


def _base_model(cfg: FinetuneConfig, base: RunRecord) -> str:
    """The base model as the card names it: its Hub id, else its folder's name (never a local path)."""
    if base.repo_id:
        return base.repo_id
    return Path(cfg.model).resolve().name if Path(cfg.model).exists() else cfg.model


def finetune_record(
    cfg: FinetuneConfig, model: PreTrainedModel, trainer: Trainer, results: dict[str, Any]
) -> RunRecord:
    """The fine-tuned model's run record: the base model's corpus, tokenizer and objective (unless trained
    from scratch), this run's model and training, and its metrics under the real split names."""
    base = RunRecord.load(cfg.model) if Path(cfg.model).is_dir() else RunRecord()
    specs = [s for s in (cfg.train_file, cfg.validation_file, cfg.test_file) if s]
    return RunRecord(
        kind="finetune",
        license=base.license,
        language=base.language,
        datasets=base.datasets,
        corpus=CorpusFacts() if cfg.from_scratch else base.corpus,
        tokenizer=base.tokenizer,
        model=_model_facts(cfg, model, base),
        objective=ObjectiveFacts() if cfg.from_scratch else base.objective,
        training=_training_facts(cfg, trainer.args, results["train"]),
        finetune=FinetuneFacts(
            data=specs,
            base_model=_base_model(cfg, base),
            from_scratch=cfg.from_scratch,
            pipeline_tag="text-classification",
            problem_type=model.config.problem_type,
            label_names=results["labels"],
            train_samples=results["train_samples"],
            metrics={name: _scores(results[role]) for role, name in _split_names(cfg).items()},
        ),
    )


def _model_facts(cfg: FinetuneConfig, model: PreTrainedModel, base: RunRecord) -> ModelFacts:
    config = model.config
    return ModelFacts(
        architecture=config.model_type,
        preset=base.model.preset,
        num_hidden_layers=getattr(config, "num_hidden_layers", None),
        hidden_size=getattr(config, "hidden_size", None),
        num_attention_heads=getattr(config, "num_attention_heads", None),
        parameters=model.num_parameters(),
        max_seq_length=cfg.max_seq_length,
    )


def _training_facts(cfg: FinetuneConfig, args: TrainingArguments, train: dict[str, Any]) -> TrainingFacts:
    return TrainingFacts(
        steps=train["steps"],
        epochs=train["epochs"],
        batch_size=args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        warmup=cfg.warmup_ratio,
        hardware=describe_hardware(args.device.type == "cuda"),
        wall_time_s=train["runtime"],
    )


def _scores(split_results: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in split_results.items() if k not in ("samples", "runtime") and v is not None}


def _save(cfg: FinetuneConfig, out: Path, trainer: Trainer, tokenizer: Any, results: dict[str, Any]) -> None:
    """Write the output folder: the model, tokenizer, run record and card (unless `save_model` is false),
    log history, metrics and step metadata."""
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    if cfg.save_model:
        trainer.model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        record = finetune_record(cfg, trainer.model, trainer, results)
        record.save(out)
        write_model_card(out, record, name=Path(cfg.output_dir).name)
    write_json(out / "log_history.json", trainer.state.log_history)
    write_json(out / "metrics.json", results)
    _write_step(out, cfg)


def finetune(cfg: FinetuneConfig) -> dict:
    """Train and evaluate a classifier as `cfg` says; write `cfg.output_dir`; return the metrics dict."""
    cfg.validate()
    started = time.time()
    task = _load_task(cfg)
    model, tokenizer = _load_model(cfg, task.label_map)
    train_tok = tokenize_split(task.train, cfg, tokenizer, task.label_map)
    evals_tok = {
        split: tokenize_split(ds, cfg, tokenizer, task.label_map) for split, ds in task.evals.items()
    }
    with atomic_output_dir(cfg.output_dir) as out:
        trainer, train_out, keep_best = _train(cfg, model, tokenizer, train_tok, evals_tok, out / "_trainer")
        results = _training_results(cfg, task, train_tok, train_out, keep_best)
        results.update(_evaluate_splits(cfg, trainer, evals_tok, task.label_map, out))
        results["device"] = str(trainer.args.device)
        results["runtime"] = time.time() - started
        _save(cfg, out, trainer, tokenizer, results)
    return results
