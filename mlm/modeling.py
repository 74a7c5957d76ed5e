"""The encoders: size presets x block types (BERT, ModernBERT), their options and configs, and building or
loading a masked-LM model (with the masked-only head of `mlm.heads`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM, PreTrainedModel

from data_prep.errors import UserError
from mlm.heads import BertForMaskedOnlyLM, ModernBertForMaskedOnlyLM

PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}

# BertConfig fields a recipe may override (besides the preset's own four).
OVERRIDE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "classifier_dropout",
)

# ModernBertConfig fields a recipe may override with architecture: modernbert (besides the preset's four)
MODERNBERT_OVERRIDE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_activation",
    "max_position_embeddings",
    "initializer_range",
    "norm_eps",
    "attention_dropout",
    "embedding_dropout",
    "mlp_dropout",
    "local_attention",
    "classifier_dropout",
    "classifier_pooling",
)
ARCHITECTURES = {
    "bert": (BertConfig, OVERRIDE_KEYS),
    "modernbert": (ModernBertConfig, MODERNBERT_OVERRIDE_KEYS),
}

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class ModelArguments:
    """The encoder to build: a size preset and overrides, or a checkpoint; attention kernel and head."""

    GROUP: ClassVar[str] = "model"

    architecture: str = field(
        default="bert",
        metadata={
            "help": "encoder blocks: bert, or modernbert (pre-LN, GeGLU, rotary, no biases, local/global attention)"
        },
    )
    preset: str = field(default="tiny", metadata={"help": "model size: " + ", ".join(PRESETS)})
    config_overrides: dict = field(
        default_factory=dict,
        metadata={"help": 'overrides of the preset\'s config, e.g. {"num_hidden_layers": 3}'},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "continue pretraining this masked-LM checkpoint (folder or Hub id) instead of random "
            "weights; pack the corpus with its tokenizer (`pack: tokenizer_dir` = the same)"
        },
    )
    masked_only_head: bool = field(
        default=True, metadata={"help": "score only the masked positions (fast); false = stock full head"}
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "attention kernel: " + ", ".join(ATTN_IMPLEMENTATIONS)}
    )
    pad_vocab_to_multiple_of: int = field(
        default=64, metadata={"help": "round the model's vocabulary up to a multiple of this (1 = off)"}
    )


def check_model_arguments(cfg: ModelArguments) -> None:
    """The model options' values (a UserError naming the first wrong one)."""
    check_model_options(cfg.preset, cfg.config_overrides, cfg.attn_implementation, cfg.architecture)
    if cfg.pad_vocab_to_multiple_of < 1:
        raise UserError(f"pad_vocab_to_multiple_of must be >= 1, got {cfg.pad_vocab_to_multiple_of}")


def check_model_options(
    preset: str, overrides: dict[str, Any], attn_implementation: str, architecture: str = "bert"
) -> None:
    """UserError for an unknown preset, architecture, override key or attention kernel, or an override of the
    wrong type."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if architecture not in ARCHITECTURES:
        raise UserError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    config_class, keys = ARCHITECTURES[architecture]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise UserError(f"unknown model override(s) {', '.join(unknown)}; valid keys: {', '.join(keys)}")
    defaults = config_class().to_dict()
    for key, value in overrides.items():
        _check_override(key, value, defaults.get(key))
    shape = {**PRESETS[preset], **overrides}
    if shape["hidden_size"] % shape["num_attention_heads"]:
        raise UserError(
            f"hidden_size {shape['hidden_size']} is not a multiple of num_attention_heads "
            f"{shape['num_attention_heads']}"
        )
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise UserError(
            f"unknown attn_implementation {attn_implementation!r}; choose one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
        )


_POSITIVE_INTS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "local_attention")  # fmt: skip
_PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                  "attention_dropout", "embedding_dropout", "mlp_dropout")  # fmt: skip
_POSITIVE_NUMBERS = ("initializer_range", "layer_norm_eps", "norm_eps")
_CHOICES = {"classifier_pooling": ("cls", "mean")}


def _check_override(key: str, value: Any, default: Any) -> None:
    """One model override: the type and range the config needs (a UserError naming it otherwise)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in ("hidden_act", "hidden_activation"):
        from transformers.activations import ACT2FN

        ok, want = isinstance(value, str) and value in ACT2FN, f"one of {', '.join(sorted(ACT2FN))}"
    elif key in _POSITIVE_INTS:
        ok, want = number and isinstance(value, int) and value >= 1, "a positive integer"
    elif key in _PROBABILITIES:
        ok = (value is None and key == "classifier_dropout") or (number and 0 <= value < 1)
        want = "a number in [0, 1)"
    elif key in _POSITIVE_NUMBERS:
        ok, want = number and 0 < value < float("inf"), "a positive number"
    elif key in _CHOICES:
        ok, want = value in _CHOICES[key], f"one of {', '.join(_CHOICES[key])}"
    else:  # of the default's type
        kind = type(default if default is not None else value)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        want = "a number" if kind in (int, float) else f"a {kind.__name__}"
    if not ok:
        raise UserError(f"config_overrides: {key} should be {want}, got {value!r}")


def geglu_width(intermediate_size: int) -> int:
    """A GeGLU feed-forward width with the parameters of a plain one `intermediate_size` wide (2/3 of it,
    in multiples of 64): ModernBERT at a BERT preset keeps the preset's size."""
    return max(64, 64 * round(intermediate_size * 2 / 3 / 64))


def build_config(
    preset: str,
    vocab_size: int,
    max_seq_length: int,
    pad_token_id: int = 0,
    overrides: dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    pad_vocab_to_multiple_of: int = 64,
    architecture: str = "bert",
    cls_token_id: int | None = None,
    sep_token_id: int | None = None,
) -> BertConfig | ModernBertConfig:
    """The model config of `architecture` at `preset`, with the vocabulary rounded up to a multiple of
    `pad_vocab_to_multiple_of`. ModernBERT also names its [CLS] (= bos) and [SEP] (= eos) ids: give them, or
    its defaults (ids of ModernBERT's own 50k vocabulary) are kept."""
    overrides = dict(overrides or {})
    check_model_options(preset, overrides, attn_implementation, architecture)
    if vocab_size < 1 or max_seq_length < 1:
        raise UserError(
            f"vocab_size and max_seq_length must be positive, got {vocab_size} and {max_seq_length}"
        )
    if pad_vocab_to_multiple_of > 1:
        vocab_size = -(-vocab_size // pad_vocab_to_multiple_of) * pad_vocab_to_multiple_of
    preset_values = dict(PRESETS[preset])
    if architecture == "modernbert":
        preset_values["intermediate_size"] = geglu_width(preset_values["intermediate_size"])
    kwargs: dict[str, Any] = {
        **preset_values,
        "max_position_embeddings": max(512, max_seq_length),
        **overrides,
    }
    if kwargs["max_position_embeddings"] < max_seq_length:
        raise UserError(
            f"max_position_embeddings {kwargs['max_position_embeddings']} is below max_seq_length {max_seq_length}"
        )
    if architecture == "modernbert":
        # a classifier on the mean of the token states, not [CLS]: MLM never trains [CLS] (no next-sentence
        # task), and on IMDB the mean scored 1-6 points higher after pretraining (BENCHMARKS.md, "The MLM plateau")
        kwargs.setdefault("classifier_pooling", "mean")
        named = {"cls_token_id": cls_token_id, "bos_token_id": cls_token_id,
                 "sep_token_id": sep_token_id, "eos_token_id": sep_token_id}  # fmt: skip
        kwargs.update({k: v for k, v in named.items() if v is not None})
    config_class = ARCHITECTURES[architecture][0]
    return config_class(
        vocab_size=vocab_size, pad_token_id=pad_token_id, attn_implementation=attn_implementation, **kwargs
    )


def build_model(config: BertConfig | ModernBertConfig, masked_only_head: bool = True) -> PreTrainedModel:
    """A freshly initialised MLM model. BERT: the masked-only head (fast) or the plain BertForMaskedLM.
    ModernBERT: its own sparse prediction (the head on masked positions only), fused with the loss on CPU
    (`ModernBertForMaskedOnlyLM`), or the plain `ModernBertForMaskedLM`."""
    if config.model_type == "modernbert":
        config.sparse_prediction = masked_only_head
        return (ModernBertForMaskedOnlyLM if masked_only_head else ModernBertForMaskedLM)(config)
    return (BertForMaskedOnlyLM if masked_only_head else BertForMaskedLM)(config)


def load_masked_lm(name: str, masked_only_head: bool = True) -> PreTrainedModel:
    """A masked-LM checkpoint (folder or Hub id: BERT, RoBERTa, ELECTRA generator, ModernBERT, ...) to continue
    pretraining; a BERT one gets the masked-only head. UserError when it cannot be loaded or has no
    masked-LM head."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(name)
        if config.model_type == "bert" and masked_only_head:
            model, info = BertForMaskedOnlyLM.from_pretrained(name, output_loading_info=True)
        else:
            load = AutoModelForMaskedLM.from_pretrained
            if config.model_type == "modernbert":
                config.sparse_prediction = masked_only_head
                load = ModernBertForMaskedOnlyLM.from_pretrained if masked_only_head else load
            model, info = load(name, config=config, output_loading_info=True)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"model_name_or_path: cannot load a masked-LM model from {name}: {str(e).splitlines()[0]}"
        ) from None
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise UserError(f"model_name_or_path: {name} has no masked-LM head (missing weights: {missing}, ...)")
    return model


def check_tokenizer_matches(
    config_or_model: BertConfig | PreTrainedModel, tokenizer: Any, where: str
) -> None:
    """Raise UserError when `tokenizer` does not fit the model's vocabulary or pad id; `where` names the folders."""
    config = getattr(config_or_model, "config", config_or_model)
    tok_name = getattr(tokenizer, "name_or_path", "") or "(tokenizer)"
    model_name = getattr(config, "_name_or_path", "") or "(model)"
    if len(tokenizer) > config.vocab_size:
        raise UserError(
            f"{where}: tokenizer {tok_name} has {len(tokenizer)} tokens but model {model_name} only "
            f"{config.vocab_size}; use the tokenizer the model was trained with"
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        raise UserError(
            f"{where}: tokenizer {tok_name} has pad id {tokenizer.pad_token_id} but model {model_name} "
            f"expects {config.pad_token_id}; use the tokenizer the model was trained with"
        )


def count_parameters(model: torch.nn.Module, exclude_embeddings: bool = False) -> int:
    """Number of unique parameters (tied weights once); optionally without the embedding tables."""
    skip = set()
    if exclude_embeddings:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)
