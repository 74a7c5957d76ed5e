"""The objective interface: a new pretraining objective is one class in one file, registered by name.

The toy objective below (detect randomly replaced tokens, no generator) is defined here, in the test, and
pretraining runs with it without any change to the package: collator, model, metrics, export and card facts
all come from the class."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import AutoModelForTokenClassification, BertForTokenClassification

from data_prep.errors import UserError
from mlm.objectives import Objective, get_objective, objective_names, register
from mlm.pretrain import pretrain
from mlm.run_record import ObjectiveFacts, RunRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import tiny_pretrain_config  # noqa: E402


@dataclass
class RandomTokenOptions:
    replace_rate: float = 0.2


@register
class RandomTokenDetection(Objective):
    """Replace some tokens by random ones; the model tags every position as replaced or original."""

    name = "toy-random-token-detection"
    description = "random token detection"
    options = RandomTokenOptions

    def build_model(self, model_config):
        model_config.num_labels = 2
        return BertForTokenClassification(model_config)

    def collator(self, seed: int | None):
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        special = torch.tensor(sorted(set(self.tokenizer.all_special_ids)))

        def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
            ids = torch.stack([it["input_ids"] for it in items]).clone()
            eligible = ~torch.isin(ids, special)
            pick = (torch.rand(ids.shape, generator=gen) < self.opts.replace_rate) & eligible
            ids[pick] = torch.randint(len(special), len(self.tokenizer), (int(pick.sum()),), generator=gen)
            labels = pick.long().masked_fill(~eligible, -100)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

        return collate

    def preprocess_logits_for_metrics(self, logits, labels):
        return (logits[0] if isinstance(logits, tuple) else logits).argmax(-1)

    def compute_metrics(self, eval_pred) -> dict[str, float]:
        preds, labels = np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids)
        keep = labels != -100
        return {"detection_accuracy": float((preds[keep] == labels[keep]).mean())}

    def summary(self, eval_metrics):
        return {
            "eval_loss": eval_metrics.get("eval_loss"),
            "detection_accuracy": eval_metrics.get("eval_detection_accuracy"),
        }

    def card_facts(self) -> ObjectiveFacts:
        return ObjectiveFacts(
            self.name, self.description, "token-classification", {"Replaced": "20% of tokens"}
        )


def test_builtin_objectives_are_registered():
    assert "mlm" in objective_names()
    assert get_objective("mlm").name == "mlm"
    with pytest.raises(UserError, match="unknown objective 'nope'; valid: .*mlm"):
        get_objective("nope")


def test_a_toy_objective_pretrains_without_package_changes(packed_dir, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_pretrain_config(packed_dir, out, objective=RandomTokenDetection.name,
                               objective_options={"replace_rate": 0.3})  # fmt: skip
    metrics = pretrain(cfg)
    assert metrics["steps"] == 6 and metrics["eval_loss"] is not None
    assert 0.0 <= metrics["detection_accuracy"] <= 1.0
    final = out / "final"
    model = AutoModelForTokenClassification.from_pretrained(final)
    assert type(model) is BertForTokenClassification
    assert json.loads((final / "config.json").read_text())["architectures"] == ["BertForTokenClassification"]
    record = RunRecord.load(final)
    assert record.objective.name == RandomTokenDetection.name
    assert record.objective.facts == {"Replaced": "20% of tokens"}
    assert record.eval["detection_accuracy"] == pytest.approx(metrics["detection_accuracy"])
    assert RunRecord.load(out / "checkpoint-6").objective.name == RandomTokenDetection.name


def test_objective_options_are_validated(packed_dir, tmp_path):
    bad = tiny_pretrain_config(packed_dir, tmp_path / "r", objective=RandomTokenDetection.name,
                               objective_options={"rate": 0.3})  # fmt: skip
    with pytest.raises(
        UserError, match=r"objective_options \(toy-random-token-detection\): unknown key\(s\) 'rate'"
    ):
        bad.validate()
    with pytest.raises(UserError, match="objective 'mlm' takes no objective_options"):
        tiny_pretrain_config(packed_dir, tmp_path / "r", objective_options={"x": 1}).validate()
