"""architecture: modernbert: ModernBERT blocks at the same presets, its sparse prediction as the masked-only
head, a native ModernBertForMaskedLM in final/ that fine-tunes as a classifier."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import (
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    ModernBertForMaskedLM,
)

from data_prep.errors import UserError
from mlm.heads import ModernBertForMaskedOnlyLM
from mlm.modeling import build_config, build_model, count_parameters
from mlm.pretrain import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import tiny_pretrain_config  # noqa: E402

SMALL = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def test_presets_keep_their_size():
    bert = build_model(build_config("tiny", 8192, 128))
    modern = build_model(build_config("tiny", 8192, 128, architecture="modernbert"))
    assert type(modern) is ModernBertForMaskedOnlyLM and modern.config.sparse_prediction
    assert type(build_model(modern.config, masked_only_head=False)) is ModernBertForMaskedLM
    ratio = count_parameters(modern) / count_parameters(bert)
    assert 0.8 < ratio < 1.1, ratio  # GeGLU at 2/3 width, no biases: about the preset's size


def test_sparse_prediction_scores_masked_positions_only():
    model = build_model(build_config("tiny", 512, 32, overrides=SMALL, architecture="modernbert")).eval()
    ids = torch.randint(5, 512, (2, 32))
    labels = torch.full_like(ids, -100)
    labels[:, :3] = ids[:, :3]
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels)
    assert out.logits.shape == (6, 512) and out.loss > 0


def test_fused_cpu_head_matches_stock_loss_and_gradients():
    """Training on CPU, the masked-only ModernBERT fuses decoder and loss: same loss and gradients as the
    stock ModernBertForMaskedLM with the same weights; evaluation gives the stock logits."""
    torch.manual_seed(0)
    stock = build_model(build_config("tiny", 512, 32, overrides=SMALL, architecture="modernbert"), False)
    fused = build_model(build_config("tiny", 512, 32, overrides=SMALL, architecture="modernbert"))
    stock.config.sparse_prediction = stock.sparse_prediction = True
    fused.load_state_dict(stock.state_dict())
    ids = torch.randint(5, 512, (3, 32))
    mask = torch.ones_like(ids)
    mask[1, -6:] = 0
    labels = torch.where(torch.rand(ids.shape) < 0.25, ids, -100).masked_fill(mask == 0, -100)
    losses = []
    for model in (stock, fused):
        model.train()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        losses.append(out.loss.detach())
    assert fused(input_ids=ids, attention_mask=mask, labels=labels).logits is None  # fused: no logits kept
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-5)
    grads = {n: p.grad for n, p in stock.named_parameters()}
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, grads[name], rtol=1e-4, atol=1e-5, msg=name)
    stock.eval(), fused.eval()
    with torch.no_grad():
        a = stock(input_ids=ids, attention_mask=mask, labels=labels)
        b = fused(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.loss, b.loss)  # the masked-LM loss, not the (shifted) causal-LM default
    torch.testing.assert_close(b.loss, F.cross_entropy(b.logits, labels[labels != -100]))


def test_special_token_ids_are_given_ones():
    cfg = build_config(
        "tiny", 512, 32, overrides=SMALL, architecture="modernbert", cls_token_id=2, sep_token_id=3
    )
    assert (cfg.cls_token_id, cfg.bos_token_id, cfg.sep_token_id, cfg.eos_token_id) == (2, 2, 3, 3)


def test_classifier_pools_the_mean_unless_told():
    assert build_config("tiny", 512, 32, architecture="modernbert").classifier_pooling == "mean"
    cls = build_config("tiny", 512, 32, overrides={"classifier_pooling": "cls"}, architecture="modernbert")
    assert cls.classifier_pooling == "cls"


def test_pretrain_and_classify(packed_dir, tmp_path):
    out = tmp_path / "run"
    metrics = pretrain(
        tiny_pretrain_config(packed_dir, out, architecture="modernbert", config_overrides=SMALL)
    )
    assert metrics["steps"] == 6 and 0 <= metrics["masked_accuracy"] <= 1
    final = out / "final"
    config = json.loads((final / "config.json").read_text())
    assert config["architectures"] == ["ModernBertForMaskedLM"] and config["classifier_pooling"] == "mean"
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
            packed_dir, tmp_path, architecture="modernbert", config_overrides={"hidden_dropout_prob": 0.1}
        ).validate()
    with pytest.raises(UserError, match="fixed_count_masking works with architecture: bert only"):
        tiny_pretrain_config(packed_dir, tmp_path, architecture="modernbert", config_overrides={},
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
                                      config_overrides=overrides or tiny_pretrain_config(packed_dir, out).config_overrides,
                                      max_steps=2, save_steps=0, eval_steps=0))  # fmt: skip
        result = finetune(
            FinetuneConfig(
                model_name_or_path=str(out / "final"),
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
