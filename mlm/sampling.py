"""The order fine-tuning draws its training examples in (`train_sampling_strategy`).

Left unset, it is `group_by_length` on a GPU: each batch holds texts of about the same length (transformers'
`LengthGroupedSampler`: random megabatches of 50 batches, sorted by length inside), so the padding up to a
batch's longest text, which a GPU computes in full, mostly goes. On a CPU it stays `random`, the order every
measured CPU result was made with. A value given is used as is (random, sequential, group_by_length or
batch_rebalance).

`LengthGroupedTrainer` is the Trainer that makes it safe: transformers applies `group_by_length` to evaluation
and prediction too, which would return the predictions in another order than the examples (predictions.jsonl
by index, and `long_text: chunks`, which averages each document's windows by row, rely on the order);
here evaluation keeps the dataset's order, and the training lengths are read from the Arrow column at once
instead of row by row (seconds for 100k examples).
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler
from transformers.trainer_utils import has_length

GROUP_BY_LENGTH = "group_by_length"
STRATEGIES = (
    "random",
    "sequential",
    GROUP_BY_LENGTH,
    "batch_rebalance",
)  # TrainingArguments' (it checks none)


def check_sampling(value: str | None) -> None:
    """`train_sampling_strategy` is unset or one transformers knows."""
    from data_prep.errors import UserError

    if value is not None and value not in STRATEGIES:
        raise UserError(f"unknown train_sampling_strategy {value!r}; valid: {', '.join(STRATEGIES)}")


def train_sampling_strategy(cfg: Any, gpu: bool) -> str:
    """`cfg.train_sampling_strategy`, or when unset `group_by_length` on a GPU (`gpu`: the run trains on one,
    `mlm.options.on_gpu`) and `random` on the CPU."""
    if cfg.train_sampling_strategy is not None:
        return cfg.train_sampling_strategy
    return GROUP_BY_LENGTH if gpu else "random"


def input_lengths(dataset: Any, column: str = "input_ids") -> list[int] | None:
    """The length of each example's `column`, from a `datasets.Dataset`'s Arrow data (None otherwise)."""
    import datasets
    import pyarrow.compute as pc

    if not isinstance(dataset, datasets.Dataset) or column not in dataset.column_names:
        return None
    return pc.list_value_length(dataset.with_format("arrow")[column]).to_numpy().tolist()


class LengthGroupedTrainer(Trainer):
    """A Trainer whose `group_by_length` groups the training batches only; evaluation and prediction keep
    the order of their dataset. Two private methods are overridden (transformers has no public way to give
    a DataLoader a sampler); tests/test_sampling.py fails, naming them, if transformers changes them."""

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.train_sampling_strategy == GROUP_BY_LENGTH:
            name = self.processing_class.model_input_names[0] if self.processing_class is not None else None
            lengths = input_lengths(dataset, name or "input_ids")
            if lengths is not None:
                batch = self.args.train_batch_size * self.args.gradient_accumulation_steps
                return LengthGroupedSampler(batch, lengths=lengths)
        return super()._get_train_sampler(train_dataset)

    def _get_eval_sampler(self, eval_dataset):
        if self.args.train_sampling_strategy != GROUP_BY_LENGTH:
            return super()._get_eval_sampler(eval_dataset)
        # transformers' own choice without grouping: in order; several processes: accelerate shards it in order
        if eval_dataset is None or not has_length(eval_dataset) or self.args.world_size > 1:
            return None
        return torch.utils.data.SequentialSampler(eval_dataset)
