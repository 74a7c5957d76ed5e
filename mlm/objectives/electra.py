"""ELECTRA (Clark et al., 2020): replaced-token detection, a loss on every position instead of 15% of them.

A small generator (`ElectraForMaskedLM`, a fraction of the discriminator's width, sharing its embeddings)
fills the masked positions with sampled tokens; the discriminator (`ElectraForPreTraining`) tells, at every
position, whether the token is the original. Loss = generator MLM loss + `discriminator_weight` x
discriminator loss. `final/` is the discriminator (fine-tune it with `AutoModelForSequenceClassification`);
the generator is kept in `final/generator/` for fill-mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import ElectraConfig, ElectraForMaskedLM, ElectraForPreTraining, PretrainedConfig
from transformers.utils import ModelOutput

from data_prep.errors import UserError
from mlm.cpu.kernels import use_cpu_training_kernels
from mlm.heads import SavesAsNative
from mlm.masking import MaskingCollator, MaskingConfig
from mlm.objectives import Objective, register
from mlm.objectives.mlm import masking_text
from mlm.run_record import ObjectiveFacts

GENERATOR_DIR = "generator"
_SHARED = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
           "LayerNorm.weight", "LayerNorm.bias")  # fmt: skip
# eval statistics each batch returns (summed over the evaluation set by `ElectraObjective.compute_metrics`)
STATS = ("generator_correct", "masked", "discriminator_correct", "positions", "replaced", "replaced_found")


@dataclass
class ElectraOptions:
    """ELECTRA's own settings (`objective_options`); the paper's defaults. The mask rate is `mlm_probability`."""

    generator_size: float = field(default=0.25, metadata={"help": "generator width / discriminator width"})
    discriminator_weight: float = field(default=50.0, metadata={"help": "weight of the discriminator loss"})

    def validate(self) -> None:
        if not 0 < self.generator_size <= 1:
            raise UserError(f"generator_size must be in (0, 1], got {self.generator_size}")
        if not self.discriminator_weight > 0:
            raise UserError(f"discriminator_weight must be positive, got {self.discriminator_weight}")


@dataclass
class ElectraPretrainingOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None  # eval: the batch's STATS, shape (1, len(STATS))


def electra_configs(bert: PretrainedConfig, generator_size: float) -> tuple[ElectraConfig, ElectraConfig]:
    """(discriminator, generator) configs at the size of a BertConfig preset; the generator is
    `generator_size` as wide (hidden, heads, feed-forward) and reads the discriminator's embeddings."""
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "max_position_embeddings",
            "type_vocab_size", "initializer_range", "layer_norm_eps", "pad_token_id")  # fmt: skip
    base = {k: getattr(bert, k) for k in keys}
    disc = ElectraConfig(**base, embedding_size=bert.hidden_size)
    heads = max(1, round(bert.num_attention_heads * generator_size))
    hidden = max(heads, round(bert.hidden_size * generator_size / heads) * heads)
    intermediate = max(1, round(bert.intermediate_size * generator_size))
    gen = ElectraConfig(
        **{**base, "hidden_size": hidden, "num_attention_heads": heads, "intermediate_size": intermediate},
        embedding_size=bert.hidden_size,
    )
    disc._attn_implementation = gen._attn_implementation = bert._attn_implementation
    return disc, gen


class ElectraWithGenerator(SavesAsNative, ElectraForPreTraining):
    """The discriminator (`ElectraForPreTraining`, its parameters named as that class's) holding the generator
    under `generator.`, which shares the discriminator's embedding module and ties its output layer to them.

    Saved, the folder loads as `ElectraForPreTraining` or `AutoModelForSequenceClassification` (the
    `generator.` weights are ignored there, kept for resuming). Forward with `labels` (the masked-LM labels of
    the collator) returns the ELECTRA loss; without, the discriminator's logits."""

    native_architecture = "ElectraForPreTraining"

    def __init__(self, config: ElectraConfig, generator_config: ElectraConfig, weight: float = 50.0) -> None:
        super().__init__(config)
        self.weight = weight
        self.generator = ElectraForMaskedLM(generator_config)
        self.generator.electra.embeddings = self.electra.embeddings
        self.generator.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight
        self._tied_weights_keys = {
            f"generator.electra.embeddings.{n}": f"electra.embeddings.{n}" for n in _SHARED
        }
        self._tied_weights_keys["generator.generator_lm_head.weight"] = (
            "electra.embeddings.word_embeddings.weight"
        )
        self.post_init()  # again, now that the generator exists: ties and declares the shared weights
        use_cpu_training_kernels(self)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if labels is None:
            return super().forward(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
        masked = labels != -100
        targets = labels[masked]
        hidden = self.generator.electra(input_ids, attention_mask=attention_mask).last_hidden_state[masked]
        logits = self.generator.generator_lm_head(self.generator.generator_predictions(hidden))
        generator_loss = F.cross_entropy(logits.float(), targets)
        with torch.no_grad():  # sample the replacements (Gumbel-max: one draw per masked position)
            noise = -torch.log(-torch.log(torch.rand_like(logits, dtype=torch.float32).clamp_(1e-9, 1.0)))
            sampled = (logits.float() + noise).argmax(-1)
            original = input_ids.clone()
            original[masked] = targets
            corrupted = original.clone()
            corrupted[masked] = sampled
            replaced = corrupted != original
        scores = self.discriminator_predictions(
            self.electra(corrupted, attention_mask=attention_mask).last_hidden_state
        )
        valid = attention_mask.bool() if attention_mask is not None else torch.ones_like(replaced)
        disc_loss = F.binary_cross_entropy_with_logits(scores[valid].float(), replaced[valid].float())
        loss = generator_loss + self.weight * disc_loss
        stats = None if self.training else _stats(logits, targets, scores, replaced, valid)
        return ElectraPretrainingOutput(loss=loss, logits=stats)


def _stats(logits, targets, scores, replaced, valid) -> torch.Tensor:
    guess = scores > 0
    values = (
        (logits.argmax(-1) == targets).sum(), targets.numel(), (guess == replaced)[valid].sum(), valid.sum(),
        replaced[valid].sum(), (guess & replaced)[valid].sum(),
    )  # fmt: skip
    return torch.tensor([[float(v) for v in values]])


@register
class ElectraObjective(Objective):
    """Replaced-token detection with a jointly trained generator (ELECTRA)."""

    name = "electra"
    description = "replaced-token detection (ELECTRA)"
    options = ElectraOptions

    def build_model(self, model_config: PretrainedConfig) -> ElectraWithGenerator:
        if getattr(model_config, "model_type", "bert") != "bert":
            raise UserError(f"objective 'electra' builds ELECTRA blocks; architecture '{model_config.model_type}' "
                            "is not supported with it (use architecture: bert)")  # fmt: skip
        disc, gen = electra_configs(model_config, self.opts.generator_size)
        return ElectraWithGenerator(disc, gen, weight=self.opts.discriminator_weight)

    def collator(self, seed: int | None) -> MaskingCollator:
        from mlm.objectives.mlm import masking_collator

        return masking_collator(self.cfg, self.tokenizer, seed)

    def preprocess_logits_for_metrics(self, logits: Any, labels: torch.Tensor) -> torch.Tensor:
        return logits[0] if isinstance(logits, tuple) else logits

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        total = dict(zip(STATS, np.asarray(eval_pred.predictions).reshape(-1, len(STATS)).sum(0)))
        return {
            "generator_accuracy": float(total["generator_correct"] / max(1.0, total["masked"])),
            "discriminator_accuracy": float(total["discriminator_correct"] / max(1.0, total["positions"])),
            "replaced_recall": float(total["replaced_found"] / max(1.0, total["replaced"])),
        }

    def summary(self, eval_metrics: dict[str, float]) -> dict[str, float | None]:
        keys = ("generator_accuracy", "discriminator_accuracy", "replaced_recall")
        return {
            "eval_loss": eval_metrics.get("eval_loss"),
            **{k: eval_metrics.get(f"eval_{k}") for k in keys},
        }

    def export(self, trainer: Any, folder: Path) -> None:
        """`folder`: the discriminator, as `ElectraForPreTraining`; `folder/generator`: the generator."""
        model = trainer.accelerator.unwrap_model(trainer.model)
        state = {k: v for k, v in model.state_dict().items() if not k.startswith("generator.")}
        discriminator = ElectraForPreTraining(model.config)
        discriminator.load_state_dict(state)
        discriminator.save_pretrained(str(folder))
        model.generator.save_pretrained(str(folder / GENERATOR_DIR))
        for target in (folder, folder / GENERATOR_DIR):
            self.tokenizer.save_pretrained(str(target))

    def card_facts(self) -> ObjectiveFacts:
        gen_hidden = round(self.opts.generator_size * 100)
        return ObjectiveFacts(
            name=self.name,
            description=self.description,
            pipeline_tag=None,
            facts={
                "Masking (generator input)": masking_text(MaskingConfig.of(self.cfg)),
                "Generator": f"{gen_hidden}% of the discriminator's width, in `{GENERATOR_DIR}/` (fill-mask)",
                "Discriminator loss weight": f"{self.opts.discriminator_weight:g}",
            },
            tags=["electra", "replaced-token-detection"],
            metric_labels={
                "eval_loss": "ELECTRA loss (generator + weighted discriminator)",
                "generator_accuracy": "Generator masked-token accuracy",
                "discriminator_accuracy": "Discriminator accuracy (all positions)",
                "replaced_recall": "Replaced tokens found",
            },
        )
