"""The pretraining Trainer: the one private method of `transformers.Trainer` it overrides still does its job,
and the sampler's epoch follows the Trainer's."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import datasets
import torch
from transformers import Trainer, TrainingArguments

from mlm.data import BlockDataset, stack_collate
from mlm.modeling import build_config, build_model
from mlm.streaming import EpochSampler
from mlm.trainer import PretrainTrainer, SamplerEpoch

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def _trainer(tmp_path, collator=stack_collate, **args) -> PretrainTrainer:
    blocks = BlockDataset(datasets.Dataset.from_dict({"input_ids": [[2, 10 + i, 3] for i in range(6)]}))
    model = build_model(build_config("tiny", 64, 3, overrides=TINY))
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, use_cpu=True, report_to="none",
        remove_unused_columns=False, seed=5, save_strategy="no", disable_tqdm=True, **args,
    )  # fmt: skip
    return PretrainTrainer(model=model, args=args, train_dataset=blocks, data_collator=collator)


def _order(epoch: int) -> list[int]:
    sampler = EpochSampler(6, 5)
    sampler.set_epoch(epoch)
    return list(sampler)


def test_only_one_private_method_of_trainer_is_overridden():
    private = sorted(n for n in vars(PretrainTrainer) if n.startswith("_") and not n.startswith("__"))
    assert [n for n in private if hasattr(Trainer, n)] == ["_get_train_sampler"], (
        "PretrainTrainer overrides private methods of transformers.Trainer: keep it to _get_train_sampler"
    )


def test_transformers_still_builds_the_training_dataloader_with_get_train_sampler(tmp_path):
    """Fails when transformers renames `Trainer._get_train_sampler`, changes its parameters, or stops asking
    it for the training sampler: then `mlm.trainer.PretrainTrainer._get_train_sampler` must follow."""
    params = list(inspect.signature(Trainer._get_train_sampler).parameters)
    assert params == ["self", "train_dataset"], (
        f"transformers.Trainer._get_train_sampler now takes {params}; update PretrainTrainer._get_train_sampler"
    )
    trainer = _trainer(tmp_path)
    loader = trainer.get_train_dataloader()
    assert isinstance(trainer.epoch_sampler, EpochSampler), (
        "transformers no longer calls Trainer._get_train_sampler for the training DataLoader: "
        "PretrainTrainer's data order (EpochSampler) is not used"
    )
    loader.set_epoch(1)  # what the Trainer does as an epoch begins
    drawn = [int(i) for batch in loader for i in batch["sample_id"]]
    assert drawn == _order(1), "the training DataLoader does not draw in EpochSampler's order"
    assert sorted(drawn) == list(range(6, 12))  # epoch 1's draw ids


def test_the_sampler_takes_the_epoch_the_trainer_starts(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.get_train_dataloader()
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, SamplerEpoch))
    # a fresh run; the end of epoch 0 (epoch + (step + 1) / steps_in_epoch = 1.0); a run resumed mid-epoch 2
    for state_epoch, epoch in ((0, 0), (1.0, 1), (2.5, 2), (None, 0)):
        callback.on_epoch_begin(trainer.args, SimpleNamespace(epoch=state_epoch), None)
        assert trainer.epoch_sampler.epoch == epoch


def test_training_draws_each_epochs_order(tmp_path):
    seen: list[int] = []

    def collate(items):
        seen.extend(int(item["sample_id"]) for item in items)
        ids = torch.stack([item["input_ids"] for item in items])
        return {"input_ids": ids, "labels": ids.clone()}

    trainer = _trainer(tmp_path, collate, num_train_epochs=3, logging_steps=100)
    trainer.train()
    assert seen == _order(0) + _order(1) + _order(2)
