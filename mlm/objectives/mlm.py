"""Masked language modelling (BERT): predict the tokens hidden by the masking collator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import PretrainedConfig, PreTrainedModel

from mlm.masking import MaskingCollator, MaskingConfig
from mlm.objectives import Objective, register
from mlm.run_record import ObjectiveFacts


def masked_argmax(logits: Any, labels: torch.Tensor) -> torch.Tensor:
    """Predicted ids shaped like `labels` (-100 off the masked positions): eval never holds vocab-sized logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    if logits.dim() == 3:  # full head: (batch, seq, vocab)
        return logits.argmax(-1).masked_fill(labels == -100, -100)
    preds = torch.full_like(labels, -100)  # masked-only head: (n_masked, vocab), rows in label order
    preds[labels != -100] = logits.argmax(-1)
    return preds


def masked_accuracy(eval_pred: Any) -> dict[str, float]:
    preds = np.asarray(eval_pred.predictions)
    labels = np.asarray(eval_pred.label_ids)
    masked = labels != -100
    return {"masked_accuracy": float((preds[masked] == labels[masked]).mean()) if masked.any() else 0.0}


def perplexity(eval_loss: float | None) -> float | None:
    return float(np.exp(min(eval_loss, 50.0))) if eval_loss is not None else None


def masking_collator(cfg: Any, tokenizer: Any, seed: int | None) -> MaskingCollator:
    """The masking collator for the masking options of `cfg` and `tokenizer`'s special tokens."""
    return MaskingCollator(
        MaskingConfig.of(cfg),
        vocab_size=len(tokenizer),
        mask_token_id=tokenizer.mask_token_id,
        pad_token_id=tokenizer.pad_token_id,
        special_token_ids=sorted(set(tokenizer.all_special_ids)),
        seed=seed,
    )


def masking_text(masking: MaskingConfig) -> str:
    """How the masking is described on the model card."""
    rate = f"{masking.mlm_probability:.0%}"
    if masking.mlm_probability_final is not None:
        rate += f" falling to {masking.mlm_probability_final:.0%}"
    rate += " of " + ("whole words" if masking.whole_word_mask else "tokens")
    kept = 1 - masking.mask_replace_prob - masking.random_replace_prob
    split = (
        f"{masking.mask_replace_prob:.0%} [MASK] / {masking.random_replace_prob:.0%} random / {kept:.0%} kept"
    )
    fixed = ", the same count in every sequence" if masking.fixed_count_masking else ""
    spans = f", in spans of {masking.mask_span_mean:g} on average" if masking.mask_span_mean > 1 else ""
    return f"{rate}{spans} ({split}){fixed}"


@register
class MaskedLanguageModelling(Objective):
    """BERT's objective; the model is `BertForMaskedOnlyLM` (scores only the masked positions) or the stock
    `BertForMaskedLM`, and `final/` is a plain `BertForMaskedLM` either way (fill-mask works)."""

    name = "mlm"
    description = "masked language modelling"

    def build_model(self, model_config: PretrainedConfig) -> PreTrainedModel:
        from mlm.modeling import build_model

        return build_model(model_config, masked_only_head=self.cfg.masked_only_head)

    def from_pretrained(self, name: str) -> PreTrainedModel:
        from mlm.modeling import load_masked_lm

        return load_masked_lm(name, masked_only_head=self.cfg.masked_only_head)

    def collator(self, seed: int | None) -> MaskingCollator:
        return masking_collator(self.cfg, self.tokenizer, seed)

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        return masked_accuracy(eval_pred)

    def preprocess_logits_for_metrics(self, logits: Any, labels: torch.Tensor) -> torch.Tensor:
        return masked_argmax(logits, labels)

    def summary(self, eval_metrics: dict[str, float]) -> dict[str, float | None]:
        loss = eval_metrics.get("eval_loss")
        return {
            "eval_loss": loss,
            "perplexity": perplexity(loss),
            "masked_accuracy": eval_metrics.get("eval_masked_accuracy"),
        }

    def card_facts(self) -> ObjectiveFacts:
        return ObjectiveFacts(
            name=self.name,
            description=self.description,
            pipeline_tag="fill-mask",
            facts={"Masking": masking_text(MaskingConfig.of(self.cfg))},
            tags=["masked-language-modeling"],
            metric_labels={
                "eval_loss": "MLM loss",
                "perplexity": "Perplexity",
                "masked_accuracy": "Masked-token accuracy",
            },
        )
