"""Dynamic masking for masked-language-model pretraining: which tokens to hide, and how."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from data_prep.errors import UserError


@dataclass
class MaskingConfig:
    """How the collator picks and corrupts the positions the model must predict."""

    GROUP: ClassVar[str] = "masking"  # an option group: checked with the config's other groups

    mlm_probability: float = field(
        default=0.15,
        metadata={"help": "Fraction of eligible (non-special, non-pad) tokens to predict, in (0, 1)."},
    )
    mask_replace_prob: float = field(
        default=0.8, metadata={"help": "Of the chosen positions, the fraction replaced by [MASK]."}
    )
    random_replace_prob: float = field(
        default=0.1,
        metadata={
            "help": "Of the chosen positions, the fraction replaced by a random token (the rest are kept)."
        },
    )
    whole_word_mask: bool = field(
        default=False,
        metadata={
            "help": "Mask whole words (all their pieces together); needs the packed `word_start` column."
        },
    )
    mlm_probability_final: float | None = field(
        default=None,
        metadata={
            "help": "mask rate at the end of training, reached linearly from mlm_probability (e.g. 0.3 -> "
            "0.15); needs batches made in the training process (dataloader_num_workers: 0, the CPU default)"
        },
    )
    mask_span_mean: float = field(
        default=1.0,
        metadata={
            "help": "mean length of the masked spans (geometric lengths, at most 10 tokens, or words with "
            "whole_word_mask); 1 = single tokens (or words)"
        },
    )
    fixed_count_masking: bool = field(
        default=False,
        metadata={
            "help": "Mask the same number of positions in every sequence of a batch (static shapes for "
            "torch.compile / CUDA graphs); token masking only."
        },
    )

    def validate(self) -> None:
        """Raise UserError on values that make no sense."""
        check_masking(self)

    @classmethod
    def of(cls, cfg: Any) -> MaskingConfig:
        """The masking options of a config that has them (a `PretrainConfig`)."""
        return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})


def check_masking(cfg: MaskingConfig) -> None:
    """Raise UserError on values that make no sense."""
    if not 0.0 < cfg.mlm_probability < 1.0:
        raise UserError(f"mlm_probability must be between 0 and 1 (exclusive), got {cfg.mlm_probability}")
    for name in ("mask_replace_prob", "random_replace_prob"):
        value = getattr(cfg, name)
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{name} must be between 0 and 1, got {value}")
    if cfg.mask_replace_prob + cfg.random_replace_prob > 1.0 + 1e-9:
        raise UserError(
            f"mask_replace_prob + random_replace_prob must be <= 1, got "
            f"{cfg.mask_replace_prob} + {cfg.random_replace_prob}"
        )
    final = cfg.mlm_probability_final
    if final is not None and not 0.0 < final < 1.0:
        raise UserError(f"mlm_probability_final must be between 0 and 1 (exclusive), got {final}")
    if final is not None and cfg.fixed_count_masking:
        raise UserError(
            "fixed_count_masking keeps one mask count (static shapes); unset mlm_probability_final"
        )
    if not 1.0 <= cfg.mask_span_mean <= MAX_SPAN:
        raise UserError(f"mask_span_mean must be between 1 and {MAX_SPAN}, got {cfg.mask_span_mean}")
    if cfg.mask_span_mean > 1 and cfg.fixed_count_masking:
        raise UserError("fixed_count_masking works with single-token masking only; set mask_span_mean: 1")
    if cfg.whole_word_mask and cfg.fixed_count_masking:
        raise UserError("fixed_count_masking works with token masking only; turn off whole_word_mask or it")


MAX_SPAN = 10


def span_mask(shape: torch.Size, rate: float, mean: float, g: torch.Generator | None) -> torch.Tensor:
    """(batch, L) bool: spans of geometric length (mean `mean`, at most MAX_SPAN) starting at each slot with
    probability -ln(1 - rate) / mean, so that about `rate` of the slots are covered, overlaps counted."""
    starts = torch.rand(shape, generator=g) < -math.log1p(-rate) / mean
    u = torch.rand(shape, generator=g).clamp_(min=1e-12)
    lengths = (torch.log(u) / math.log(1 - 1 / mean)).floor().long().add_(1).clamp_(max=MAX_SPAN)
    ends = (torch.arange(shape[1]) + lengths).clamp_(max=shape[1])
    edges = torch.zeros(shape[0], shape[1] + 1, dtype=torch.long)
    edges[:, :-1] += starts.long()
    edges.scatter_add_(1, ends, -starts.long())
    return edges[:, :-1].cumsum(1) > 0


def _stack(rows: Sequence[Any], pad_value: int) -> torch.Tensor:
    """Stack rows (lists, numpy arrays or tensors) into an int64 (batch, max_len) tensor, right-padded."""
    if isinstance(rows[0], torch.Tensor):
        rows = [r.numpy() for r in rows]
    lengths = {len(r) for r in rows}
    if len(lengths) == 1:
        return torch.from_numpy(np.asarray(rows, dtype=np.int64))
    out = np.full((len(rows), max(lengths)), pad_value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


class MaskingCollator:
    """Turn a list of examples into {input_ids, attention_mask, labels}, with a fresh mask on every call.

    With `fixed_count_masking` the batch also has `masked_positions`, (batch, round(mlm_probability * L))
    int64: per row the masked positions in increasing order, then L for unused slots. Its shape depends only
    on the batch and sequence length, so the masked-only head gathers a static number of rows (torch.compile,
    CUDA graphs) even when the number masked per row (which follows the batch's shortest row) varies.

    `vocab_size` is the number of real tokens (len(tokenizer)): random replacements are drawn from
    [0, vocab_size) minus the special tokens. Special tokens and padding are never chosen. Whole-word
    mode picks each word independently with probability `mlm_probability` (word-level Bernoulli), so the
    expected fraction of masked tokens is `mlm_probability`. With `seed`, the collator owns a
    torch.Generator (re-seeded per DataLoader worker); without, it uses torch's global RNG.
    """

    def __init__(
        self,
        cfg: MaskingConfig,
        vocab_size: int,
        mask_token_id: int,
        pad_token_id: int,
        special_token_ids: list[int],
        seed: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.rate = cfg.mlm_probability  # the mask rate now (a schedule may move it during training)
        self.vocab_size = vocab_size
        self.mask_token_id = mask_token_id
        self.pad_token_id = pad_token_id
        specials = sorted({*special_token_ids, mask_token_id, pad_token_id})
        if max(specials) >= vocab_size or min(specials) < 0:
            raise UserError(f"special token ids {specials} do not fit a vocabulary of {vocab_size} tokens")
        self.is_special = torch.zeros(vocab_size, dtype=torch.bool)
        self.is_special[specials] = True
        self.random_ids = torch.nonzero(~self.is_special).squeeze(1)
        if len(self.random_ids) == 0:
            raise UserError(f"the vocabulary of {vocab_size} tokens has only special tokens")
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None
        self._worker_id: int | None = None

    def _rng(self) -> torch.Generator | None:
        """The generator to use; in a DataLoader worker it is re-seeded from `seed` and the worker's own seed
        (which differs per worker and per epoch), so workers and epochs never repeat each other's masks."""
        if self.generator is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and info.id != self._worker_id:
                self._worker_id = info.id
                self.generator.manual_seed((self.seed * 1_000_003 + info.seed) % 2**63)
        return self.generator

    def _draw(self, shape: torch.Size, g: torch.Generator | None) -> torch.Tensor:
        """Which slots (tokens, or word slots) to mask: independently, or in spans."""
        cfg = self.cfg
        if cfg.mask_span_mean > 1:
            return span_mask(shape, self.rate, cfg.mask_span_mean, g)
        return torch.rand(shape, generator=g) < self.rate

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        cfg, g = self.cfg, self._rng()
        input_ids = _stack([e["input_ids"] for e in examples], self.pad_token_id)
        if int(input_ids.max()) >= self.vocab_size or int(input_ids.min()) < 0:
            raise UserError(
                f"token id {int(input_ids.max())} is outside the vocabulary of {self.vocab_size} tokens: "
                "the packed data was made with another tokenizer"
            )
        attention_mask = (input_ids != self.pad_token_id).long()
        if all("attention_mask" in e for e in examples):
            attention_mask &= _stack([e["attention_mask"] for e in examples], 0)
        eligible = attention_mask.bool() & ~self.is_special[input_ids]
        shape = input_ids.shape

        if cfg.whole_word_mask:
            if not all("word_start" in e for e in examples):
                raise UserError(
                    "whole_word_mask is on but the packed data has no word boundaries (no `word_start` column); "
                    "repack it with the current `pack` step"
                )
            word_start = _stack([e["word_start"] for e in examples], 0)
            word_id = (word_start.cumsum(1) - 1).clamp_(min=0)  # index of the word each token belongs to
            words = self._draw(shape, g)  # one draw per word slot (a row has at most L words)
            masked = words.gather(1, word_id) & eligible
        elif cfg.fixed_count_masking:
            n_eligible = eligible.sum(1)
            nonempty = n_eligible[n_eligible > 0]
            n_min = int(nonempty.min()) if len(nonempty) else 0
            k = max(1, round(self.rate * n_min)) if n_min else 0
            scores = torch.rand(shape, generator=g).masked_fill_(~eligible, -1.0)
            picked = scores.topk(k, dim=1).indices.sort(dim=1).values
            masked = torch.zeros(shape, dtype=torch.bool)
            masked.scatter_(1, picked, True)
            masked &= eligible  # only rows without any eligible token get fewer (none)
            # static-shape view for the model: (batch, round(p * L)) slots, the first k of each row the
            # masked positions in order, the rest (and picks that were not eligible) set to L ("no slot")
            slots = max(1, round(cfg.mlm_probability * shape[1]))
            positions = torch.full((shape[0], slots), shape[1], dtype=torch.long)
            positions[:, :k] = picked.masked_fill(~eligible.gather(1, picked), shape[1])
        else:
            masked = self._draw(shape, g) & eligible

        labels = torch.where(masked, input_ids, -100)
        how = torch.rand(shape, generator=g)
        to_mask = masked & (how < cfg.mask_replace_prob)
        to_random = (
            masked & (how >= cfg.mask_replace_prob) & (how < cfg.mask_replace_prob + cfg.random_replace_prob)
        )
        random_tokens = self.random_ids[torch.randint(len(self.random_ids), shape, generator=g)]
        input_ids = torch.where(to_mask, self.mask_token_id, torch.where(to_random, random_tokens, input_ids))
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if cfg.fixed_count_masking:
            batch["masked_positions"] = positions
        return batch
