"""architecture: modernbert: ModernBERT blocks at the same presets, its sparse prediction as the masked-only
head, a native ModernBertForMaskedLM in final/ that fine-tunes as a classifier."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    ModernBertForMaskedLM,
)

from data_prep.errors import UserError
from mlm.modeling import build_config, build_model, count_parameters
from mlm.pretrain import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import tiny_pretrain_config  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def test_presets_keep_their_size():
    bert = build_model(build_config("tiny", 8192, 128))
    modern = build_model(build_config("tiny", 8192, 128, architecture="modernbert"))
    assert type(modern) is ModernBertForMaskedLM and modern.config.sparse_prediction
    ratio = count_parameters(modern) / count_parameters(bert)
    assert 0.8 < ratio < 1.1, ratio  # GeGLU at 2/3 width, no biases: about the preset's size


def test_sparse_prediction_scores_masked_positions_only():
    model = build_model(build_config("tiny", 512, 32, overrides=SMALL, architecture="modernbert"))
    ids = torch.randint(5, 512, (2, 32))
    labels = torch.full_like(ids, -100)
    labels[:, :3] = ids[:, :3]
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert out.logits.shape == (6, 512) and out.loss > 0


def test_special_token_ids_are_given_ones():
    cfg = build_config(
        "tiny", 512, 32, overrides=SMALL, architecture="modernbert", cls_token_id=2, sep_token_id=3
    )
    assert (cfg.cls_token_id, cfg.bos_token_id, cfg.sep_token_id, cfg.eos_token_id) == (2, 2, 3, 3)


def test_pretrain_and_classify(packed_dir, tmp_path):
    out = tmp_path / "run"
    metrics = pretrain(
        tiny_pretrain_config(packed_dir, out, architecture="modernbert", model_overrides=SMALL)
    )
    assert metrics["steps"] == 6 and 0 <= metrics["masked_accuracy"] <= 1
    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["ModernBertForMaskedLM"]
    tok = AutoTokenizer.from_pretrained(final)
    assert (config["cls_token_id"], config["sep_token_id"]) == (tok.cls_token_id, tok.sep_token_id)
    assert (config["bos_token_id"], config["eos_token_id"]) == (tok.cls_token_id, tok.sep_token_id)
    model, info = AutoModelForMaskedLM.from_pretrained(final, output_loading_info=True)
    assert type(model) is ModernBertForMaskedLM and not info["missing_keys"]
    assert type(AutoModelForSequenceClassification.from_pretrained(final, num_labels=2)).__name__ == (
        "ModernBertForSequenceClassification"
    )


def test_bad_combinations(packed_dir, tmp_path):
    with pytest.raises(UserError, match="unknown architecture 'gpt'"):
        tiny_pretrain_config(packed_dir, tmp_path, architecture="gpt").validate()
    with pytest.raises(UserError, match="unknown model override.*hidden_dropout_prob"):
        tiny_pretrain_config(
            packed_dir, tmp_path, architecture="modernbert", model_overrides={"hidden_dropout_prob": 0.1}
        ).validate()
    with pytest.raises(UserError, match="fixed_count_masking works with architecture: bert only"):
        tiny_pretrain_config(packed_dir, tmp_path, architecture="modernbert", model_overrides={},
                             fixed_count_masking=True).validate()  # fmt: skip


def test_finetune_accepts_modernbert_and_electra(packed_dir, tmp_path):
    import csv

    from mlm.finetune import FinetuneConfig, finetune

    rows = [
        (f"good fine great day {i}", "pos") if i % 2 else (f"bad awful poor night {i}", "neg")
        for i in range(40)
    ]
    for name in ("train", "dev"):
        with open(tmp_path / f"{name}.csv", "w", newline="") as f:
            csv.writer(f).writerows([("text", "label"), *rows])
    for arch, objective in (("modernbert", "mlm"), ("bert", "electra")):
        out = tmp_path / f"{arch}-{objective}"
        overrides = SMALL if arch == "modernbert" else {}
        pretrain(tiny_pretrain_config(packed_dir, out, architecture=arch, objective=objective,
                                      model_overrides=overrides or tiny_pretrain_config(packed_dir, out).model_overrides,
                                      max_steps=2, save_steps=0, eval_steps=0))  # fmt: skip
        result = finetune(
            FinetuneConfig(
                model=str(out / "final"),
                output_dir=str(tmp_path / f"clf-{arch}-{objective}"),
                train_file=str(tmp_path / "train.csv"),
                validation_file=str(tmp_path / "dev.csv"),
                num_train_epochs=1.0,
                per_device_train_batch_size=8,
                use_cpu=True,
                disable_tqdm=True,
            )  # fmt: skip
        )
        assert 0.0 <= result["validation"]["accuracy"] <= 1.0
