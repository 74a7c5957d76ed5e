"""Pretraining on the tiny packed corpus: checkpoints, metrics, resume, and the errors a user can cause."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForMaskedLM, BertForMaskedLM, TrainerCallback, pipeline

from data_prep.errors import UserError
from mlm.pretrain import PretrainConfig, pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import TINY  # noqa: E402
from tiny_run import tiny_pretrain_config as _cfg


@pytest.fixture(scope="module")
def pretrained(packed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain") / "run"
    metrics = pretrain(_cfg(packed_dir, out))
    return out, metrics


def test_final_folder_loads_as_plain_bert(pretrained):
    out, _ = pretrained
    final = out / "final"
    assert (final / "model.safetensors").is_file()
    model, info = AutoModelForMaskedLM.from_pretrained(final, output_loading_info=True)
    assert type(model) is BertForMaskedLM
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((final / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    fill = pipeline("fill-mask", model=str(final), tokenizer=str(final), top_k=3)
    preds = fill("the [MASK] of the world.")
    assert len(preds) == 3 and all("token_str" in p for p in preds)


def test_metrics_and_history(pretrained):
    out, metrics = pretrained
    on_disk = json.loads((out / "metrics.json").read_text())
    for key in ("eval_loss", "perplexity", "masked_accuracy", "tokens_seen", "train_tokens_per_second"):
        assert on_disk[key] is not None, key
    assert on_disk["steps"] == 6
    assert on_disk["tokens_seen"] == 6 * 8 * 32
    assert 0.0 <= on_disk["masked_accuracy"] <= 1.0
    assert on_disk["perplexity"] == pytest.approx(2.718281828 ** on_disk["eval_loss"], rel=1e-6)
    history = json.loads((out / "log_history.json").read_text())
    assert [h["step"] for h in history if "eval_loss" in h][:2] == [3, 6]
    assert sum("loss" in h for h in history) >= 5
    assert (out / "checkpoint-6" / "run_info.json").is_file()
    run_info = json.loads((out / "final" / "run_info.json").read_text())
    assert run_info["eval"]["eval_loss"] == pytest.approx(metrics["eval_loss"])
    assert run_info["model"]["hidden_size"] == 32


def test_resume_continues_from_latest_checkpoint(packed_dir, tmp_path):
    out = tmp_path / "run"
    pretrain(_cfg(packed_dir, out, max_steps=4, save_steps=2, eval_steps=0))
    metrics = pretrain(
        _cfg(packed_dir, out, max_steps=6, save_steps=2, eval_steps=0, resume_from_checkpoint="latest")
    )
    assert metrics["resumed_from"].endswith("checkpoint-4")
    assert metrics["steps"] == 6


def test_resume_without_checkpoint_is_a_user_error(packed_dir, tmp_path):
    with pytest.raises(UserError, match="no checkpoint found"):
        pretrain(_cfg(packed_dir, tmp_path / "empty", resume_from_checkpoint="latest"))


def test_unknown_preset_lists_valid_ones(packed_dir, tmp_path):
    with pytest.raises(
        UserError, match="unknown preset 'huge'; valid presets: tiny, mini, small, medium, base"
    ):
        pretrain(_cfg(packed_dir, tmp_path / "x", preset="huge"))


def test_sequence_longer_than_model_allows(packed_dir, tmp_path):
    with pytest.raises(UserError, match="max_position_embeddings|larger than the model allows"):
        pretrain(_cfg(packed_dir, tmp_path / "x", config_overrides={**TINY, "max_position_embeddings": 16}))


def test_tokenizer_not_matching_packed_data(packed_dir, tmp_path, tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tok.add_tokens([f"extra{i}" for i in range(64)])
    other = tmp_path / "other-tokenizer"
    tok.save_pretrained(other)
    with pytest.raises(UserError, match="was made with a tokenizer of"):
        pretrain(_cfg(packed_dir, tmp_path / "x", tokenizer_dir=str(other)))


def test_missing_packed_data(tmp_path):
    with pytest.raises(UserError, match="packed data not found"):
        pretrain(_cfg(tmp_path / "nope", tmp_path / "x"))


def test_block_dataset_is_compact_and_follows_the_selection():
    import datasets
    import torch

    from data_prep.errors import UserError
    from mlm.data import BlockDataset

    ds = datasets.Dataset.from_dict(
        {"input_ids": [[2, 10 + i, 3] for i in range(5)], "word_start": [[1, 1, 1]] * 5}
    )
    blocks = BlockDataset(ds.select([4, 1]))
    assert blocks.input_ids.dtype == torch.int32 and blocks.word_start.dtype == torch.int8
    assert blocks.input_ids.tolist() == [[2, 14, 3], [2, 11, 3]]
    item = blocks[3]  # a later epoch's draw of block 1
    assert item["input_ids"].dtype == torch.int64 and item["input_ids"].tolist() == [2, 11, 3]
    with pytest.raises(UserError, match="same length"):
        BlockDataset(datasets.Dataset.from_dict({"input_ids": [[2, 3], [2, 5, 3]]}))


def test_mask_rate_decays_to_its_final_value(packed_dir, tmp_path):
    from mlm.objectives import get_objective
    from mlm.pretrain import build_model, build_trainer, load_data
    from mlm.run_record import RunRecord

    cfg = _cfg(packed_dir, tmp_path / "run", mlm_probability=0.4, mlm_probability_final=0.1, save_steps=0)
    data = load_data(cfg)
    objective = get_objective("mlm")(cfg, data.tokenizer)
    run = build_trainer(cfg, objective, build_model(cfg, objective, data), data)
    collator = run.trainer.data_collator.masker.masker  # TrainEvalCollator -> SeededMasking -> the collator
    rates = []
    run.trainer.add_callback(
        type("Spy", (TrainerCallback,), {"on_step_end": lambda *a, **k: rates.append(collator.rate)})()
    )
    run.trainer.train()
    assert rates[0] == pytest.approx(0.4) and rates[-1] == pytest.approx(0.1 + 0.3 / 6)
    assert all(a > b for a, b in zip(rates, rates[1:]))
    pretrain(_cfg(packed_dir, tmp_path / "r2", mlm_probability=0.3, mlm_probability_final=0.15, max_steps=2))
    assert (
        "30% falling to 15% of tokens" in RunRecord.load(tmp_path / "r2" / "final").objective.facts["Masking"]
    )


@pytest.mark.parametrize(
    "options, expected",
    [
        ({}, 1e-3),
        ({"architecture": "modernbert"}, 3e-3),
        ({"model_name_or_path": "some/checkpoint"}, 1e-4),
        ({"architecture": "modernbert", "model_name_or_path": "some/checkpoint"}, 1e-4),
        ({"architecture": "modernbert", "learning_rate": 5e-4}, 5e-4),
        ({"learning_rate": "2e-3"}, 2e-3),
    ],
)
def test_learning_rate_left_out_follows_the_blocks_and_the_start(options, expected):
    from mlm.config import config_from_dict
    from mlm.pretrain import PretrainConfig, learning_rate_for

    cfg = config_from_dict(PretrainConfig, {"data_dir": "d", "output_dir": "o", **options}, "pretrain")
    assert learning_rate_for(cfg) == pytest.approx(expected)
    cfg.validate()
    given = options.get("learning_rate")
    assert cfg.learning_rate == (float(given) if given else None), "validation writes nothing back"


def test_metrics_record_card_and_trackers_state_the_model_flop_utilisation(pretrained):
    """metrics.json has the model FLOPs per token of `mlm.flops` for this model and sequence length (the
    masked-only head scores the masked share, mlm_probability), FLOP/s = tokens/s x FLOPs per token, and
    their share of the peak; run_info.json, the card and the Trainer's log (the trackers) state them."""
    from transformers import AutoConfig

    from mlm.flops import model_flops_per_token

    out, metrics = pretrained
    written = json.loads((out / "metrics.json").read_text())
    assert written == metrics
    config = AutoConfig.from_pretrained(out / "final")
    expected = model_flops_per_token(config, 32, scored_fraction=PretrainConfig.mlm_probability)  # 0.15
    assert written["model_flops_per_token"] == pytest.approx(expected)
    tokens_per_second = written["train_tokens_per_second"]
    assert written["model_flops_per_second"] == pytest.approx(tokens_per_second * expected)
    assert written["peak_flops"] > 0 and written["peak_source"].startswith("measured: ")  # a CPU: probed
    assert written["share_of_peak"] == pytest.approx(
        written["model_flops_per_second"] / written["peak_flops"]
    )
    assert 0 < written["share_of_peak"] < 1 and written["devices"] == 1
    training = json.loads((out / "final" / "run_info.json").read_text())["training"]
    for key in (
        "model_flops_per_token",
        "model_flops_per_second",
        "share_of_peak",
        "peak_flops",
        "peak_source",
    ):
        assert training[key] == written[key], key
    assert training["tokens_per_second"] == tokens_per_second
    card = (out / "final" / "README.md").read_text()
    assert f"- Throughput: {tokens_per_second:,.0f} tokens/s" in card
    assert "- Model FLOP utilisation (MFU): " in card and "(measured: " in card
    logged = json.loads((out / "log_history.json").read_text())[-1]  # the trackers get what the log gets
    assert logged["share_of_peak"] == written["share_of_peak"] and logged["step"] == written["steps"]


@pytest.mark.parametrize(
    "options, scored",
    [({"masked_only_head": False}, "all"), ({"objective": "electra"}, "masked"),
     ({"architecture": "modernbert"}, "masked")],
)  # fmt: skip
def test_model_flops_per_token_follow_the_head_and_the_objective(packed_dir, tmp_path, options, scored):
    """The full head scores every position; ELECTRA's generator (its own config) the masked ones."""
    from mlm.flops import model_flops_per_token
    from mlm.pretrain import build_pretraining

    cfg = _cfg(packed_dir, tmp_path / "p", **options)
    run = build_pretraining(cfg)
    model = run.trainer.model
    fraction = 1.0 if scored == "all" else cfg.mlm_probability
    generator = model.generator.config if options.get("objective") == "electra" else None
    expected = model_flops_per_token(model.config, 32, fraction, generator_config=generator)
    assert run.flops_per_token == pytest.approx(expected)
    assert run.peak[0] > 0
