"""The typed record of a run (`run_info.json`): written by pretraining and fine-tuning, read by the model card,
`mlm evaluate` and the Hub code.

Every field is optional (None = not known), so a card can be written for any folder. Reading never fails on a
record: unknown keys and values of the wrong kind are dropped, missing ones stay None. Nothing here is a secret
or a local path: corpus and labelled-data specs keep only Hub dataset names and file *names*.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_prep.io import write_json

RUN_RECORD_NAME = "run_info.json"
_KEPT_SCHEMES = ("hf:", "builtin:")


def public_spec(spec: str) -> str:
    """A data spec as the record keeps it: `hf:` / `builtin:` specs as they are, a file or folder by name only."""
    spec = str(spec)
    if spec.startswith(_KEPT_SCHEMES):
        return spec
    return spec.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def hub_dataset_names(specs: list[str] | None) -> list[str]:
    """Hub dataset names in data specs (`hf:NAME[:CONFIG][@SPLIT]`), in order, without repeats."""
    names = [spec_parts(s)[0][3:].split(":", 1)[0] for s in specs or [] if s.startswith("hf:")]
    return list(dict.fromkeys(n for n in names if n))


def spec_parts(spec: str) -> tuple[str, str | None]:
    """(`hf:glue:sst2`, `validation`) for `hf:glue:sst2@validation`; a file spec has no split: (spec, None)."""
    if spec.startswith(_KEPT_SCHEMES) and "@" in spec:
        source, _, split = spec.partition("@")
        return source, split or None
    return spec, None


def describe_hardware(cuda: bool) -> str:
    """What a run trained on, as the card states it: the GPU's name, or the CPU's cores and machine type."""
    if cuda:
        import torch

        return torch.cuda.get_device_name(0)
    return f"CPU ({os.cpu_count()} cores, {platform.machine()})"


@dataclass
class CorpusFacts:
    spec: list[str] | None = None  # Hub dataset names and file names, never local folders
    documents: int | None = None
    tokens: int | None = None
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.spec is not None:
            self.spec = [public_spec(s) for s in self.spec]


@dataclass
class TokenizerFacts:
    kind: str | None = None
    vocab_size: int | None = None
    mask_token: str | None = None


@dataclass
class ModelFacts:
    architecture: str | None = None  # bert, modernbert, ...
    init_from: str | None = None  # continued pretraining: the starting checkpoint's Hub id or folder name
    preset: str | None = None
    num_hidden_layers: int | None = None
    hidden_size: int | None = None
    num_attention_heads: int | None = None
    parameters: int | None = None
    max_seq_length: int | None = None


@dataclass
class ObjectiveFacts:
    """What the pretraining objective says of itself on the card (from `Objective.card_facts`)."""

    name: str | None = None  # "mlm", "electra", ...
    description: str | None = None  # "masked language modelling"
    pipeline_tag: str | None = None  # what the exported checkpoint does: "fill-mask", ...
    facts: dict[str, str] = field(default_factory=dict)  # label -> text, e.g. {"Masking": "15% of tokens"}
    tags: list[str] = field(default_factory=list)  # Hub tags, e.g. ["masked-language-modeling"]
    # How the card names the objective's eval metrics: {"eval_loss": "MLM loss"}; others are humanized
    metric_labels: dict[str, str] = field(default_factory=dict)


@dataclass
class TrainingFacts:
    steps: int | None = None
    epochs: float | None = None
    tokens_seen: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    lr_scheduler_type: str | None = None
    warmup: float | None = None
    hardware: str | None = None
    wall_time_s: float | None = None
    # throughput and model FLOP utilisation (`mlm.flops.utilisation`): tokens/s (fine-tuning counts the
    # non-padding tokens, `tokens_counted` says so), model FLOPs per token and per second, their share of the
    # peak of `devices` devices, and where the peak comes from ("table: H100 SXM", "measured: 2 threads")
    tokens_per_second: float | None = None
    tokens_counted: str | None = None
    model_flops_per_token: float | None = None
    model_flops_per_second: float | None = None
    share_of_peak: float | None = None
    peak_flops: float | None = None
    peak_source: str | None = None
    devices: int | None = None


@dataclass
class FinetuneFacts:
    task: str | None = None
    data: list[str] | None = None  # Hub dataset names and file names of the labelled data: train, dev, test
    datasets: list[str] | None = None  # the Hub datasets the labelled data is, as the user named them
    example: str | None = None  # a text of the validation (else test) data: the widget example
    base_model: str | None = None  # the Hub id (or folder name) fine-tuned
    from_scratch: bool | None = None  # the base model's architecture with random weights
    pipeline_tag: str | None = None  # what the fine-tuned checkpoint does: "text-classification"
    problem_type: str | None = None  # single_label_classification, multi_label_classification, regression
    label_names: list[str] | None = None
    train_samples: int | None = None
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # split name -> metric -> value
    scratch_metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # same model from scratch

    def __post_init__(self) -> None:
        if self.data is not None:
            self.data = [public_spec(s) for s in self.data]


@dataclass
class RunRecord:
    kind: str = "pretrain"  # "pretrain" or "finetune"
    repo_id: str | None = None
    license: str | None = None
    language: list[str] | None = None
    datasets: list[str] | None = None
    corpus: CorpusFacts = field(default_factory=CorpusFacts)
    tokenizer: TokenizerFacts = field(default_factory=TokenizerFacts)
    model: ModelFacts = field(default_factory=ModelFacts)
    objective: ObjectiveFacts = field(default_factory=ObjectiveFacts)
    training: TrainingFacts = field(default_factory=TrainingFacts)
    eval: dict[str, float] = field(default_factory=dict)  # pretraining eval metrics (eval_loss, ...)
    finetune: FinetuneFacts | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunRecord:
        """The record in `data` (a parsed run_info.json); unknown or ill-typed values are dropped."""
        return _build(cls, dict(data or {}))

    def save(self, folder: str | Path) -> Path:
        """Write `folder/run_info.json` atomically (a new file renamed over the old: hard links keep theirs)."""
        path = Path(folder) / RUN_RECORD_NAME
        write_json(path, self.to_dict())
        return path

    @classmethod
    def of_model(cls, model: str | Path) -> RunRecord:
        """The record of a model to start from: a local folder's run_info.json, else the one in the Hub repo
        `model` names. An empty record when it has none (a model trained elsewhere); one that cannot be read
        is named in a warning."""
        if Path(model).is_dir():
            return cls.load(model)
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, RemoteEntryNotFoundError

        try:
            return cls.load(Path(hf_hub_download(str(model), RUN_RECORD_NAME)).parent)
        except RemoteEntryNotFoundError:
            return cls()
        except (OSError, ValueError, EntryNotFoundError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(f"warning: could not read {RUN_RECORD_NAME} of {model} ({reason}); its pretraining facts "
                  "are left out of the card", file=sys.stderr)  # fmt: skip
            return cls()

    @classmethod
    def load(cls, folder: str | Path) -> RunRecord:
        """The record in `folder`; an empty record when it is absent or unreadable (a warning on stderr)."""
        path = Path(folder) / RUN_RECORD_NAME
        if not path.is_file():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            print(f"warning: ignoring {path}: not valid JSON ({exc})", file=sys.stderr)
            return cls()
        if not isinstance(data, dict):
            print(f"warning: ignoring {path}: expected a JSON object", file=sys.stderr)
            return cls()
        return cls.from_dict(data)


# ---- a folder without a record ---------------------------------------------------------------------------------
# A model folder with no run_info.json (one this package did not write) says only its architecture: a
# `*ForMaskedLM` checkpoint was trained by masked language modelling.
MASKED_LM_OBJECTIVE = {
    "name": "mlm",
    "description": "masked language modelling",
    "pipeline_tag": "fill-mask",
    "tags": ["masked-language-modeling"],
    "metric_labels": {
        "eval_loss": "MLM loss",
        "perplexity": "Perplexity",
        "masked_accuracy": "Masked-token accuracy",
    },
}


def legacy_objective(architecture: str | None) -> ObjectiveFacts:
    """The objective a checkpoint with no record implies: masked language modelling for a `*ForMaskedLM`."""
    if architecture and architecture.endswith("ForMaskedLM"):
        return _build(ObjectiveFacts, MASKED_LM_OBJECTIVE)
    return ObjectiveFacts()


# ---- building dataclasses from JSON ----------------------------------------------------------------------------
def _build(cls: type, data: dict[str, Any]) -> Any:
    """`cls(**data)` for the keys `cls` knows, nested dataclasses built likewise; values of the wrong kind
    are dropped (a damaged or hand-edited record must never stop a card from being written)."""
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data or data[f.name] is None:
            continue
        value = _value(hints[f.name], data[f.name])
        if value is not _DROP:
            kwargs[f.name] = value
    return cls(**kwargs)


_DROP = object()


def _value(tp: Any, value: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)] if _is_optional(tp) else [tp]
    tp = args[0]
    if dataclasses.is_dataclass(tp):
        return _build(tp, value) if isinstance(value, dict) else _DROP
    origin = typing.get_origin(tp) or tp
    if origin is list:
        if isinstance(value, str):
            return [value]
        return [str(v) for v in value] if isinstance(value, list) else _DROP
    if origin is dict:
        return {str(k): v for k, v in value.items()} if isinstance(value, dict) else _DROP
    if tp is bool:
        return value if isinstance(value, bool) else _DROP
    if tp is float:
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _DROP
    if tp is int:
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _DROP
    if tp is str:
        return str(value) if isinstance(value, (str, int, float)) else _DROP
    return value


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)
