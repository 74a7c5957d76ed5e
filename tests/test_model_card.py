"""Model cards generated from run facts: valid YAML metadata, the run's numbers, no blanks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from mlm.model_card import (
    CARD_MARKER,
    count_parameters,
    fmt,
    fmt_duration,
    load_run_info,
    render_model_card,
    write_model_card,
)

PRETRAIN_INFO = {
    "repo_id": "someone/tiny-bert-pydocs",
    "license": "mit",
    "language": "en",
    "corpus": {
        "spec": "hf:wikitext:wikitext-2-raw-v1@train",
        "documents": 12345,
        "tokens": 2345678,
        "fingerprint": "9f8e7d6c5b4a3210",
    },
    "tokenizer": {"kind": "wordpiece", "vocab_size": 8192},
    "model": {"preset": "mini", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4},
    "training": {
        "steps": 1500,
        "tokens_seen": 24576000,
        "batch_size": 128,
        "learning_rate": 0.0005,
        "lr_scheduler_type": "linear",
        "warmup": 100,
        "masking": {"strategy": "whole_word", "mlm_probability": 0.15},
        "hardware": "1 x NVIDIA H100 80GB HBM3",
        "wall_time_s": 3725.4,
    },
    "eval": {"eval_loss": 3.876543, "perplexity": 48.2871, "masked_accuracy": 0.35714},
}

SHAPES = {
    "bert.embeddings.word_embeddings.weight": (8192, 256),
    "bert.embeddings.position_embeddings.weight": (128, 256),
    "bert.encoder.layer.0.attention.self.query.weight": (256, 256),
    "cls.predictions.bias": (8192,),
}
N_PARAMS = 8192 * 256 + 128 * 256 + 256 * 256 + 8192


def _folder(tmp_path: Path, arch: str = "BertForMaskedLM", mask: str = "[MASK]", **config) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    cfg = {"architectures": [arch], "model_type": "bert", "num_hidden_layers": 4, "hidden_size": 256,
           "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 128,
           "vocab_size": 8192, **config}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer_config.json").write_text(json.dumps({"mask_token": mask, "model_max_length": 128}))
    save_file(
        {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}, str(folder / "model.safetensors")
    )
    return folder


def _split(card: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S)
    assert match, "the card must start with YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def _sections(body: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", body, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def _assert_no_blanks(card: str) -> None:
    for bad in ("TODO", "None", "nan", "[More Information Needed]", "{", "}"):
        assert bad not in card.split("---", 2)[2], f"{bad!r} in the card body"
    for heading, text in _sections(card.split("---", 2)[2]).items():
        assert text, f"section {heading!r} is empty"
    assert not re.search(
        r":\s*$", "\n".join(line for line in card.splitlines() if line.startswith("- ")), re.M
    )


def test_pretrained_card_has_metadata_and_the_runs_numbers(tmp_path: Path):
    folder = _folder(tmp_path, mask="<mask>")
    card = render_model_card(folder, run_info=PRETRAIN_INFO)
    meta, body = _split(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "fill-mask"
    assert meta["license"] == "mit"
    assert meta["language"] == "en"
    assert meta["tags"] == ["mlm", "bert", "masked-language-modeling"]
    assert meta["datasets"] == ["wikitext"]
    assert "model-index" not in meta
    _assert_no_blanks(card)

    sections = _sections(body)
    assert list(sections) == ["Corpus", "Tokenizer", "Architecture", "Training", "Evaluation", "How to use",
                              "Limitations"]  # fmt: skip
    c, tr, ev = PRETRAIN_INFO["corpus"], PRETRAIN_INFO["training"], PRETRAIN_INFO["eval"]
    assert "`hf:wikitext:wikitext-2-raw-v1@train`" in sections["Corpus"]
    assert "- Documents: 12,345" in sections["Corpus"]
    assert f"- Tokens: {c['tokens']:,}" in sections["Corpus"]
    assert c["fingerprint"] in sections["Corpus"]
    assert (
        "- Kind: wordpiece" in sections["Tokenizer"] and "- Vocabulary size: 8,192" in sections["Tokenizer"]
    )
    assert "- Mask token: `<mask>`" in sections["Tokenizer"]
    arch = sections["Architecture"]
    assert "- Preset: `mini`" in arch and "- Layers: 4" in arch and "- Hidden size: 256" in arch
    assert "- Attention heads: 4" in arch
    assert f"- Parameters: {N_PARAMS:,}" in arch  # read from the safetensors header
    training = sections["Training"]
    assert "- Steps: 1,500" in training and "- Tokens seen: 24,576,000" in training
    assert "- Batch size: 128" in training
    assert "- Learning rate: peak 0.0005, linear schedule, warmup 100" in training
    assert "- Masking: whole_word, rate 0.15" in training
    assert f"- Hardware: {tr['hardware']}" in training
    assert "- Wall time: 3,725 s (1 h 02 min)" in training
    evaluation = sections["Evaluation"]
    assert f"| MLM loss | {ev['eval_loss']:.4g} |" in evaluation
    assert f"| Perplexity | {ev['perplexity']:.4g} |" in evaluation
    assert f"| Masked-token accuracy | {ev['masked_accuracy']:.4g} |" in evaluation
    usage = sections["How to use"]
    assert 'pipeline("fill-mask", model="someone/tiny-bert-pydocs")' in usage
    assert "<mask>" in usage and "[MASK]" not in usage
    assert "2,345,678 tokens" in sections["Limitations"] and "128 tokens" in sections["Limitations"]
    assert body.lstrip().startswith(CARD_MARKER)
    assert "# tiny-bert-pydocs" in body
    assert f"A small BERT-style encoder (`mini` preset, {N_PARAMS:,} parameters) pretrained" in body


def test_finetuned_card_has_model_index_and_scratch_baseline(tmp_path: Path):
    from huggingface_hub import ModelCard

    folder = _folder(tmp_path, arch="BertForSequenceClassification", id2label={"0": "json", "1": "os"})
    info = {
        "repo_id": "someone/tiny-bert-pydocs-cls",
        "corpus": {"spec": "builtin:pydocs", "documents": 900},
        "finetune": {
            "task": "pydocs package classification",
            "data": "builtin:pydocs",
            "base_model": "someone/tiny-bert-pydocs",
            "metrics": {"eval_accuracy": 0.8125, "eval_f1": 0.79321, "eval_loss": 0.61, "eval_runtime": 1.2},
            "scratch_metrics": {"eval_accuracy": 0.5625, "eval_f1": 0.5},
        },
    }
    card = render_model_card(folder, run_info=info)
    meta, body = _split(card)
    assert meta["pipeline_tag"] == "text-classification"
    assert meta["license"] == "apache-2.0"
    assert "language" not in meta and "datasets" not in meta  # unknown: left out, not blank
    assert meta["tags"] == ["mlm", "bert", "text-classification"]
    assert meta["base_model"] == "someone/tiny-bert-pydocs"
    results = meta["model-index"][0]["results"][0]
    assert results["task"]["type"] == "text-classification"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"accuracy": 0.8125, "f1": 0.79321}
    # the Hub client's own parser accepts the metadata
    eval_results = ModelCard(card).data.eval_results
    assert {r.metric_type: r.metric_value for r in eval_results} == {"accuracy": 0.8125, "f1": 0.79321}
    _assert_no_blanks(card)
    sections = _sections(body)
    assert "| Accuracy | 0.8125 | 0.5625 |" in sections["Evaluation"]
    assert "| F1 | 0.7932 | 0.5 |" in sections["Evaluation"]
    assert "| Loss | 0.61 | - |" in sections["Evaluation"]
    assert "runtime" not in sections["Evaluation"].lower()
    assert 'pipeline("text-classification", model="someone/tiny-bert-pydocs-cls")' in sections["How to use"]
    assert "`json`, `os`" in sections["How to use"]
    assert "Training" not in sections  # no training facts recorded: no section


def test_card_without_run_info_uses_only_folder_facts(tmp_path: Path):
    folder = _folder(tmp_path)
    card = render_model_card(folder, run_info={})
    meta, body = _split(card)
    assert meta == {
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
        "license": "apache-2.0",
        "tags": ["mlm", "bert", "masked-language-modeling"],
    }
    sections = _sections(body)
    assert set(sections) == {"Tokenizer", "Architecture", "How to use", "Limitations"}
    assert f"- Parameters: {N_PARAMS:,}" in sections["Architecture"]
    assert 'model="model"' in sections["How to use"]  # the folder name stands in for the repo id
    _assert_no_blanks(card)


def test_write_model_card_respects_user_cards_and_reads_run_info(tmp_path: Path):
    folder = _folder(tmp_path)
    (folder / "run_info.json").write_text(json.dumps(PRETRAIN_INFO))
    assert load_run_info(folder) == PRETRAIN_INFO
    assert write_model_card(folder)  # no README yet: written from run_info.json
    text = (folder / "README.md").read_text()
    assert "someone/tiny-bert-pydocs" in text and CARD_MARKER in text
    # our own card is refreshed
    assert write_model_card(folder, {**PRETRAIN_INFO, "repo_id": "someone/renamed"})
    assert "someone/renamed" in (folder / "README.md").read_text()
    # a card the user wrote (no marker) is kept, unless forced
    (folder / "README.md").write_text("# My own card\n")
    assert not write_model_card(folder)
    assert (folder / "README.md").read_text() == "# My own card\n"
    assert write_model_card(folder, force=True)
    # unreadable run_info.json: a warning and an empty dict, not a crash
    (folder / "run_info.json").write_text("{not json")
    assert load_run_info(folder) == {}
    assert load_run_info(tmp_path / "missing") == {}


def test_parameter_count_for_sharded_weights(tmp_path: Path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": np.zeros((3, 4), dtype=np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros((5,), dtype=np.float32)}, str(folder / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert count_parameters(folder) == 17
    assert count_parameters(tmp_path) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(12345, "12,345"), (0.123456, "0.1235"), (48.2871, "48.29"), (5e-05, "5e-05"), (2.0e6, "2,000,000"),
     (True, "yes"), ("wordpiece", "wordpiece")],
)  # fmt: skip
def test_number_formatting(value, text):
    assert fmt(value) == text


def test_duration_formatting():
    assert fmt_duration(3725.4) == "3,725 s (1 h 02 min)"
    assert fmt_duration(75) == "75 s (1 min 15 s)"
    assert fmt_duration(4.25) == "4.2 s"
