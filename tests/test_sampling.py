"""`mlm.sampling`: fine-tuning's training order, length-grouped on a GPU (mocked here) and random on the CPU,
and the Trainer that groups training batches only, so evaluation and predictions keep the dataset's order."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import datasets
import pytest
import torch
from test_finetune import FILLER, build_tokenizer, checkpoint, config, write_csv  # noqa: F401 (fixture)
from transformers import BertConfig, BertForSequenceClassification, DataCollatorWithPadding, Trainer
from transformers.trainer_pt_utils import LengthGroupedSampler

from data_prep.errors import UserError
from mlm import finetune as ft
from mlm.finetune import FinetuneConfig, finetune
from mlm.options import on_gpu, trainer_arguments
from mlm.sampling import LengthGroupedTrainer, input_lengths, train_sampling_strategy

REQUIRED = {"model_name_or_path": "m", "output_dir": "o", "train_file": "t.csv"}


def _gpu(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def _strategy(cfg: FinetuneConfig) -> str:
    return train_sampling_strategy(cfg, on_gpu(cfg))  # as fine-tuning asks


def test_group_by_length_on_a_gpu_random_on_the_cpu(monkeypatch):
    cfg = FinetuneConfig(**REQUIRED)
    assert cfg.train_sampling_strategy is None
    assert _strategy(cfg) == "random"
    _gpu(monkeypatch)
    assert _strategy(cfg) == "group_by_length"
    assert _strategy(FinetuneConfig(**REQUIRED, use_cpu=True)) == "random"
    given = FinetuneConfig(**REQUIRED, train_sampling_strategy="random")
    assert _strategy(given) == "random" and given.train_sampling_strategy == "random"


def test_the_trainer_gets_the_choice(monkeypatch, tmp_path):
    cfg = FinetuneConfig(**REQUIRED, use_cpu=True, fp16=False, bf16=False)  # precision fixed: the CPU's
    assert ft._training_args(cfg, tmp_path, 100, True).train_sampling_strategy == "random"
    monkeypatch.setattr(ft, "on_gpu", lambda cfg: True)  # fine-tuning told it trains on a GPU
    assert ft._training_args(cfg, tmp_path, 100, True).train_sampling_strategy == "group_by_length"


def test_an_unknown_strategy_is_refused():
    with pytest.raises(
        UserError, match="unknown train_sampling_strategy 'by_length'; valid: random, sequential"
    ):
        FinetuneConfig(**REQUIRED, train_sampling_strategy="by_length").validate()


def _lengths_dataset(tok, n: int = 64) -> datasets.Dataset:
    rng = random.Random(0)
    texts = [" ".join(rng.choices(FILLER, k=rng.choice([3, 40]))) for _ in range(n)]
    enc = tok(texts, truncation=True, max_length=64)
    return datasets.Dataset.from_dict({**enc, "labels": [i % 2 for i in range(n)]}).shuffle(seed=1)


def _trainer(cls, strategy: str, ds: datasets.Dataset, tmp_path: Path) -> Trainer:
    tok = build_tokenizer()
    model_config = BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=64, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    args = trainer_arguments(
        FinetuneConfig(**REQUIRED, use_cpu=True, per_device_train_batch_size=4, per_device_eval_batch_size=4),
        output_dir=str(tmp_path), train_sampling_strategy=strategy, report_to="none",
    )  # fmt: skip
    return cls(model=BertForSequenceClassification(model_config), args=args, train_dataset=ds, eval_dataset=ds,
               processing_class=tok, data_collator=DataCollatorWithPadding(tok))  # fmt: skip


def test_training_batches_are_grouped_by_length_from_the_arrow_lengths(tmp_path):
    ds = _lengths_dataset(build_tokenizer())
    assert input_lengths(ds) == [len(x) for x in ds["input_ids"]]  # the shuffled order, not the stored one
    trainer = _trainer(LengthGroupedTrainer, "group_by_length", ds, tmp_path)
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
    lengths = input_lengths(ds)
    middle = (min(lengths) + max(lengths)) / 2
    assert max(lengths) - min(lengths) > 20

    def mixed(trainer: Trainer) -> list:
        batches = [b["attention_mask"].sum(1) for b in trainer.get_train_dataloader()]
        assert len(batches) == 16
        return [n for n in batches if (n < middle).any() and (n > middle).any()]

    # transformers sorts megabatches of 4 batches here (64 examples): at most one mixed batch in each
    assert len(mixed(trainer)) <= 4 < 8 <= len(mixed(_trainer(Trainer, "random", ds, tmp_path)))


def test_evaluation_and_predictions_keep_the_dataset_order(tmp_path):
    ds = _lengths_dataset(build_tokenizer())
    stock = _trainer(Trainer, "group_by_length", ds, tmp_path)
    assert isinstance(stock._get_eval_sampler(ds), LengthGroupedSampler), "transformers reorders evaluation"
    ours = _trainer(LengthGroupedTrainer, "group_by_length", ds, tmp_path)
    assert isinstance(ours._get_eval_sampler(ds), torch.utils.data.SequentialSampler)
    pred = ours.predict(ds)
    assert pred.label_ids.tolist() == ds["labels"]
    plain = _trainer(Trainer, "random", ds, tmp_path).predict(ds)
    assert torch.allclose(torch.tensor(pred.predictions), torch.tensor(plain.predictions), atol=1e-5)


def test_finetuning_grouped_by_length_writes_predictions_in_the_test_files_order(checkpoint, tmp_path):  # noqa: F811
    rng = random.Random(3)
    rows = []
    for _ in range(120):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.choice([2, 6, 30]))
        words.insert(rng.randint(0, len(words)), "good" if label == "pos" else "bad")
        rows.append({"text": " ".join(words), "label": label})
    task = {
        "train": write_csv(tmp_path / "train.csv", rows[:80]),
        "test": write_csv(tmp_path / "test.csv", rows[80:]),
    }
    for mode in ("truncate", "chunks"):
        out = tmp_path / mode
        result = finetune(config(checkpoint, out, task, max_seq_length=16, long_text=mode, num_train_epochs=1,
                                 train_sampling_strategy="group_by_length"))  # fmt: skip
        with open(task["test"], newline="", encoding="utf-8") as f:
            expected = [r["label"] for r in csv.DictReader(f)]
        preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
        assert [p["label"] for p in preds] == expected and result["test"]["samples"] == 40
