"""Fine-tune a (pretrained or from-scratch) encoder as a text classifier with `transformers.Trainer`.

`finetune(cfg)` reads labelled train / validation / test data (single texts or pairs), trains
`AutoModelForSequenceClassification` for the config's `problem_type` (single-label, multi-label or regression:
the model's loss follows `config.problem_type`), evaluates with `mlm.metrics`, and writes `output_dir`
atomically: `metrics.json`, `predictions.jsonl`, `log_history.json`, `mlm_step.json` and (unless `save_model` is
false) the model and tokenizer, loadable with `AutoModelForSequenceClassification` and
`pipeline("text-classification")` (labels by their `label_names`), with its run record (`run_info.json`, a
`RunRecord` of kind "finetune") and model card (`README.md`). With `push_to_hub` the folder is then pushed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

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
from data_prep.io import match_file_modes, write_json
from data_prep.outputs import check_output, output_folder
from data_prep.read import ReadOptions
from data_prep.steps import write_step_metadata
from data_prep.tokenizer import save_tokenizer, tokenizer_fingerprint
from mlm import labelled_data, long_text, metrics
from mlm.cpu.threads import CountTokens
from mlm.distributed import destroy_process_group_at_exit
from mlm.long_text import LONG_TEXT
from mlm.metrics import MULTI_LABEL, PROBLEM_TYPES, REGRESSION, SINGLE_LABEL
from mlm.model_card import write_model_card
from mlm.model_folder import check_model_folder
from mlm.options import (
    CardArguments,
    MlmTrainingArguments,
    check_training,
    cpu_thread_tuner,
    on_gpu,
    trainer_arguments,
)
from mlm.progress import EvaluationLines, at, device_peak, fmt_value, run_output, say
from mlm.progress import install as install_progress
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
from mlm.sampling import LengthGroupedTrainer, train_sampling_strategy

logger = logging.getLogger(__name__)

STEP = "finetune"


@dataclass
class FinetuningArguments(MlmTrainingArguments):
    """`TrainingArguments` with fine-tuning's defaults."""

    FIXED: ClassVar[dict[str, str]] = {
        "save_strategy": "the kept weights are saved once, at the end (save_model)",
    }

    output_dir: str = field(
        default="", metadata={"help": "folder to write the classifier and its metrics", "required": True}
    )
    learning_rate: float = 1e-4
    eval_strategy: str = field(
        default="epoch", metadata={"help": "when to score the validation data: epoch, steps or no"}
    )
    save_strategy: str = "no"
    fp16: bool | None = field(
        default=None, metadata={"help": "fp16 mixed precision (default: on GPUs without bf16)"}
    )
    train_sampling_strategy: str | None = field(
        default=None,
        metadata={"help": "order of the training examples: random, sequential, group_by_length (batches of "
                          "similar lengths: little padding) or batch_rebalance (default: group_by_length on a "
                          "GPU, random on the CPU)"},
    )  # fmt: skip


@dataclass
class FinetuneConfig(CardArguments, FinetuningArguments):
    """Settings of `mlm finetune` (a recipe's `finetune:` section)."""

    GROUP: ClassVar[str] = "fine-tuning"

    model_name_or_path: str = field(
        default="",
        metadata={"help": "pretrained checkpoint folder (or Hub id) to start from", "required": True},
    )
    train_file: str = field(
        default="",
        metadata={
            "help": "training data: a .csv/.tsv/.jsonl/.json/.parquet file (.gz ok), hf:NAME@SPLIT or "
            "builtin:pydocs@train",
            "required": True,
        },
    )
    validation_file: str | None = field(
        default=None, metadata={"help": "validation data (same forms as train_file), evaluated every epoch"}
    )
    test_file: str | None = field(
        default=None, metadata={"help": "test data (same forms as train_file), evaluated once at the end"}
    )
    tokenizer_name: str | None = field(
        default=None, metadata={"help": "tokenizer folder or Hub id (default: the model's)"}
    )
    text_column: str = field(default="text", metadata={"help": "column holding the text"})
    text_pair_column: str | None = field(
        default=None,
        metadata={"help": "column holding the second text of sentence-pair tasks (MRPC, RTE...)"},
    )
    label_column: str = field(default="label", metadata={"help": "column holding the label"})
    problem_type: str = field(
        default=SINGLE_LABEL,
        metadata={
            "help": "single_label_classification (one label per text), multi_label_classification (a list "
            "of labels per text: a JSON list, or labels separated by commas) or regression (a number per text)"
        },
    )
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "names of the label ids, in label order (labels sorted, numerically if integers), e.g. "
            "negative positive for 0/1: the saved model and pipeline('text-classification') use them; "
            "regression: the name of the score"
        },
    )
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
    max_seq_length: int | None = field(
        default=None,
        metadata={"help": "tokens per input (default: the tokenizer's model_max_length); longer texts are "
                          "handled as `long_text` says"},
    )  # fmt: skip
    long_text: str = field(
        default="truncate",
        metadata={
            "help": "texts over max_seq_length: truncate (keep the head), head_tail (a quarter from the head, "
            "the rest from the end), chunks (overlapping windows; a text's logits are its windows' mean)"
        },
    )
    doc_stride: int | None = field(
        default=None, metadata={"help": "chunks: tokens shared by neighbouring windows (default: a quarter)"}
    )
    metrics: list[str] | None = field(
        default=None,
        metadata={
            "help": "metrics to report. Single-label: accuracy, f1 (binary, positive = 2nd label), f1_macro, "
            "f1_micro, f1_weighted, matthews_correlation (default: accuracy f1_macro); multi-label (a label "
            "applies when its sigmoid >= 0.5): f1_micro, f1_macro, f1_weighted, accuracy (every label right) "
            "(default: f1_micro f1_macro); regression: mse, mae, pearsonr, spearmanr (default: mse pearsonr "
            "spearmanr)"
        },
    )
    min_train_steps: int = field(
        default=0,
        metadata={
            "help": "train at least this many optimizer steps (more epochs when the training set is small; "
            "max_steps wins when set)"
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "use at most this many training examples (stratified, seeded)"}
    )
    label_fraction: float = field(
        default=1.0,
        metadata={"help": "use this fraction of the training examples (stratified by label, seeded)"},
    )
    save_model: bool = field(default=True, metadata={"help": "write the fine-tuned model and tokenizer"})

    @property
    def reported_metrics(self) -> list[str]:
        """The metrics reported: `metrics`, else the problem type's defaults."""
        return list(self.metrics) if self.metrics is not None else metrics.DEFAULT_METRICS[self.problem_type]

    def validate(self) -> None:
        """Every value, checked once (a UserError naming the first wrong one); changes nothing."""
        _validate(self)

    @property
    def stride(self) -> int:
        """Tokens shared by neighbouring chunks."""
        return self.doc_stride if self.doc_stride is not None else self.max_seq_length // 4


def _validate(cfg: FinetuneConfig) -> None:
    for name in ("model_name_or_path", "output_dir", "train_file"):
        if not str(getattr(cfg, name) or "").strip():
            raise UserError(f"finetune: '{name}' is required")
    try:
        check_training(cfg)
        ReadOptions(encoding=cfg.encoding, encoding_errors=cfg.encoding_errors, on_bad_lines=cfg.on_bad_lines)
    except UserError as e:
        raise UserError(f"finetune: {e}") from None
    for name in ("max_seq_length", "max_train_samples", "eval_steps"):
        value = getattr(cfg, name)
        if value is not None and value <= 0:
            raise UserError(f"finetune: '{name}' must be positive, got {value}")
    _validate_long_text(cfg)
    if cfg.min_train_steps < 0:
        raise UserError(f"finetune: 'min_train_steps' must be >= 0, got {cfg.min_train_steps}")
    if not cfg.num_train_epochs > 0 and cfg.max_steps <= 0:
        raise UserError(f"finetune: 'num_train_epochs' must be positive, got {cfg.num_train_epochs}")
    if not 0 < cfg.label_fraction <= 1:
        raise UserError(f"finetune: 'label_fraction' must be in (0, 1], got {cfg.label_fraction}")
    if cfg.problem_type not in PROBLEM_TYPES:
        raise UserError(
            f"finetune: unknown problem_type '{cfg.problem_type}'; valid: {', '.join(PROBLEM_TYPES)}"
        )
    if not cfg.reported_metrics:
        raise UserError("finetune: 'metrics' must name at least one metric")
    metrics.check_metric_names(cfg.reported_metrics, "finetune: metrics", cfg.problem_type)
    _validate_hub(cfg)
    if cfg.metric_for_best_model is not None:
        valid = [*cfg.reported_metrics, "loss"]
        if cfg.metric_for_best_model not in valid:
            raise UserError(
                f"finetune: metric_for_best_model '{cfg.metric_for_best_model}' must be one of the "
                f"reported metrics: {', '.join(valid)}"
            )
        if not cfg.validation_file:
            raise UserError("finetune: metric_for_best_model needs a validation_file")


def _validate_long_text(cfg: FinetuneConfig) -> None:
    if cfg.long_text not in LONG_TEXT:
        raise UserError(f"finetune: unknown long_text '{cfg.long_text}'; valid: {', '.join(LONG_TEXT)}")
    if cfg.long_text != "truncate" and cfg.text_pair_column:
        raise UserError(f"finetune: long_text {cfg.long_text} works on single texts, not text pairs "
                        f"(text_pair_column {cfg.text_pair_column}): use long_text: truncate")  # fmt: skip
    length = cfg.max_seq_length
    if cfg.doc_stride is not None and length and not 0 <= cfg.doc_stride < length // 2:
        raise UserError(f"finetune: doc_stride must be in [0, max_seq_length / 2), got {cfg.doc_stride}")


def _validate_hub(cfg: FinetuneConfig) -> None:
    if not cfg.push_to_hub:
        return
    if cfg.hub_strategy != "end":
        raise UserError(
            f"finetune: hub_strategy '{cfg.hub_strategy}' pushes checkpoints, and fine-tuning saves none: "
            "it pushes the final model (hub_strategy: end)"
        )
    if not cfg.save_model:
        raise UserError("finetune: push_to_hub needs save_model (there is no model to push)")


# --- data ---------------------------------------------------------------------------------------------


def load_split(cfg: FinetuneConfig, spec: str) -> datasets.Dataset:
    """One labelled split (`spec`: a file, `hf:NAME@SPLIT` or `builtin:`) read with the config's options."""
    return labelled_data.load_labelled_with(spec, cfg, cfg.problem_type)


def encode_labels(values: list, cfg: FinetuneConfig, label_map: list[str]) -> list:
    """The `labels` the model trains on: class ids, 0/1 rows (multi-label) or floats (regression)."""
    if cfg.problem_type == REGRESSION:
        return [float(v) for v in values]
    index = {name: i for i, name in enumerate(label_map)}
    if cfg.problem_type == MULTI_LABEL:
        rows = []
        for labels in values:
            row = [0.0] * len(label_map)
            for name in labels:
                row[index[name]] = 1.0
            rows.append(row)
        return rows
    return [index[v] for v in values]


def tokenize_split(
    ds: datasets.Dataset, cfg: FinetuneConfig, tokenizer: Any, label_map: list[str]
) -> datasets.Dataset:
    """input_ids (+ token_type_ids, attention_mask) of at most max_seq_length tokens, as `long_text` says,
    and the `labels` of `encode_labels` (with `chunks`, a row per window and its document in `doc`)."""

    def encode(batch: dict[str, list], rows: list[int]) -> dict[str, list]:
        pair = batch[cfg.text_pair_column] if cfg.text_pair_column else None
        enc = long_text.encode(tokenizer, batch[cfg.text_column], pair, cfg.max_seq_length, cfg.long_text,
                               cfg.stride)  # fmt: skip
        labels = encode_labels(batch[cfg.label_column], cfg, label_map)
        if long_text.DOC in enc:  # a row per window: its document's label, and the document's row in `ds`
            labels = [labels[d] for d in enc[long_text.DOC]]
            enc[long_text.DOC] = [rows[d] for d in enc[long_text.DOC]]
        enc["labels"] = labels
        return enc

    return ds.map(encode, batched=True, with_indices=True, remove_columns=ds.column_names, desc=None)


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


def load_classifier_config(
    name: str, label_names: list[str], problem_type: str = SINGLE_LABEL
) -> transformers.PretrainedConfig:
    """The checkpoint's config with a head of one output per name in `label_names` (for regression: the
    one name of the score) and the problem type that picks the loss."""
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise _not_found(name, "model", e) from None
    config.num_labels = len(label_names)
    config.id2label = dict(enumerate(label_names))
    config.label2id = {label: i for i, label in enumerate(label_names)}
    config.problem_type = problem_type
    return config


DEFAULT_SEQ_LEN = 128  # when neither the tokenizer nor the model says how long an input may be


def sequence_length(cfg: FinetuneConfig, config: transformers.PretrainedConfig, tokenizer: Any) -> int:
    """`max_seq_length`, or the tokenizer's `model_max_length` (what pretraining packed), checked to fit the
    model's positions."""
    positions = getattr(config, "max_position_embeddings", None)
    length = cfg.max_seq_length
    if length is None:
        saved = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else None
        length = min(n for n in (saved, positions, None if saved else DEFAULT_SEQ_LEN) if n)
    if positions is not None and length > positions:
        raise UserError(f"max_seq_length {length} is larger than model {cfg.model_name_or_path}'s "
                        f"max_position_embeddings {positions}")  # fmt: skip
    if cfg.doc_stride is not None and not 0 <= cfg.doc_stride < length // 2:
        raise UserError(f"finetune: doc_stride must be in [0, max_seq_length / 2), got {cfg.doc_stride}")
    return length


def _check_compatible(cfg: FinetuneConfig, config: transformers.PretrainedConfig, tokenizer: Any) -> None:
    vocab = getattr(config, "vocab_size", None)
    if vocab is not None and len(tokenizer) > vocab:
        raise UserError(
            f"tokenizer {cfg.tokenizer_name or cfg.model_name_or_path} has {len(tokenizer)} tokens but model "
            f"{cfg.model_name_or_path} has a vocabulary of {vocab}: they do not belong together"
        )


def check_same_tokenizer(cfg: FinetuneConfig) -> None:
    """A `tokenizer` given besides a local model that has its own must be that tokenizer (same vocabulary,
    normaliser and pre-tokenizer), else the ids mean other words; from scratch, any tokenizer may be used."""
    if (
        cfg.from_scratch
        or not Path(cfg.model_name_or_path).is_dir()
        or not Path(str(cfg.tokenizer_name)).is_dir()
    ):
        return
    own, given = tokenizer_fingerprint(cfg.model_name_or_path), tokenizer_fingerprint(str(cfg.tokenizer_name))
    if own is not None and given is not None and own != given:
        raise UserError(
            f"tokenizer {cfg.tokenizer_name} is not the tokenizer of model {cfg.model_name_or_path} (their vocabularies or "
            "normalisers differ); leave 'tokenizer' unset to use the model's own"
        )


def build_classifier(cfg: FinetuneConfig, config: transformers.PretrainedConfig) -> PreTrainedModel:
    """The pretrained encoder with a fresh head, or the same architecture from scratch (seeded)."""
    transformers.set_seed(cfg.seed)
    if cfg.from_scratch:
        return AutoModelForSequenceClassification.from_config(config)
    try:
        return AutoModelForSequenceClassification.from_pretrained(cfg.model_name_or_path, config=config)
    except (OSError, ValueError) as e:
        raise _not_found(cfg.model_name_or_path, "model", e) from None


# --- training -----------------------------------------------------------------------------------------


class _KeepBest(TrainerCallback):
    """Keep (in CPU memory) the weights of the evaluation with the best `metric`."""

    def __init__(self, metric: str):
        self.key = f"eval_{metric}"
        self.greater = metric not in metrics.LOWER_IS_BETTER
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
    gpu = on_gpu(cfg)
    if cfg.fp16 is not None or cfg.bf16 is not None:
        return bool(cfg.fp16), bool(cfg.bf16)
    if not gpu:
        return False, False
    bf16 = torch.cuda.is_bf16_supported()
    return not bf16, bf16


def _training_args(
    cfg: FinetuneConfig, scratch: Path, n_train: int, has_validation: bool
) -> TrainingArguments:
    """The Trainer's arguments: the config's, plus what fine-tuning works out (precision, more steps for a
    small training set, evaluation only when there is validation data, a log line every 5% of the run)."""
    fp16, bf16 = _precision(cfg)
    steps_per_epoch = math.ceil(n_train / (cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps))
    total_steps = max(1, math.ceil(steps_per_epoch * cfg.num_train_epochs))
    max_steps = cfg.max_steps
    if max_steps <= 0 and total_steps < cfg.min_train_steps:  # few labels: more epochs, not too few steps
        max_steps = total_steps = cfg.min_train_steps
    if not has_validation:
        eval_strategy = "no"
    elif cfg.eval_steps:
        eval_strategy = "steps"
    else:
        eval_strategy = cfg.eval_strategy
    return trainer_arguments(
        cfg,
        output_dir=str(scratch),
        eval_strategy=eval_strategy,
        logging_steps=cfg.logging_steps or max(1, total_steps // 20),
        max_steps=max_steps,
        fp16=fp16,
        bf16=bf16,
        include_num_input_tokens_seen="all" if _counts_padding(cfg) else "non_padding",
        train_sampling_strategy=train_sampling_strategy(cfg, on_gpu(cfg)),  # group_by_length on a GPU
    )


def _counts_padding(cfg: FinetuneConfig) -> bool:
    """Whether the tokens trained on are counted with their padding (`include_num_input_tokens_seen: all`,
    as the user asked), rather than the non-padding ones (the default: throughput and MFU count those)."""
    return cfg.include_num_input_tokens_seen in (True, "all")


def _metric_fn(names: list[str], problem_type: str):
    def compute(pred: transformers.EvalPrediction) -> dict[str, float]:
        logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
        if problem_type == MULTI_LABEL:
            return metrics.compute_multi_label(names, logits, pred.label_ids)
        if problem_type == REGRESSION:
            return metrics.compute_regression(names, logits, pred.label_ids)
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


def write_predictions(
    path: Path,
    logits: np.ndarray,
    labels: np.ndarray,
    label_names: list[str],
    problem_type: str = SINGLE_LABEL,
) -> None:
    """predictions.jsonl: each example's label, prediction and (classification) label probabilities; a
    multi-label example's label and prediction are lists of names (those with probability >= 0.5)."""
    with open(path, "w", encoding="utf-8") as f:
        for i, row in enumerate(_prediction_rows(logits, labels, label_names, problem_type)):
            f.write(json.dumps({"index": i, **row}, ensure_ascii=False) + "\n")


def _prediction_rows(logits: np.ndarray, labels: np.ndarray, names: list[str], problem_type: str):
    if problem_type == REGRESSION:
        for p, y in zip(logits.reshape(-1), labels.reshape(-1)):
            yield {"label": float(y), "prediction": round(float(p), 6)}
        return
    if problem_type == MULTI_LABEL:
        probs = metrics.problems.sigmoid(logits)
        for p, y in zip(probs, labels):
            yield {
                "label": [n for n, v in zip(names, y) if v >= 0.5],
                "prediction": [n for n, q in zip(names, p) if q >= metrics.problems.THRESHOLD],
                "probabilities": {n: round(float(q), 6) for n, q in zip(names, p)},
            }
        return
    for p, y in zip(_softmax(logits.astype(np.float64)), labels):
        yield {
            "label": names[int(y)],
            "prediction": names[int(p.argmax())],
            "probabilities": {n: round(float(q), 6) for n, q in zip(names, p)},
        }


INPUTS = ("model_name_or_path", "tokenizer_name", "train_file", "validation_file", "test_file")


def _write_step(folder: Path, cfg: FinetuneConfig) -> None:
    write_step_metadata(folder, STEP, cfg, {k: getattr(cfg, k) for k in INPUTS})


# --- the steps of a run -------------------------------------------------------------------------------


@dataclass
class _Task:
    """The labelled data of a run: all training examples, the subset trained on, validation/test by role,
    the labels as the data spells them (`label_map`, in id order; none for regression) and their names."""

    train_full: datasets.Dataset
    train: datasets.Dataset
    evals: dict[str, datasets.Dataset]
    label_map: list[str]
    label_names: list[str]


def _load_task(cfg: FinetuneConfig) -> _Task:
    """Read and check the labelled data (before any model is loaded, so these cheap checks fail first)."""
    train_full = load_split(cfg, cfg.train_file)
    label_map = (
        [] if cfg.problem_type == REGRESSION else labelled_data.build_label_map(train_full[cfg.label_column])
    )
    if cfg.problem_type != REGRESSION and len(label_map) < 2:
        raise UserError(f"{cfg.train_file}: found {len(label_map)} label(s); classification needs at least 2")
    if any(m in metrics.BINARY_ONLY for m in cfg.reported_metrics) and len(label_map) != 2:
        raise UserError(
            f"finetune: metric 'f1' is binary but {cfg.train_file} has {len(label_map)} labels; use f1_macro"
        )
    evals: dict[str, datasets.Dataset] = {}
    for split, spec in (("validation", cfg.validation_file), ("test", cfg.test_file)):
        if spec:
            evals[split] = load_split(cfg, spec)
            if label_map:
                labelled_data.check_labels(evals[split], cfg.label_column, label_map, spec)
    train = labelled_data.stratified_subset(
        train_full,
        cfg.label_column,
        fraction=cfg.label_fraction,
        max_samples=cfg.max_train_samples,
        seed=cfg.seed,
        stratify=cfg.problem_type == SINGLE_LABEL,
    )
    if cfg.problem_type == SINGLE_LABEL:
        labelled_data.warn_missing_labels(train, cfg.label_column, label_map, cfg.train_file)
    return _Task(train_full, train, evals, label_map, _label_names(cfg, label_map))


def _label_names(cfg: FinetuneConfig, label_map: list[str]) -> list[str]:
    """`class_names` checked against the labels of the training data (default: the labels themselves; for
    regression, the label column's name)."""
    default = [cfg.label_column] if cfg.problem_type == REGRESSION else label_map
    names = cfg.class_names
    if names is None:
        return default
    if len(names) != len(default):
        what = "1 score (regression)" if cfg.problem_type == REGRESSION else (
            f"{len(label_map)} labels ({', '.join(label_map)})")  # fmt: skip
        raise UserError(
            f"finetune: class_names has {len(names)} name(s) but {cfg.train_file} has {what}: "
            "give one name per label, in this order"
        )
    if len(set(names)) != len(names):
        raise UserError(f"finetune: class_names repeats a name: {', '.join(names)}")
    return list(names)


def _load_model(cfg: FinetuneConfig, label_names: list[str]) -> tuple[PreTrainedModel, Any, int]:
    """The classifier (pretrained or from scratch), its tokenizer, checked to belong together, and the
    sequence length to use."""
    check_model_folder(cfg.model_name_or_path)
    if cfg.tokenizer_name:
        check_same_tokenizer(cfg)
    config = load_classifier_config(cfg.model_name_or_path, label_names, cfg.problem_type)
    # BERT-style models have segment embeddings: make the tokenizer (and the saved copy) emit their ids, so
    # pairs are encoded the same way in training and at inference
    segments = getattr(config, "type_vocab_size", 1) > 1
    tokenizer = load_tokenizer(cfg.tokenizer_name or cfg.model_name_or_path, segments)
    _check_compatible(cfg, config, tokenizer)
    return build_classifier(cfg, config), tokenizer, sequence_length(cfg, config, tokenizer)


def _train(
    cfg: FinetuneConfig, model: PreTrainedModel, tokenizer: Any, train_tok: datasets.Dataset,
    evals_tok: dict[str, datasets.Dataset], scratch: Path,
) -> tuple[Trainer, Any, _KeepBest | None, tuple[float, str]]:  # fmt: skip
    """Train with `Trainer`, a line per validation; with `metric_for_best_model`, end with the best
    evaluation's weights. Also returns the peak FLOP/s of one device (measured before training on a CPU)."""
    args = _training_args(cfg, scratch, len(train_tok), "validation" in evals_tok)
    keep_best = _KeepBest(cfg.metric_for_best_model) if cfg.metric_for_best_model else None
    destroy_process_group_at_exit()  # TrainingArguments may have started one (torchrun)
    collator = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if args.fp16 or args.bf16 else None)
    tuner = cpu_thread_tuner(cfg, args.world_size)
    trainer = LengthGroupedTrainer(  # a Trainer whose length grouping leaves evaluation in order
        model=model,
        args=args,
        train_dataset=train_tok,
        eval_dataset=evals_tok.get("validation"),
        processing_class=tokenizer,
        data_collator=CountTokens(collator, tuner) if tuner else collator,
        compute_metrics=_metric_fn(cfg.reported_metrics, cfg.problem_type),
        callbacks=[c for c in (keep_best, tuner) if c],
    )
    install_progress(trainer, label=f"fine-tune ({'from scratch' if cfg.from_scratch else 'pretrained'})")
    if "validation" in evals_tok:  # after keep_best, which decides what is best
        is_best = (lambda state: keep_best.step == state.global_step) if keep_best is not None else None
        trainer.add_callback(EvaluationLines(cfg.reported_metrics, is_best))
    peak = device_peak(args.device)  # once, before training, with the run's thread count
    train_out = trainer.train()
    if keep_best is not None and keep_best.state is not None:
        trainer.model.load_state_dict(keep_best.state)
    return trainer, train_out, keep_best, peak


def _speed(
    cfg: FinetuneConfig,
    trainer: Trainer,
    train_tok: datasets.Dataset,
    train_out: Any,
    peak: tuple[float, str],
) -> dict[str, Any]:
    """Tokens trained on (the non-padding ones, unless `include_num_input_tokens_seen: all` counts the
    padding too), tokens/s over the training time less the evaluations', and the model FLOP utilisation
    (`mlm.flops.classifier_flops_per_token` at the token-weighted mean length of the training inputs, the
    length the attention of a token spans)."""
    from mlm.flops import classifier_flops_per_token, utilisation

    history = trainer.state.log_history
    evaluating = sum(h.get("eval_runtime", 0.0) for h in history if "eval_runtime" in h)
    seconds = max(1e-9, train_out.metrics.get("train_runtime", 0.0) - evaluating)
    tokens = int(trainer.state.num_input_tokens_seen or 0)
    lengths = np.array([len(ids) for ids in train_tok["input_ids"]], dtype=np.float64)
    seq_len = max(1, round(float((lengths**2).sum() / lengths.sum()))) if lengths.sum() else 1
    config = trainer.model.config
    flops = classifier_flops_per_token(config, seq_len, config.num_labels)
    return {
        "train_tokens": tokens,
        "train_tokens_counted": "padded" if _counts_padding(cfg) else "non-padding",
        "train_tokens_per_second": tokens / seconds,
        "train_seconds": seconds,
        **utilisation(flops, tokens / seconds, peak, devices=trainer.args.world_size),
    }


def _training_results(
    cfg: FinetuneConfig, task: _Task, train_tok: datasets.Dataset, train_out: Any, keep_best: _KeepBest | None
) -> dict[str, Any]:
    """What metrics.json says of the run and its training."""
    results: dict[str, Any] = {
        "model": cfg.model_name_or_path,
        "tokenizer": cfg.tokenizer_name or cfg.model_name_or_path,
        "from_scratch": cfg.from_scratch,
        "problem_type": cfg.problem_type,
        "num_labels": len(task.label_names),
        "labels": task.label_names,
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
    label_names: list[str],
    out: Path,
) -> dict[str, Any]:
    """Metrics of each evaluation split; predictions.jsonl for the test split (else validation)."""
    results: dict[str, Any] = {}
    for split, ds in evals_tok.items():
        prefix = "eval" if split == "validation" else "test"
        logits, label_ids, values = _predict(cfg, trainer, ds, prefix)
        results[split] = {
            **{m: values[m] for m in cfg.reported_metrics},
            "loss": values.get("loss"),
            "samples": len(label_ids),
            "runtime": values.get("runtime"),
        }
        if split == "test" or "test" not in evals_tok:
            results["predictions_of"] = split
            write_predictions(out / "predictions.jsonl", logits, label_ids, label_names, cfg.problem_type)
    results.setdefault("predictions_of", None)
    return results


def _predict(
    cfg: FinetuneConfig, trainer: Trainer, ds: datasets.Dataset, prefix: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Logits, labels and metrics (loss, runtime, ...) of each example of `ds`; with `chunks`, of each
    document, its logits the mean of its windows'."""
    pred = trainer.predict(ds, metric_key_prefix=prefix)
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    values = _clean(prefix, pred.metrics)
    if long_text.DOC not in ds.column_names:
        return logits, pred.label_ids, values
    logits, label_ids = long_text.document_logits(logits, pred.label_ids, ds[long_text.DOC])
    values.update(
        _metric_fn(cfg.reported_metrics, cfg.problem_type)(transformers.EvalPrediction(logits, label_ids))
    )
    values["loss"] = long_text.document_loss(logits, label_ids, cfg.problem_type)
    return logits, label_ids, values


def _split_names(cfg: FinetuneConfig) -> dict[str, str]:
    """Role (validation, test) -> the split's real name: the `@SPLIT` of a Hub or built-in spec, else the role."""
    specs = {"validation": cfg.validation_file, "test": cfg.test_file}
    names = {role: spec_parts(spec)[1] or role for role, spec in specs.items() if spec}
    return names if len(set(names.values())) == len(names) else {role: role for role in names}


def _base_model(cfg: FinetuneConfig, base: RunRecord) -> str:
    """The base model as the card names it: its Hub id, else its folder's name (never a local path)."""
    if base.repo_id:
        return base.repo_id
    return (
        Path(cfg.model_name_or_path).resolve().name
        if Path(cfg.model_name_or_path).exists()
        else cfg.model_name_or_path
    )


def finetune_record(
    cfg: FinetuneConfig,
    model: PreTrainedModel,
    trainer: Trainer,
    results: dict[str, Any],
    example: str | None = None,
) -> RunRecord:
    """The fine-tuned model's run record: the base model's corpus, tokenizer and objective (from its
    run_info.json, in a folder or on the Hub; unless trained from scratch), this run's model and training,
    its metrics under the real split names, and `example` (a text of the task) for the card's widget."""
    base = RunRecord.of_model(cfg.model_name_or_path)
    specs = [s for s in (cfg.train_file, cfg.validation_file, cfg.test_file) if s]
    return RunRecord(
        kind="finetune",
        repo_id=cfg.hub_model_id,
        license=cfg.license or base.license,
        language=cfg.language or base.language,
        datasets=list(dict.fromkeys([*(cfg.datasets or []), *(base.datasets or [])])) or None,
        corpus=CorpusFacts() if cfg.from_scratch else base.corpus,
        tokenizer=base.tokenizer,
        model=_model_facts(cfg, model, base),
        objective=ObjectiveFacts() if cfg.from_scratch else base.objective,
        training=_training_facts(cfg, trainer.args, results),
        finetune=FinetuneFacts(
            data=specs,
            datasets=cfg.datasets,
            example=example,
            base_model=_base_model(cfg, base),
            from_scratch=cfg.from_scratch,
            pipeline_tag="text-classification",
            problem_type=model.config.problem_type,
            label_names=results["labels"],
            train_samples=results["train_samples"],
            metrics={name: _scores(results[role]) for role, name in _split_names(cfg).items()},
        ),
    )


def _example(cfg: FinetuneConfig, task: _Task) -> str | None:
    """A validation (else test) text for the card's widget; none for sentence pairs (the widget takes one text)."""
    data = task.evals.get("validation") or task.evals.get("test")
    if data is None or cfg.text_pair_column:
        return None
    return labelled_data.example_text(data, cfg.text_column)


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


def _training_facts(cfg: FinetuneConfig, args: TrainingArguments, results: dict[str, Any]) -> TrainingFacts:
    train = results["train"]
    return TrainingFacts(
        steps=train["steps"],
        epochs=train["epochs"],
        batch_size=args.train_batch_size * args.gradient_accumulation_steps * args.world_size,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
        warmup=cfg.warmup_steps,
        hardware=describe_hardware(args.device.type == "cuda"),
        wall_time_s=train["runtime"],
        tokens_seen=results.get("train_tokens"),
        tokens_per_second=results.get("train_tokens_per_second"),
        tokens_counted=results.get("train_tokens_counted"),
        **{k: results.get(k) for k in SPEED_FACTS},
    )


# the facts of `mlm.flops.utilisation` the run record keeps
SPEED_FACTS = ("model_flops_per_token", "model_flops_per_second", "share_of_peak", "peak_flops", "peak_source",
               "devices")  # fmt: skip


def _scores(split_results: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in split_results.items() if k not in ("samples", "runtime") and v is not None}


def _save(
    cfg: FinetuneConfig, out: Path, trainer: Trainer, tokenizer: Any, results: dict[str, Any], task: _Task
) -> None:
    """Write the output folder: the model, tokenizer, run record and card (unless `save_model` is false),
    log history, metrics and step metadata."""
    if (out / "_trainer" / "runs").is_dir():  # TensorBoard logs (report_to tensorboard) stay
        os.replace(out / "_trainer" / "runs", out / "runs")
    shutil.rmtree(out / "_trainer", ignore_errors=True)
    if cfg.save_model:
        trainer.model.save_pretrained(out)
        save_tokenizer(tokenizer, out, model_max_length=cfg.max_seq_length)
        match_file_modes(out)
        record = finetune_record(cfg, trainer.model, trainer, results, _example(cfg, task))
        record.save(out)
        write_model_card(out, record, name=Path(cfg.output_dir).name)
    write_json(out / "log_history.json", trainer.state.log_history)
    write_json(out / "metrics.json", results)
    _write_step(out, cfg)


def finetune(cfg: FinetuneConfig) -> dict:
    """Train and evaluate a classifier as `cfg` says; write `cfg.output_dir`; return the metrics dict. It
    prints a line per validation and a summary of what it made at the end."""
    cfg.validate()
    with run_output():
        return _finetune(cfg)


def _finetune(cfg: FinetuneConfig) -> dict:
    inputs = {k: getattr(cfg, k) for k in INPUTS}
    check_output(cfg.output_dir, STEP, inputs)  # before any data or model is read
    if cfg.push_to_hub:
        from mlm.hub import check_can_push

        check_can_push(cfg.hub_model_id)  # before any work: no token, or offline
    started = time.time()
    task = _load_task(cfg)
    model, tokenizer, seq_len = _load_model(cfg, task.label_names)
    cfg = replace(cfg, max_seq_length=seq_len)  # the config as run (the caller's is left as written)
    train_tok = tokenize_split(task.train, cfg, tokenizer, task.label_map)
    evals_tok = {
        split: tokenize_split(ds, cfg, tokenizer, task.label_map) for split, ds in task.evals.items()
    }
    with output_folder(cfg.output_dir, STEP, inputs) as out:
        trainer, train_out, keep_best, peak = _train(
            cfg, model, tokenizer, train_tok, evals_tok, out / "_trainer"
        )
        results = _training_results(cfg, task, train_tok, train_out, keep_best)
        results.update(_speed(cfg, trainer, train_tok, train_out, peak))
        trainer.log({k: results[k] for k in TRACKED if results.get(k) is not None})  # to the trackers
        results.update(_evaluate_splits(cfg, trainer, evals_tok, task.label_names, out))
        results["device"] = str(trainer.args.device)
        results["runtime"] = time.time() - started
        _save(cfg, out, trainer, tokenizer, results, task)
    if cfg.push_to_hub:
        results["hub_push_failures"] = _push(cfg)
    if trainer.is_world_process_zero():
        print_summary(cfg, results)
    return results


# what the trackers (`report_to`) get at the end of training, through the Trainer's log
TRACKED = ("train_tokens_per_second", "model_flops_per_token", "model_flops_per_second", "share_of_peak")


def print_summary(cfg: FinetuneConfig, results: dict[str, Any]) -> None:
    """What the run made, on stdout: its training (epochs, steps, tokens/s, MFU), the epoch kept, the test
    metrics (else validation), the folder, and the command to share the model."""
    from mlm.model_card.text import fmt_duration, fmt_utilisation

    train = results["train"]
    mfu = fmt_utilisation(results.get("share_of_peak"), results.get("peak_flops"), results.get("peak_source"),
                          results.get("devices"))  # fmt: skip
    what = "from scratch" if cfg.from_scratch else "pretrained"
    lines = [
        f"fine-tune ({what}): {train['epochs'] or 0:.3g} epochs, {train['steps']:,} steps in "
        f"{fmt_duration(train['runtime'] or 0)}: {results['train_tokens_per_second']:,.0f} tokens/s "
        f"({results['train_tokens_counted']})" + (f", MFU {mfu}" if mfu else "")
    ]
    best = results.get("best")
    if best and best.get("step") is not None:
        lines.append(
            f"  kept: {at(best['step'], best['epoch'])} (best validation {best['metric']} {fmt_value(best['value'])})"
        )
    elif results.get("validation"):
        lines.append(f"  kept: the last {'epoch' if cfg.eval_strategy == 'epoch' else 'step'} "
                     "(metric_for_best_model keeps the best one)")  # fmt: skip
    for split in ("test", "validation"):
        scores = results.get(split)
        if scores:
            names = [*cfg.reported_metrics, "loss"]
            values = ", ".join(f"{m} {fmt_value(scores[m])}" for m in names if scores.get(m) is not None)
            lines.append(f"  {split}: {values} ({scores['samples']:,} examples)")
            break
    if cfg.save_model:
        lines.append(f"  model: {cfg.output_dir}")
        if cfg.push_to_hub and not results.get("hub_push_failures"):
            lines.append(f"  on the Hub: {cfg.hub_model_id}")
        else:
            lines.append(f"  share it: mlm push {shlex.quote(str(cfg.output_dir))} your-name/REPO")
    else:
        lines.append(
            f"  metrics: {Path(cfg.output_dir) / 'metrics.json'} (no model saved: save_model is false)"
        )
    for line in lines:
        say(line)


def _push(cfg: FinetuneConfig) -> list[str]:
    """Push the output folder to `hub_model_id`; a failure is a warning (the local model is complete)."""
    from mlm.hub import PushConfig, push

    try:
        push(PushConfig(folder=cfg.output_dir, repo_id=cfg.hub_model_id, private=cfg.hub_private_repo,
                        commit_message="End of training"))  # fmt: skip
    except UserError as e:
        line = f"{e}; push it later with `mlm push {cfg.output_dir} {cfg.hub_model_id}`"
        print(f"warning: hub push failed: {line}", file=sys.stderr)
        return [line]
    return []
