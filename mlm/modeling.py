"""BERT size presets and the masked-only prediction head used for fast pretraining."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from data_prep.errors import UserError

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

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


def build_config(
    preset: str,
    vocab_size: int,
    max_seq_length: int,
    pad_token_id: int = 0,
    overrides: dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    pad_vocab_to_multiple_of: int = 64,
) -> BertConfig:
    """A BertConfig for `preset`, with the vocabulary rounded up to a multiple of `pad_vocab_to_multiple_of`."""
    if preset not in PRESETS:
        raise UserError(f"unknown model preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(OVERRIDE_KEYS))
    if unknown:
        raise UserError(
            f"unknown model override(s) {', '.join(unknown)}; valid keys: {', '.join(OVERRIDE_KEYS)}"
        )
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise UserError(
            f"unknown attn_implementation {attn_implementation!r}; choose one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
        )
    if vocab_size < 1 or max_seq_length < 1:
        raise UserError(
            f"vocab_size and max_seq_length must be positive, got {vocab_size} and {max_seq_length}"
        )
    if pad_vocab_to_multiple_of > 1:
        vocab_size = -(-vocab_size // pad_vocab_to_multiple_of) * pad_vocab_to_multiple_of
    kwargs: dict[str, Any] = {
        **PRESETS[preset],
        "max_position_embeddings": max(512, max_seq_length),
        **overrides,
    }
    if kwargs["hidden_size"] % kwargs["num_attention_heads"]:
        raise UserError(
            f"hidden_size {kwargs['hidden_size']} is not a multiple of num_attention_heads "
            f"{kwargs['num_attention_heads']}"
        )
    if kwargs["max_position_embeddings"] < max_seq_length:
        raise UserError(
            f"max_position_embeddings {kwargs['max_position_embeddings']} is below max_seq_length {max_seq_length}"
        )
    return BertConfig(
        vocab_size=vocab_size, pad_token_id=pad_token_id, attn_implementation=attn_implementation, **kwargs
    )


class BertForMaskedOnlyLM(BertForMaskedLM):
    """BertForMaskedLM that, given labels, runs the prediction head on the masked positions only.

    Same modules and parameter names as BertForMaskedLM, and it saves as one: config.json says
    `BertForMaskedLM`, so `AutoModelForMaskedLM.from_pretrained` loads the folder without custom code.
    With labels, `logits` has shape (n_masked, vocab_size), rows in the order of `labels[labels != -100]`;
    without labels it scores every position like BertForMaskedLM (fill-mask, inference).
    """

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> MaskedLMOutput:
        hidden = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        ).last_hidden_state
        if labels is None:
            return MaskedLMOutput(logits=self.cls.predictions(hidden))
        labels = labels.reshape(-1)
        keep = labels != -100
        logits = self.cls.predictions(
            hidden.reshape(-1, hidden.size(-1))[keep]
        )  # transform + decoder (+ bias)
        loss = F.cross_entropy(logits.float(), labels[keep])
        return MaskedLMOutput(loss=loss, logits=logits)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        """Save exactly like BertForMaskedLM (config architectures included); push through `push_to_hub`."""
        hub_keys = ("repo_id", "commit_message", "create_pr", "private", "token")
        hub = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        self.config.architectures = ["BertForMaskedLM"]
        if is_main_process:
            self.config.save_pretrained(save_directory)
            if push_to_hub:
                self.push_to_hub(
                    hub.pop("repo_id", os.path.basename(os.path.normpath(save_directory))), **hub
                )


def build_model(config: BertConfig, masked_only_head: bool = True) -> PreTrainedModel:
    """A freshly initialised MLM model: the masked-only head (fast) or the plain BertForMaskedLM."""
    return (BertForMaskedOnlyLM if masked_only_head else BertForMaskedLM)(config)


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
